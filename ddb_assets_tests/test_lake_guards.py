"""What may be written where, decided before an export is read: a table's location, the DynamoDB
table its exports come from, the export chain, the destination folder, and the export the table
holds already (lake/guards.py, lake/destination.py, the conversion's preflight)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ddb_assets.exports.reader import DataFile
from ddb_assets.exports.storage import resolve
from ddb_assets.lake.catalog import CatalogConfig, load_table, open_catalog
from ddb_assets.lake.convert import ConvertOptions, convert_export, lake_target
from ddb_assets.lake.destination import DestinationError, table_location
from ddb_assets.lake.evolution import SchemaConflict
from ddb_assets.lake.guards import ChainError, SourceTableMismatch, StaleExport, TableLocationConflict
from ddb_assets.lake.record import SOURCE_TABLE_PROPERTY, iso_millis
from ddb_assets.lake.schema import OptionError
from ddb_assets.local.export_writer import (ExportRequest, FolderSink, IncrementalWindow, write_export,
                                            write_incremental_export)
from ddb_assets.local.history import Change
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.lake_reader import read_rows

EVT = "arn:aws:dynamodb:us-east-1:111122223333:table/Evt"
REVIEWS = "arn:aws:dynamodb:us-east-1:123456789012:table/reviews"
T0 = datetime(2026, 3, 2, 8, 15, 42, 517000, tzinfo=timezone.utc)
WINDOW = timedelta(minutes=15)


def full_export(tmp: Path, items: list[dict[str, Any]], *, table_arn: str = EVT, at: datetime = T0,
                key: str = "pk") -> Path:
    """A full export of ``items`` (keyed by ``key``) written as AWS writes one, in ``tmp``."""
    request = ExportRequest(export_arn=f"{table_arn}/export/{int(at.timestamp() * 1000):014d}-{uuid.uuid4().hex[:8]}",
                            table_arn=table_arn, table_id="x", bucket="b", prefix="p", output_format="DYNAMODB_JSON",
                            start_time=at, export_time=at, key_attributes=(key,), data_files=2)
    write_export(request, items, FolderSink(tmp))
    return tmp / request.folder


def incremental_export(tmp: Path, start: datetime, changes: list[Change], *, table_arn: str = EVT,
                       view: str = "NEW_AND_OLD_IMAGES") -> Path:
    end = start + WINDOW
    request = ExportRequest(export_arn=f"{table_arn}/export/{int(end.timestamp() * 1000):014d}-{uuid.uuid4().hex[:8]}",
                            table_arn=table_arn, table_id="x", bucket="b", prefix="p", output_format="DYNAMODB_JSON",
                            start_time=end, export_time=end, key_attributes=("pk",),
                            incremental=IncrementalWindow(start, end, view))
    write_incremental_export(request, changes, FolderSink(tmp))
    return tmp / request.folder


def item(pk: str, **values: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, **{k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in values.items()}}


def put(pk: str, at: datetime, **values: Any) -> Change:
    return Change(pk, None, item(pk, **values), at.timestamp())


def delete(pk: str, at: datetime) -> Change:
    return Change(pk, item(pk), None, at.timestamp())


class DataRead(AssertionError):
    """A data file was opened: the check under test came too late."""


def forbid_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on (in this process), reading any data file fails the test."""
    def refuse(self: DataFile, *args: Any) -> Any:
        raise DataRead(f"data file {self.name} was read")
    monkeypatch.setattr(DataFile, "stream_verified", refuse)


def convert(source: Path, dest: Path, **options: Any) -> Any:
    return convert_export(source, dest, ConvertOptions(workers=1, **options))


def catalog_table(dest: Path) -> Any:
    """The table at ``dest`` as its catalog (the lake folder's SQLite file) has it."""
    return load_table(open_catalog(CatalogConfig(), resolve(dest.parent)), "ddb_lake", dest.name)


def snapshots(dest: Path) -> int:
    return len(read_rows(str(dest))[0]["table"].snapshots())


def ruin_data_files(export: Path) -> None:
    """Overwrite every data file of a full export with bytes no reader accepts: a conversion that
    reads one fails with a checksum error, so a refusal printed instead came before any read."""
    for data in (export / "data").iterdir():
        data.write_bytes(b"not gzip")


# -- 1. one table, one location ----------------------------------------------------------------------


@pytest.mark.fast
def test_two_folders_never_become_one_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = tmp_path / "lake"
    convert(full_export(tmp_path / "e1", [item("a")]), lake / "My-Table")
    other = full_export(tmp_path / "e2", [item("b")], at=T0 + timedelta(hours=1))
    forbid_reads(monkeypatch)
    for dest, options in ((lake / "my_table", {}), (lake / "elsewhere", {"table_name": "my_table"})):
        with pytest.raises(TableLocationConflict) as refused:
            convert(other, dest, **options)
        message = str(refused.value)
        assert "ddb_lake.my_table" in message and str(lake / "My-Table") in message and "--table-name" in message
        assert not dest.exists()  # nothing written outside the table's folder
    assert snapshots(lake / "My-Table") == 1


@pytest.mark.fast
def test_two_tables_never_share_a_folder(tmp_path: Path) -> None:
    """Found by a new user: `convert E lk/x --table-name xx` then `convert E lk/x` made table x in
    xx's folder, and `maintain x` then removed xx's files as orphans."""
    lake = tmp_path / "lake"
    convert(full_export(tmp_path / "e1", [item("a")]), lake / "x", table_name="xx")
    with pytest.raises(TableLocationConflict) as refused:
        convert(full_export(tmp_path / "e2", [item("b")]), lake / "x")
    assert str(refused.value) == (f"{lake / 'x'} is the location of table ddb_lake.xx ({lake / 'x'}): "
                                  f"give table x a folder of its own")
    assert snapshots(lake / "x") == 1  # xx untouched, no table x


@pytest.mark.fast
def test_data_files_go_under_the_catalog_location_even_when_spelled_otherwise(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    convert(full_export(tmp_path / "e1", [item("a")]), lake / "t")
    result = convert(full_export(tmp_path / "e2", [item("b")], at=T0 + timedelta(hours=1)),
                     f"{lake}/other/../t/")  # the same folder, spelled another way
    assert result.location == str(lake / "t") and not result.unchanged
    assert all(w.path.startswith(f"{lake / 't' / 'data'}/") for w in result.written)


def test_the_cli_refuses_a_second_folder_for_a_table_in_one_line(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert run_cli("convert", str(full_export(tmp_path / "e1", [item("a")])), str(lake / "My-Table")).returncode == 0
    other = full_export(tmp_path / "e2", [item("b")], at=T0 + timedelta(hours=1))
    ruin_data_files(other)
    for args in ((str(lake / "my_table"),), (str(lake / "x"), "--table-name", "my_table")):
        refused = run_cli("convert", str(other), *args)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert refused.stderr.startswith("error: table ddb_lake.my_table exists already, at "
                                         f"{lake / 'My-Table'}, not at {lake / args[0].rsplit('/', 1)[-1]}")
    assert sorted(os.listdir(lake)) == ["My-Table", "catalog.db"]


# -- 2. one table, one DynamoDB table ----------------------------------------------------------------


def _evt_table(tmp_path: Path) -> Path:
    dest = tmp_path / "xt" / "evt"
    convert(full_export(tmp_path / "evt", [item("a", kind="click")]), dest)
    return dest


@pytest.mark.fast
def test_a_table_holds_the_exports_of_one_dynamodb_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = _evt_table(tmp_path)
    table = read_rows(str(dest))[0]["table"]
    assert table.properties[SOURCE_TABLE_PROPERTY] == EVT
    reviews = full_export(tmp_path / "reviews", [item("r1", stars=5)], table_arn=REVIEWS, key="pk",
                          at=T0 + timedelta(hours=1))
    with monkeypatch.context() as patched:
        forbid_reads(patched)
        with pytest.raises(SourceTableMismatch) as refused:
            convert(reviews, dest)
    assert EVT in str(refused.value) and REVIEWS in str(refused.value) and "--rebuild" in str(refused.value)
    meta, rows = read_rows(str(dest))
    assert [r["kind"] for r in rows] == ["click"] and len(meta["table"].snapshots()) == 1

    # --rebuild replaces it on purpose; from then on the table holds the other table's exports.
    rebuilt = convert(reviews, dest, rebuild=True)
    assert [r["stars"] for r in read_rows(str(dest))[1]] == [5]
    assert rebuilt.commit.table.properties[SOURCE_TABLE_PROPERTY] == REVIEWS
    with pytest.raises(SourceTableMismatch, match="holds exports of arn:aws:dynamodb:us-east-1:123456789012"):
        convert(full_export(tmp_path / "evt2", [item("b")], at=T0 + timedelta(hours=2)), dest)


@pytest.mark.fast
def test_an_incremental_export_of_another_table_is_refused_even_with_rebuild(tmp_path: Path) -> None:
    dest = _evt_table(tmp_path)
    changes = incremental_export(tmp_path / "inc", T0, [put("r1", T0 + timedelta(seconds=5))], table_arn=REVIEWS)
    for rebuild in (False, True):
        with pytest.raises(SourceTableMismatch, match=f"holds exports of {EVT}; incremental export .* is of {REVIEWS}"):
            convert(changes, dest, rebuild=rebuild)
    assert snapshots(dest) == 1


@pytest.mark.fast
def test_a_table_made_before_the_property_is_checked_by_its_snapshot_and_adopts_it(tmp_path: Path) -> None:
    dest = _evt_table(tmp_path)
    table = catalog_table(dest)
    with table.transaction() as transaction:  # as tables converted by earlier versions are
        transaction.remove_properties(SOURCE_TABLE_PROPERTY)
    table.refresh()
    assert SOURCE_TABLE_PROPERTY not in table.properties
    with pytest.raises(SourceTableMismatch, match=REVIEWS):  # the current snapshot names its table
        convert(full_export(tmp_path / "reviews", [item("r1")], table_arn=REVIEWS, at=T0 + timedelta(hours=1)), dest)
    adopted = convert(full_export(tmp_path / "evt2", [item("b")], at=T0 + timedelta(hours=2)), dest)
    assert adopted.commit.table.properties[SOURCE_TABLE_PROPERTY] == EVT


def test_the_cli_names_both_tables_in_one_line(tmp_path: Path) -> None:
    dest = tmp_path / "xt" / "evt"
    assert run_cli("convert", str(full_export(tmp_path / "evt", [item("a")])), str(dest)).returncode == 0
    reviews = full_export(tmp_path / "reviews", [item("r1")], table_arn=REVIEWS, at=T0 + timedelta(hours=1))
    ruin_data_files(reviews)
    refused = run_cli("convert", str(reviews), str(dest))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"holds exports of {EVT}" in refused.stderr and f"is of {REVIEWS}" in refused.stderr


# -- 3. refusals before reading ----------------------------------------------------------------------


def _chain(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A table from a full export at T0, then one applied window [T0, T0 + 15 min); returns the
    table and further exports: the next window, a gap, an overlap, the applied one again, one wholly
    behind the mark, and a full export older than the mark."""
    dest = tmp_path / "lake" / "t"
    convert(full_export(tmp_path / "full", [item("a", v=1), item("b", v=1)]), dest)
    first = incremental_export(tmp_path / "w1", T0, [put("a", T0 + timedelta(seconds=5), v=2)])
    assert convert(first, dest).merge.upserts == 1
    later = T0 + WINDOW
    return dest, [
        incremental_export(tmp_path / "gap", later + WINDOW, [put("c", later + WINDOW + timedelta(seconds=1))]),
        incremental_export(tmp_path / "overlap", T0 + timedelta(minutes=5), [delete("b", later + timedelta(seconds=1))]),
        first,
        incremental_export(tmp_path / "behind", T0 - WINDOW, [put("z", T0 - timedelta(seconds=9))]),
        full_export(tmp_path / "old", [item("old")], at=T0 - timedelta(hours=1)),
    ]


@pytest.mark.fast
def test_chain_and_order_refusals_and_an_applied_export_come_before_any_read(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dest, (gap, overlap, applied, behind, old) = _chain(tmp_path)
    before = snapshots(dest)
    forbid_reads(monkeypatch)
    with pytest.raises(ChainError, match="are missing"):
        convert(gap, dest)
    with pytest.raises(ChainError, match="the windows overlap"):
        convert(overlap, dest)
    with pytest.raises(StaleExport, match="ends before the table.s high-water mark .*nothing in it is new"):
        convert(behind, dest)
    with pytest.raises(StaleExport, match="is older than what t already holds"):
        convert(old, dest)
    with pytest.raises(SchemaConflict, match="--rebuild"):  # options the table was not planned with
        convert(applied, dest, naming="glue")
    again = convert(applied, dest)
    assert again.unchanged and again.commit.snapshot_id == read_rows(str(dest))[0]["table"].current_snapshot().snapshot_id
    assert snapshots(dest) == before


@pytest.mark.fast
def test_bad_options_are_refused_before_the_export_is_opened(tmp_path: Path) -> None:
    for options in ({"workers": -1}, {"max_depth": 0}, {"dictionary_keys": 0}, {"piece_bytes": 0}):
        with pytest.raises(OptionError, match=f"{next(iter(options))} must be"):
            ConvertOptions(**options)


def test_the_cli_refuses_before_reading(tmp_path: Path) -> None:
    dest = tmp_path / "lake" / "t"
    newer = full_export(tmp_path / "newer", [item("a")], at=T0 + timedelta(hours=1))
    assert run_cli("convert", str(newer), str(dest)).returncode == 0
    old = full_export(tmp_path / "old", [item("b")])
    ruin_data_files(old)
    stale = run_cli("convert", str(old), str(dest))
    assert stale.returncode == 1 and "is older than what t already holds" in stale.stderr, stale.stderr
    workers = run_cli("convert", str(old), str(tmp_path / "lake" / "u"), "--workers", "-1")
    assert workers.returncode == 2 and "--workers" in workers.stderr  # a usage error, refused while parsing
    assert not (tmp_path / "lake" / "u").exists()


# -- 4. destinations --------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize("dest, expected", [
    ("lake/t", "lake/t"), ("lake/t/", "lake/t"), ("lake/x/../t", "lake/t"), ("./lake//t", "lake/t"),
])
def test_destinations_are_resolved_before_the_table_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             dest: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    location = table_location(dest)
    assert location.path == str(tmp_path / expected) and location.name == "t"


@pytest.mark.fast
@pytest.mark.parametrize("dest", ["lake/..", "lake/.", ".", "..", "", "/", "lake/t/..", "s3://bucket", "s3://bucket/",
                                  "s3://bucket/lake/.."])
def test_destinations_that_name_no_table_folder_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            dest: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DestinationError, match="names no table folder|is a bucket"):
        table_location(dest)


@pytest.mark.fast
def test_s3_destinations_are_normalized_inside_their_bucket() -> None:
    assert table_location("s3://bucket/lake/x/../t/").path == "bucket/lake/t"
    assert table_location("s3://bucket/../../t").path == "bucket/t"


def test_the_cli_refuses_dot_destinations_the_lake_folder_and_folders_inside_a_table(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "odd").mkdir(parents=True)
    export = full_export(tmp_path / "export", [item("a")])
    for dest in ("odd/..", "odd/.", "."):
        refused = run_cli("convert", str(export), dest, cwd=work)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "names no table folder" in refused.stderr
    # no catalog.db and no table anywhere, the folder above included
    assert sorted(os.listdir(work)) == ["odd"] and not os.listdir(work / "odd")
    assert sorted(os.listdir(tmp_path)) == ["export", "work"]
    assert run_cli("convert", str(export), "odd/t", cwd=work).returncode == 0
    lake_folder = run_cli("convert", str(export), "odd", cwd=work)
    assert lake_folder.returncode == 1 and "is a lake folder (it holds the catalog)" in lake_folder.stderr
    inside = run_cli("convert", str(export), "odd/t/data/x", cwd=work)
    assert inside.returncode == 1 and f"is inside the table folder {work / 'odd' / 't'}" in inside.stderr
    assert sorted(os.listdir(work / "odd")) == ["catalog.db", "t"] and not (work / "odd" / "t" / "data" / "x").exists()
    # The same whatever catalog holds either table, and a new table's folder around another is
    # refused too: its maintenance would remove that table's files (in its data/) as orphans.
    one, two = (f"--catalog=sqlite:///{tmp_path / name}" for name in ("one.db", "two.db"))
    inner = run_cli("convert", str(export), "odd/t/inner", two, cwd=work)
    assert inner.returncode == 1 and inner.stderr == (
        f"error: destination 'odd/t/inner' is inside the table folder {work / 'odd' / 't'}: give a folder of its own "
        f"beside it ({work / 'odd'}/<table>)\n")
    assert run_cli("convert", str(export), "other/u/data/x", one, cwd=work).returncode == 0
    around = run_cli("convert", str(export), "other/u", two, cwd=work)
    assert around.returncode == 1 and around.stderr == (
        f"error: destination 'other/u' holds the table folder {work / 'other' / 'u' / 'data' / 'x'}: a table's folder "
        f"holds no other table; give a folder of its own beside it ({work / 'other'}/<table>)\n")
    assert sorted(os.listdir(work / "other" / "u")) == ["data"] and not (tmp_path / "two.db").exists()


def test_on_s3_a_table_folder_inside_or_around_another_tables_is_refused_whatever_the_catalogs(
        aws_env: dict[str, str], s3: Any, tmp_path: Path) -> None:
    lake = f"lake-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=lake)
    export = full_export(tmp_path / "export", [item("a")])
    one, two = (f"--catalog=sqlite:///{tmp_path / name}" for name in ("one.db", "two.db"))
    assert run_cli("convert", str(export), f"s3://{lake}/lake/t", one).returncode == 0
    for dest in (f"s3://{lake}/lake/t/inner", f"s3://{lake}/lake/t/data/x/y"):
        inside = run_cli("convert", str(export), dest, two)
        assert inside.returncode == 1 and inside.stderr == (
            f"error: destination {dest!r} is inside the table folder s3://{lake}/lake/t: give a folder of its own "
            f"beside it (s3://{lake}/lake/<table>)\n")
    assert run_cli("convert", str(export), f"s3://{lake}/other/u/data/x", one).returncode == 0
    around = run_cli("convert", str(export), f"s3://{lake}/other/u", two)
    assert around.returncode == 1 and around.stderr == (
        f"error: destination 's3://{lake}/other/u' holds the table folder s3://{lake}/other/u/data/x: a table's "
        f"folder holds no other table; give a folder of its own beside it (s3://{lake}/other/<table>)\n")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=lake)["Contents"]]
    assert not [k for k in keys if k.startswith(("lake/t/inner", "lake/t/data/x", "other/u/metadata"))], keys
    assert not (tmp_path / "two.db").exists()  # nothing written for the refused ones
    # the tables themselves take their next exports as before
    assert run_cli("convert", str(export), f"s3://{lake}/lake/t", one).returncode == 0


def test_a_file_destination_is_named_as_given_and_a_failed_first_convert_leaves_nothing(tmp_path: Path) -> None:
    """A file (or a path inside one) is refused as a file, named as the user gave it; a first
    convert that fails makes neither a catalog nor any folder."""
    from ddb_assets_tests import doctor

    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("not a folder")
    export = full_export(tmp_path / "export", [item("a")])
    for dest, what in (("afile", "is a file"), ("afile/t", f"is inside the file {work / 'afile'}")):
        refused = run_cli("convert", str(export), dest, cwd=work)
        assert refused.returncode == 1 and refused.stderr == (
            f"error: destination {dest!r} {what}, not a folder: give a table folder (a new one, or the table's own)\n")
    bad = doctor.make_export(tmp_path / "bad", items=30)
    entry = doctor.biggest_entry(bad)
    doctor.replace_data(bad, entry, doctor.data_path(bad, entry).read_bytes()[:-40])  # a truncated gzip
    failed = run_cli("convert", str(bad), "new/lake/t", "--workers", "1", cwd=work)
    assert failed.returncode == 1 and "truncated gzip" in failed.stderr
    assert sorted(os.listdir(work)) == ["afile"]  # no catalog.db, no new/ nor new/lake/
    # The same destination converts once the export is good (the catalog made by its commit).
    assert run_cli("convert", str(export), "new/lake/t", cwd=work).returncode == 0
    assert sorted(os.listdir(work / "new" / "lake")) == ["catalog.db", "t"]


@pytest.mark.fast
def test_a_configured_catalogs_folder_is_no_table_folder(tmp_path: Path) -> None:
    config = CatalogConfig(uri=f"sqlite:///{tmp_path / 'lake' / 'catalog.db'}")
    with pytest.raises(DestinationError, match="is a lake folder"):
        lake_target(tmp_path / "lake", ConvertOptions(catalog=config))


# -- 8. the export the table holds ----------------------------------------------------------------------


@pytest.mark.fast
def test_reconverting_the_export_the_table_holds_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ddb_assets_tests import doctor

    dest = tmp_path / "lake" / "t"
    export = full_export(tmp_path / "e", [item("a", year=2015), item("b", year=2016)])
    first = convert(export, dest, partition_by="year")
    files = sorted((dest / "data").rglob("*.parquet"))
    with monkeypatch.context() as patched:
        forbid_reads(patched)
        again = convert(export, dest, partition_by="year")
        partial = convert(export, dest, partition_by="year", only_partitions=frozenset({"2015"}))
    for result in (again, partial):
        assert result.unchanged and result.commit.snapshot_id == first.commit.snapshot_id and not result.written
    assert sorted((dest / "data").rglob("*.parquet")) == files and snapshots(dest) == 1
    rebuilt = convert(export, dest, partition_by="year", rebuild=True)  # on purpose
    assert not rebuilt.unchanged and rebuilt.commit.rows == 2 and snapshots(dest) == 2  # rebuild: one snapshot

    # The same export ARN with a later time is another export: converted.
    summary = doctor.summary(export)
    summary["exportTime"] = "2026-03-02T08:15:43.000Z"
    doctor.write_summary(export, summary)
    later = convert(export, dest, partition_by="year")
    assert not later.unchanged and later.export.summary.export_arn == first.export.summary.export_arn
    assert snapshots(dest) == 3


def test_the_cli_says_unchanged_and_exits_0(tmp_path: Path) -> None:
    dest = tmp_path / "lake" / "t"
    export = full_export(tmp_path / "e", [item("a")])
    assert run_cli("convert", str(export), str(dest)).returncode == 0
    ruin_data_files(export)  # not read again
    again = run_cli("convert", str(export), str(dest))
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].startswith(f"{'unchanged':<15}  ddb_lake.t: export ") and "was applied already (snapshot " in lines[0]
    assert lines[1] == "high-water mark  2026-03-02T08:15:42.517Z (the --from of the next incremental export)"
    history = json.loads(run_cli("history", "t", "--lake", str(dest.parent), "--format", "json").stdout)
    assert len(history) == 1


# -- 5. time travel over tables of different ages ---------------------------------------------------------


def test_query_as_of_a_time_skips_and_names_the_tables_made_later(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert run_cli("convert", str(full_export(tmp_path / "old", [item("a"), item("b")])), str(lake / "old")).returncode == 0
    between = datetime.now(timezone.utc).isoformat()
    time.sleep(0.05)
    assert run_cli("convert", str(full_export(tmp_path / "new", [item("c")])), str(lake / "new")).returncode == 0

    result = run_cli("query", "SELECT count(*) AS n FROM old", "--lake", str(lake), "--as-of", between,
                     "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"n": 2}
    said = iso_millis(between)  # as `history` prints times: UTC, milliseconds, Z
    assert said.endswith("Z") and said[:23] == between[:23]
    assert result.stderr == f"note: table new left out: table new had no snapshot yet at {said}\n"
    # Asking for the table made later names why it is not there, in one line.
    missing = run_cli("query", "SELECT count(*) FROM new", "--lake", str(lake), "--as-of", between)
    assert missing.returncode == 1 and missing.stderr == (
        f"error: table new had no snapshot yet at {said}: the SQL names it, so the query cannot run\n")
    # A time that is not one is a usage error, found before the lake is opened.
    bad = run_cli("query", "SELECT 1", "--lake", str(lake), "--as-of", "yesterday")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.splitlines()[-1] == ("error: invalid value for '--as-of': 'yesterday' is neither a snapshot id "
                                           "nor an ISO-8601 time (2026-11-30T12:00:00Z, 2026-11-30) (see "
                                           "ddb-assets query --help)")


def test_query_as_of_a_time_whose_snapshot_was_expired_says_so(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert run_cli("convert", str(full_export(tmp_path / "e1", [item("a")])), str(lake / "t")).returncode == 0
    between = datetime.now(timezone.utc).isoformat()
    time.sleep(0.05)
    later = full_export(tmp_path / "e2", [item("a"), item("b")], at=T0 + timedelta(hours=1))
    assert run_cli("convert", str(later), str(lake / "t")).returncode == 0
    first, second = [e["snapshot_id"] for e in
                     json.loads(run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout)]
    # Before expiry, the time reads the first snapshot.
    before = run_cli("query", "SELECT count(*) AS n FROM t", "--lake", str(lake), "--as-of", between, "--format", "json")
    assert (before.returncode, json.loads(before.stdout)) == (0, {"n": 1}), before.stderr
    maintained = run_cli("maintain", "t", "--lake", str(lake), "--expire-after-days", "0", "--keep-snapshots", "1")
    assert maintained.returncode == 0, maintained.stderr
    history = json.loads(run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout)
    assert [e["snapshot_id"] for e in history] == [second]
    why = (f"table t existed at {iso_millis(between)}, but its snapshot of that time ({first}) was expired by "
           f"maintenance; the oldest snapshot still there is {second}, committed at {history[0]['committed_at']} "
           f"(see `ddb-assets history`)")
    named = run_cli("query", "SELECT count(*) FROM t", "--lake", str(lake), "--table", "t", "--as-of", between)
    assert (named.returncode, named.stdout, named.stderr) == (1, "", f"error: {why}\n")
    by_id = run_cli("query", "SELECT count(*) FROM t", "--lake", str(lake), "--table", "t", "--as-of", str(first))
    assert (by_id.returncode, by_id.stderr) == (1, f"error: table t has no snapshot {first}: not one of its snapshots, "
                                                   f"or one that maintenance expired since (see `ddb-assets history` "
                                                   f"for those kept)\n")
    unnamed = run_cli("query", "SELECT count(*) FROM t", "--lake", str(lake), "--as-of", between)
    assert (unnamed.returncode, unnamed.stderr) == (1, f"error: {why}: the SQL names it, so the query cannot run\n")
    # A time before the table was made still says that.
    made_later = run_cli("query", "SELECT 1", "--lake", str(lake), "--table", "t", "--as-of", "2020-01-01")
    assert made_later.stderr == "error: table t had no snapshot yet at 2020-01-01T00:00:00.000Z\n"


def test_a_table_missing_a_data_file_is_named_with_the_file_never_with_our_sql(tmp_path: Path) -> None:
    """Another table still answers (a warning names the unreadable one and its missing file); a
    query naming the unreadable table fails in one line saying so."""
    lake = tmp_path / "lake"
    assert run_cli("convert", str(full_export(tmp_path / "a", [item("a"), item("b")])), str(lake / "broken")).returncode == 0
    assert run_cli("convert", str(full_export(tmp_path / "b", [item("c")])), str(lake / "fine")).returncode == 0
    [gone] = (lake / "broken" / "data").glob("*.parquet")
    gone.unlink()
    snapshot = json.loads(run_cli("history", "broken", "--lake", str(lake), "--format", "json").stdout)[-1]["snapshot_id"]
    why = f"snapshot {snapshot} lists data file {gone}, which is missing"

    other = run_cli("query", "SELECT count(*) AS n FROM fine", "--lake", str(lake), "--format", "json")
    assert other.returncode == 0 and json.loads(other.stdout) == {"n": 1}, other.stderr
    assert other.stderr == f"warning: table broken cannot be read, left out: {why}\n"
    for given in ([], ["--table", "broken"]):
        named = run_cli("query", "SELECT count(*) FROM Broken", "--lake", str(lake), *given)
        assert named.returncode == 1 and named.stderr == f"error: table broken could not be read: {why}\n"


# -- 6. what an incremental export holds, and the high-water mark --------------------------------------------


def test_inspect_shows_an_incremental_exports_window_view_and_changes(tmp_path: Path) -> None:
    changes = incremental_export(tmp_path / "inc", T0, [put("a", T0 + timedelta(seconds=1), v=1),
                                                          put("b", T0 + timedelta(seconds=2), v=1),
                                                          delete("c", T0 + timedelta(seconds=3))], view="NEW_IMAGE")
    inspected = run_cli("inspect", str(changes))
    assert inspected.returncode == 0, inspected.stderr
    lines = inspected.stdout.splitlines()
    assert "exportType    INCREMENTAL_EXPORT" in lines
    assert "window        2026-03-02T08:15:42.517Z to 2026-03-02T08:30:42.517Z (ExportFromTime inclusive, " \
           "ExportToTime exclusive)" in lines
    assert "outputView    NEW_IMAGE" in lines
    assert "itemCount     3 change lines: 2 upserts, 1 delete" in lines
    assert not any(line.startswith("exportTime") for line in lines)


def test_the_high_water_mark_shows_in_the_convert_summary_and_in_tables(tmp_path: Path) -> None:
    dest = tmp_path / "lake" / "t"
    converted = run_cli("convert", str(full_export(tmp_path / "full", [item("a", v=1)])), str(dest))
    assert converted.returncode == 0, converted.stderr
    assert "high-water mark  2026-03-02T08:15:42.517Z (the --from of the next incremental export)" in \
        converted.stdout.splitlines()

    def listed() -> tuple[str, dict[str, Any]]:
        text = run_cli("tables", "--lake", str(dest.parent))
        as_json = run_cli("tables", "--lake", str(dest.parent), "--format", "json")
        assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
        return text.stdout.splitlines()[0], json.loads(as_json.stdout)["tables"][0]

    line, entry = listed()
    assert line.endswith(", high-water mark 2026-03-02T08:15:42.517Z")
    assert entry["high_water_mark"] == "2026-03-02T08:15:42.517Z" and entry["source_table_arn"] == EVT
    merged = run_cli("convert", str(incremental_export(tmp_path / "w1", T0, [put("a", T0 + timedelta(seconds=5), v=2)])),
                     str(dest))
    assert merged.returncode == 0, merged.stderr
    assert [line.split(None, 1)[1] for line in merged.stdout.splitlines() if line.startswith("window ")] == \
        ["2026-03-02T08:15:42.517Z to 2026-03-02T08:30:42.517Z (the table's high-water mark now)"]
    line, entry = listed()
    assert line.endswith(", high-water mark 2026-03-02T08:30:42.517Z")
    assert entry["high_water_mark"] == "2026-03-02T08:30:42.517Z"


# -- 7. where each column comes from ------------------------------------------------------------------------


def test_tables_shows_the_attribute_each_column_and_the_partition_comes_from(tmp_path: Path) -> None:
    dest = tmp_path / "lake" / "t"
    items = [{"pk": {"S": "a"}, "Größe": {"N": "2015"}, "tags": {"SS": ["x"]}}]
    converted = run_cli("convert", str(full_export(tmp_path / "e", items)), str(dest), "--naming", "glue",
                        "--partition-by", "Größe")
    assert converted.returncode == 0, converted.stderr
    text = run_cli("tables", "--lake", str(dest.parent))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith(
        "ddb_lake.t: 1 row, 1 file, partitioned by identity(item.größe.n) of attribute Größe (N), export ")
    rows = [line.split("│")[1:-1] for line in text.stdout.splitlines() if line.startswith("│")]
    cells = {cells[1].strip(): cells[3].strip() for cells in rows}
    assert cells == {"item.pk.s": "pk (S)", "item.größe.n": "Größe (N)", "item.tags.ss": "tags (SS, a list)"}
    entry = json.loads(run_cli("tables", "--lake", str(dest.parent), "--format", "json").stdout)["tables"][0]
    assert entry["partition_spec"] == [{"name": "item.größe.n", "transform": "identity", "source": "item.größe.n",
                                        "attribute": {"attribute": "Größe", "path": ["Größe"], "descriptor": "N",
                                                      "encoding": "scalar", "text": "Größe (N)"}}]
    assert [c["source"]["attribute"] for c in entry["schema"]] == ["pk", "Größe", "tags"]


@pytest.mark.fast
def test_an_applied_export_again_with_the_history_on_catches_the_history_up(tmp_path: Path) -> None:
    dest = tmp_path / "lake" / "t"
    convert(full_export(tmp_path / "full", [item("a", v=1)]), dest)
    window = incremental_export(tmp_path / "w1", T0, [put("a", T0 + timedelta(seconds=5), v=2)])
    applied = convert(window, dest)  # the history off (or its append failed after the merge)
    again = convert(window, dest, history=True)
    assert again.unchanged and again.commit.snapshot_id == applied.commit.snapshot_id
    assert again.history is not None and again.history.appended == [(applied.export.export_id, 1)]
    assert again.history_error is None
    assert convert(window, dest, history=True).history.appended == []  # held already: nothing appended


@pytest.mark.fast
def test_the_spark_runner_is_refused_or_unchanged_before_an_engine_starts(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ddb_assets.lake.shards import driver
    from ddb_assets.lake.shards.options import RunnerOptions

    dest = _evt_table(tmp_path)
    held = read_rows(str(dest))[0]["table"].current_snapshot().snapshot_id

    def no_engine(*args: Any) -> Any:
        raise AssertionError("an engine was started")
    monkeypatch.setattr(driver, "open_engine", no_engine)
    forbid_reads(monkeypatch)
    spark = RunnerOptions(kind="spark", shards=2, spark_master="local[1]")
    reviews = full_export(tmp_path / "reviews", [item("r1")], table_arn=REVIEWS, at=T0 + timedelta(hours=1))
    with pytest.raises(SourceTableMismatch):
        convert_export(reviews, dest, ConvertOptions(runner=spark))
    again = convert_export(next((tmp_path / "evt").rglob("manifest-summary.json")).parent, dest,
                           ConvertOptions(runner=spark))
    assert again.unchanged and again.commit.snapshot_id == held


# -- 9. a rebuild starts the chain again ------------------------------------------------------------------


def _full_and_two_windows(tmp: Path) -> tuple[Path, Path, Path]:
    """A full export at T0 of a (2015), b (2015), c (2016), then window 1 (a moves to 2016, b goes)
    and window 2 (c changes)."""
    full = full_export(tmp / "full", [item("a", year=2015, v="orig"), item("b", year=2015, v="orig"),
                                      item("c", year=2016, v="orig")])
    w1 = incremental_export(tmp / "w1", T0, [put("a", T0 + timedelta(seconds=5), year=2016, v="w1"),
                                             delete("b", T0 + timedelta(seconds=6))])
    w2 = incremental_export(tmp / "w2", T0 + WINDOW, [put("c", T0 + WINDOW + timedelta(seconds=5), year=2016,
                                                          v="w2")])
    return full, w1, w2


def _held(dest: Path) -> list[tuple[str, Any, Any]]:
    _, rows = read_rows(str(dest))
    values = [{k.split(".")[1] if k.startswith("item.") else k: v for k, v in row.items()} for row in rows]
    return sorted((r["pk"], int(r["year"]), r["v"]) for r in values)


def _mark(dest: Path) -> str:
    listed = run_cli("tables", "--lake", str(dest.parent), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["tables"][0]["high_water_mark"]


def test_after_a_rebuild_the_cli_merges_the_windows_after_its_full_export_again(tmp_path: Path) -> None:
    dest = tmp_path / "lake" / "t"
    full, w1, w2 = _full_and_two_windows(tmp_path)
    for source in (full, w1):
        assert run_cli("convert", str(source), str(dest), "--partition-by", "year").returncode == 0
    rebuilt = run_cli("convert", str(full), str(dest), "--rebuild", "--naming", "glue", "--partition-by", "year")
    assert rebuilt.returncode == 0, rebuilt.stderr
    # The table holds the full export again, and says so: its mark is the full export's time.
    assert _held(dest) == [("a", 2015, "orig"), ("b", 2015, "orig"), ("c", 2016, "orig")]
    assert _mark(dest) == "2026-03-02T08:15:42.517Z"
    # Window 1 is not held any more: it is merged again (not "applied already"), then window 2.
    for source, mark in ((w1, "2026-03-02T08:30:42.517Z"), (w2, "2026-03-02T08:45:42.517Z")):
        merged = run_cli("convert", str(source), str(dest))
        assert merged.returncode == 0, merged.stderr
        assert "unchanged" not in merged.stdout and "merged" in merged.stdout
        assert f"to {mark} (the table's high-water mark now)" in merged.stdout
    assert _held(dest) == [("a", 2016, "w1"), ("c", 2016, "w2")]
    assert _mark(dest) == "2026-03-02T08:45:42.517Z"


@pytest.mark.fast
def test_a_rollback_to_before_a_rebuild_gives_back_the_old_chain(tmp_path: Path) -> None:
    from pyiceberg.expressions import EqualTo

    from ddb_assets.lake.record import high_water_mark

    dest = tmp_path / "lake" / "t"
    full, w1, w2 = _full_and_two_windows(tmp_path)
    convert(full, dest, partition_by="year")
    merged = convert(w1, dest, partition_by="year")
    convert(full, dest, partition_by="year", rebuild=True)
    table = catalog_table(dest)
    assert high_water_mark(table) == ("2026-03-02T08:15:42.517Z", full.name)
    # Another writer's snapshot (a DELETE) on top of the rebuild hides neither its mark nor its chain.
    table.delete(EqualTo("pk", "c"))
    assert high_water_mark(catalog_table(dest))[0] == "2026-03-02T08:15:42.517Z"

    # Rolled back to window 1's snapshot: the chain before the rebuild, window 1 held, its mark.
    catalog_table(dest).manage_snapshots().rollback_to_snapshot(merged.commit.snapshot_id).commit()
    assert high_water_mark(catalog_table(dest)) == ("2026-03-02T08:30:42.517Z", w1.name)
    again = convert(w1, dest, partition_by="year")
    assert again.unchanged and again.commit.snapshot_id == merged.commit.snapshot_id
    assert _mark(dest) == "2026-03-02T08:30:42.517Z"


@pytest.mark.fast
def test_a_partial_backfill_does_not_start_the_chain_again(tmp_path: Path) -> None:
    """A full export converted into some partitions only replaces part of the table: the windows
    merged before it stay applied, and the table's mark moves to the backfill's export."""
    dest = tmp_path / "lake" / "t"
    full, w1, _ = _full_and_two_windows(tmp_path)
    convert(full, dest, partition_by="year")
    convert(w1, dest, partition_by="year")
    later = full_export(tmp_path / "later", [item("a", year=2016, v="w1"), item("c", year=2016, v="orig")],
                        at=T0 + 2 * WINDOW)
    partial = convert(later, dest, partition_by="year", only_partitions=frozenset({"2016"}))
    assert not partial.unchanged
    assert convert(w1, dest, partition_by="year").unchanged  # still held: not merged again
    assert _mark(dest) == "2026-03-02T08:45:42.517Z"


@pytest.mark.fast
def test_after_a_rebuild_the_change_history_holds_each_window_once(tmp_path: Path) -> None:
    dest = tmp_path / "lake" / "t"
    full, w1, w2 = _full_and_two_windows(tmp_path)
    convert(full, dest, partition_by="year")
    assert convert(w1, dest, partition_by="year", history=True).history.appended == [(w1.name, 2)]
    convert(full, dest, partition_by="year", rebuild=True)
    for window, changes in ((w1, 2), (w2, 1)):
        merged = convert(window, dest, partition_by="year", history=True)
        assert merged.merge is not None and merged.history_error is None
        assert merged.history.appended == [(window.name, changes)]
    rows = catalog_table(dest.parent / "t_changes").scan().to_arrow().to_pylist()
    assert sorted((r["pk"], r["operation"], r["export_id"]) for r in rows) == \
        [("a", "INSERT", w1.name), ("b", "REMOVE", w1.name), ("c", "INSERT", w2.name)]


def test_looking_up_a_table_in_a_new_lake_creates_no_catalog(tmp_path: Path) -> None:
    # The Dagster resource's look-up (the demo's check before anything is exported, the sensors):
    # a lake with no table yet stays untouched, and a later commit still makes the catalog.
    from ddb_assets.aws.resources import LakeResource

    lake = tmp_path / "lake"
    lake.mkdir()
    resource = LakeResource(root=str(lake))
    assert resource.table("reviews") is None
    assert sorted(os.listdir(lake)) == []
    export = full_export(tmp_path / "export", [item("a")])
    convert_export(str(export), str(lake / "reviews"), ConvertOptions(catalog=CatalogConfig(), workers=1))
    assert resource.table("reviews").scan().to_arrow().num_rows == 1
