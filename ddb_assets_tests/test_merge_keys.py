"""Which rows of a data file hold a key an incremental export touched (lake/merge.py: KeyMatcher):
each key column narrows the rows, the whole key decides."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from ddb_assets.lake.merge import KeyMatcher

pytestmark = pytest.mark.fast


@pytest.fixture(params=["a set of key tuples", "a hash join"])
def matcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[KeyMatcher]:
    """Both ways of matching the candidate rows on every key column give the same answer."""
    if request.param == "a hash join":
        monkeypatch.setattr(KeyMatcher, "SET_ROWS", 0)
    return KeyMatcher


def test_both_key_columns_must_match_not_the_first_alone(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": ["a", "a", "b", "z"], "sk": [1, 2, 9, 1]})
    rows = pa.table({"pk": ["a", "a", "a", "b", "b", "c", "z"], "sk": [1, 3, 2, 1, 9, 1, 1]})
    touched = matcher(keys, ["pk", "sk"]).touched(rows)
    assert touched.to_pylist() == [True, False, True, False, True, False, True]
    # Each value is one the keys hold, no pair is: nothing is touched.
    crossed = pa.table({"pk": ["a", "b"], "sk": [9, 2]})
    assert matcher(keys, ["pk", "sk"]).touched(crossed).to_pylist() == [False, False]


def test_a_null_key_matches_nothing(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": ["a", "b"], "sk": [None, 1]})
    rows = pa.table({"pk": ["a", "b"], "sk": pa.array([None, 1], pa.int64())})
    assert matcher(keys, ["pk", "sk"]).touched(rows).to_pylist() == [False, True]


def test_keys_given_twice_and_rows_in_several_chunks(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": ["a", "a", "b"], "sk": [1, 1, 2]})
    rows = pa.Table.from_batches([pa.record_batch({"pk": ["b", "a"], "sk": [2, 2]}),
                                  pa.record_batch({"pk": ["a", "x"], "sk": [1, 1]})])
    found = matcher(keys, ["pk", "sk"])
    assert found.touched(rows).to_pylist() == [True, False, True, False]
    # The same matcher serves every file of a merge; a file with no candidate row is all False.
    assert found.touched(pa.table({"pk": ["q"], "sk": [1]})).to_pylist() == [False]


def test_one_key_column_and_keys_typed_unlike_the_file(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": pa.array(["a", "c"], pa.large_string())})
    rows = pa.table({"pk": pa.array(["a", "b", "c"], pa.string())})
    assert matcher(keys, ["pk"]).touched(rows).to_pylist() == [True, False, True]
    keys = pa.table({"pk": ["a"], "sk": pa.array([1], pa.int32())})
    rows = pa.table({"pk": ["a", "a"], "sk": pa.array([1, 2], pa.int64())})
    assert matcher(keys, ["pk", "sk"]).touched(rows).to_pylist() == [True, False]


def test_files_matched_together_each_get_their_own_rows(matcher: type[KeyMatcher]) -> None:
    """Several files' key columns looked up at once (one hash set for all): each file's answer is
    its own rows', also where a file's key types differ from its neighbours' (matched apart)."""
    keys = pa.table({"pk": ["a", "b", "c"], "sk": [1, 2, 3]})
    files = [pa.table({"pk": ["a", "b"], "sk": [1, 1]}),
             pa.table({"pk": ["c"], "sk": pa.array([3], pa.int32())}),  # another key type: its own lookup
             pa.table({"pk": ["b", "c", "a", "x"], "sk": [2, 3, 9, 1], "v": ["1", "2", "3", "4"]}),
             pa.table({"pk": pa.array([], pa.string()), "sk": pa.array([], pa.int64())})]
    found = matcher(keys, ["pk", "sk"]).touched_many(files)
    assert [mask.to_pylist() for mask in found] == [[True, False], [True], [True, True, False, False], []]


def test_an_affected_file_keeps_its_touched_rows_not_all_its_keys(tmp_path: Path) -> None:
    """A data file of 1,000 rows, 5 of them hidden by a position-delete file, and 7 change keys:
    6 held by live rows, one by a hidden row, one by no row. The merge keeps the 6 rows' positions
    and keys (and the 5 hidden positions a rewrite leaves out), not the file's 1,000 keys."""
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.catalog import CatalogConfig, open_catalog
    from ddb_assets.lake.merge import affected_files
    from ddb_assets.lake.position_deletes import DeletedRows, write_delete_files
    from ddb_assets.lake.row_delta import row_delta

    catalog = open_catalog(CatalogConfig(), resolve(str(tmp_path / "lake")))
    catalog.create_namespace("default")
    rows = pa.table({"pk": [f"p{i % 10}" for i in range(1000)], "sk": pa.array(range(1000), pa.int64()),
                     "v": [f"value {i}" for i in range(1000)]})
    table = catalog.create_table(("default", "t"), schema=rows.schema, location=str(tmp_path / "lake" / "t"))
    table.append(rows)
    [task] = table.scan().plan_files()
    transaction = table.transaction()
    row_delta(transaction, {}, added_deletes=write_delete_files(
        [DeletedRows(task.file, pa.array([0, 1, 2, 3, 4], pa.int64()))], "test", None))
    transaction.commit_transaction()
    touched = [("p3", 3), ("p1", 11), ("p7", 507), ("p9", 999), ("p0", 10), ("p5", 555), ("p6", 6)]
    keys = pa.table({"pk": [k for k, _ in touched] + ["p1"],
                     "sk": pa.array([s for _, s in touched] + [1001], pa.int64())})  # and one no row holds

    [affected] = affected_files(table, keys, ["pk", "sk"], None)

    live = [sk for _, sk in touched if sk > 4]  # row i holds sk i; rows 0-4 are hidden
    assert affected.touched_positions.to_pylist() == sorted(live)
    assert affected.touched_keys.num_rows == len(live) == 6
    assert sorted(affected.touched_keys.column("sk").to_pylist()) == sorted(live)
    assert affected.hidden.to_pylist() == [0, 1, 2, 3, 4]
    assert len(affected.delete_files) == 1


def test_a_scan_of_many_files_matches_them_in_batches_with_the_same_answer(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """40 data files (more than one batch of READ_AHEAD, and batches cut by MATCH_ROWS too): every
    file holding a touched key is found, in scan order, with exactly its touched rows."""
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake import merge
    from ddb_assets.lake.catalog import CatalogConfig, open_catalog

    monkeypatch.setattr(merge, "MATCH_ROWS", 250)  # a batch ends after about 2 files of 100 rows
    catalog = open_catalog(CatalogConfig(), resolve(str(tmp_path / "lake")))
    catalog.create_namespace("default")
    schema = pa.schema([pa.field("pk", pa.string(), nullable=False)])
    table = catalog.create_table(("default", "t"), schema=schema, location=str(tmp_path / "lake" / "t"))
    for f in range(40):
        table.append(pa.table({"pk": [f"f{f:02d}-{i:03d}" for i in range(100)]}, schema=schema))
    touched = {f: [i for i in range(100) if (i * 7 + f) % 23 == 0] for f in range(0, 40, 3)}
    keys = pa.table({"pk": [f"f{f:02d}-{i:03d}" for f, rows in touched.items() for i in rows] + ["nowhere"]})

    affected = merge.affected_files(table, keys, ["pk"], None)

    found = {a.touched_keys.column("pk")[0].as_py()[:3]: a for a in affected}
    assert sorted(found) == sorted(f"f{f:02d}" for f in touched)
    for f, rows in touched.items():
        assert found[f"f{f:02d}"].touched_positions.to_pylist() == rows
    order = [task.file.file_path for task in merge._candidates(table, "pk", sorted(keys.column("pk").to_pylist()))]
    assert [a.data_file.file_path for a in affected] == [p for p in order if p in {a.data_file.file_path for a in affected}]


def test_a_resolver_shares_one_s3_filesystem_and_resolves_local_paths_as_resolve_does(tmp_path: Path) -> None:
    from ddb_assets.exports.storage import resolve, resolver

    locate = resolver()
    first, second = locate("s3://lake/t/data/a.parquet"), locate("s3://lake/t/data/b.parquet/")
    assert first.fs is second.fs and (first.path, second.path) == ("lake/t/data/a.parquet", "lake/t/data/b.parquet")
    assert first.uri == resolve("s3://lake/t/data/a.parquet").uri
    assert locate(str(tmp_path / "x.parquet")).path == resolve(str(tmp_path / "x.parquet")).path
