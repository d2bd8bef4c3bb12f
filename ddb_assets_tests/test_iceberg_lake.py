"""The lake as Iceberg tables: commit races, time travel and rollback, partition transforms,
empty exports, maintenance, and the table description other tools read."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ddb_assets.lake.catalog import CatalogConfig, load_table, open_catalog
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests import doctor
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.lake_reader import read_rows, read_table_metadata
from ddb_assets_tests.test_schema_rules import export_of

CASES = Path(__file__).parent / "cases"


def _case(name: str) -> Path:
    return next((CASES / name / "AWSDynamoDB").iterdir())


# -- concurrent commits ------------------------------------------------------------------------------


def _race(monkeypatch: pytest.MonkeyPatch, runs: list[Any]) -> list[BaseException]:
    """Run the callables at once, every first commit held until all have read the table: the
    second to commit finds the table moved and must re-plan against it."""
    from pyiceberg.table import CreateTableTransaction, Transaction

    barrier = threading.Barrier(len(runs), timeout=60)
    first = threading.local()

    def holding(original: Any) -> Any:
        def held(self: Any) -> Any:
            if not getattr(first, "done", False):
                first.done = True
                barrier.wait()
            return original(self)
        return held

    for kind in (Transaction, CreateTableTransaction):  # a new table commits through the second
        monkeypatch.setattr(kind, "commit_transaction", holding(kind.commit_transaction))
    errors: list[BaseException] = []

    def run(work: Any) -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work,)) for work in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("catalog", ["sql", "glue"])
def test_two_runs_rewriting_different_partitions_at_once_keep_both(
        tmp_path: Path, catalog: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Both runs start from the same snapshot. The loser of the catalog's compare-and-swap (SQLite's
    conditional UPDATE; Glue's UpdateTable VersionId, enforced by the local world as AWS does)
    reloads the table and replaces its partitions in the snapshot the winner made."""
    if catalog == "glue":
        world: LocalWorld = request.getfixturevalue("world")
        s3 = request.getfixturevalue("s3")
        lake = unique("lake")
        s3.create_bucket(Bucket=lake)
        for key, value in world.env().items():
            monkeypatch.setenv(key, value)
        root = f"s3://{lake}/reviews"
        config = CatalogConfig("glue", namespace=unique("db").replace("-", "_"))
    else:
        root = str(tmp_path / "lake" / "reviews")
        config = CatalogConfig()
    options = ConvertOptions(workers=1, partition_by="year", catalog=config)
    first = convert_export(doctor.make_export(tmp_path / "export", items=200, seed=1), root, options)
    source = doctor.make_export(tmp_path / "newer", items=200, seed=1)  # the same items, exported later
    partitions = sorted(first.partitions)
    mine, theirs = frozenset(partitions[:2]), frozenset(partitions[2:4])
    results: dict[str, Any] = {}

    def rewrite(only: frozenset[str], name: str) -> Any:
        return lambda: results.__setitem__(name, convert_export(
            source, root, ConvertOptions(workers=1, partition_by="year", catalog=config, only_partitions=only)))

    errors = _race(monkeypatch, [rewrite(mine, "mine"), rewrite(theirs, "theirs")])
    assert not errors, errors
    table = first.commit.table
    table.refresh()
    files = [task.file.file_path for task in table.scan().plan_files()]
    by_run = {name: {f for f in files if result.written[0].path.rsplit("/", 1)[1].split("-0000")[0] in f}
              for name, result in results.items()}
    assert all(any(f"year={v}/" in f for f in by_run["mine"]) for v in mine)
    assert all(any(f"year={v}/" in f for f in by_run["theirs"]) for v in theirs)
    assert table.scan().to_arrow().num_rows == 200  # nothing lost, nothing doubled
    assert len(table.snapshots()) == 3


def test_two_new_tables_created_at_once_end_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = doctor.make_export(tmp_path / "export", items=100, seed=3)
    root = tmp_path / "lake" / "reviews"
    results: list[Any] = []
    errors = _race(monkeypatch, [lambda: results.append(convert_export(source, root, ConvertOptions(workers=1)))] * 2)
    assert not errors, errors
    meta, rows = read_rows(str(root))
    # The loser finds, at its commit, the table holding the same export: nothing to add (its files go).
    assert len(rows) == 100 and len(meta["table"].snapshots()) == 1
    assert sorted(r.unchanged for r in results) == [False, True]
    on_disk = {str(p) for p in (root / "data").rglob("*.parquet")}
    assert on_disk == {task.file.file_path for task in meta["table"].scan().plan_files()}


def test_a_concurrent_run_that_added_other_columns_is_a_conflict_not_a_corruption(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ddb_assets.lake.commit import CommitConflict

    root = tmp_path / "lake" / "t"
    convert_export(export_of(tmp_path / "base", [{"a": {"S": "x"}}]), root, ConvertOptions(workers=1))
    at = datetime.now(timezone.utc)  # one export time: neither is older than the other
    left = export_of(tmp_path / "left", [{"a": {"S": "x"}, "b": {"N": "1"}}], at=at, export_id="01715674542517-aaaa0001")
    right = export_of(tmp_path / "right", [{"a": {"S": "x"}, "c": {"BOOL": True}}], at=at,
                      export_id="01715674542517-bbbb0002")
    errors = _race(monkeypatch, [lambda: convert_export(left, root, ConvertOptions(workers=1)),
                                 lambda: convert_export(right, root, ConvertOptions(workers=1))])
    assert len(errors) == 1 and isinstance(errors[0], CommitConflict) and "run again" in str(errors[0])
    meta, rows = read_rows(str(root))  # the winner's snapshot, whole; its files read by field id
    assert len(rows) == 1 and ({"b", "c"} & {c["name"] for c in meta["columns"]}) in ({"b"}, {"c"})
    assert set(rows[0]) == {c["name"] for c in meta["columns"]}


# -- history, time travel, rollback ------------------------------------------------------------------


def test_history_time_travel_and_rollback_from_the_cli(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    older = doctor.make_export(tmp_path / "older", items=300, seed=1)
    newer = doctor.make_export(tmp_path / "newer", items=120, seed=2)
    assert run_cli("convert", str(older), str(lake / "reviews")).returncode == 0
    between = datetime.now(timezone.utc).isoformat()
    time.sleep(0.05)
    assert run_cli("convert", str(newer), str(lake / "reviews")).returncode == 0

    listed = run_cli("history", "reviews", "--lake", str(lake), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    history = json.loads(listed.stdout)
    assert [h["rows"] for h in history] == [300, 120] and history[-1]["current"]
    assert [h["operation"] for h in history] == ["append", "overwrite"]
    first, second = history[0]["snapshot_id"], history[1]["snapshot_id"]

    def count(*args: str) -> int:
        result = run_cli("query", "SELECT count(*) AS n FROM reviews", "--lake", str(lake), "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["n"]

    assert count() == 120
    assert count("--table", "reviews", "--as-of", str(first)) == 300
    assert count("--as-of", between) == 300
    no_id = run_cli("query", "SELECT 1", "--lake", str(lake), "--as-of", str(first))
    assert no_id.returncode == 2 and "--as-of SNAPSHOT_ID needs --table" in no_id.stderr  # a usage error
    unknown = run_cli("query", "SELECT 1", "--lake", str(lake), "--table", "reviews", "--as-of", "123")
    assert unknown.returncode == 1 and "no snapshot 123" in unknown.stderr

    metadata_files = sorted((lake / "reviews" / "metadata").glob("*.metadata.json"))
    current = run_cli("rollback", "reviews", str(second), "--lake", str(lake))  # the current one: nothing to do
    assert (current.returncode, current.stderr) == (0, ""), current.stderr
    assert current.stdout.startswith(f"reviews is at snapshot {second} already: nothing was committed (metadata ")
    assert sorted((lake / "reviews" / "metadata").glob("*.metadata.json")) == metadata_files

    rolled = run_cli("rollback", "reviews", str(first), "--lake", str(lake))
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.startswith(f"reviews is at snapshot {first} again (metadata ")
    assert count() == 300
    assert json.loads(run_cli("history", "reviews", "--lake", str(lake), "--format", "json").stdout)[0]["current"]
    assert second  # the rolled-back snapshot stays until maintenance expires it
    # Converted again after the rollback: the same export twice in the history, the first marked.
    assert run_cli("convert", str(newer), str(lake / "reviews")).returncode == 0
    history = json.loads(run_cli("history", "reviews", "--lake", str(lake), "--format", "json").stdout)
    assert [(h["action"], h["rows"], h["current"], h["rolled_back"]) for h in history] == [
        ("convert", 300, False, False), ("convert", 120, False, True), ("convert", 120, True, False)]
    assert history[1]["export_id"] == history[2]["export_id"] == newer.name
    lines = run_cli("history", "reviews", "--lake", str(lake)).stdout.splitlines()
    assert lines[1].split() == ["snapshot", "committed", "(UTC)", "action", "export", "rows", "files"]
    assert lines[3].startswith(str(second)) and lines[3].split()[2:4] == ["convert", newer.name]
    assert lines[3].endswith("  rolled back") and lines[4].endswith("  current") and lines[2].endswith("+1/-0")


# -- partitioning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting, values, expected", [
    ("month(ts)", [{"N": "1440979200"}, {"N": "1443571200"}, {"N": "1443657600"}],  # epoch seconds
     {"2015-08": 1, "2015-09": 1, "2015-10": 1}),
    ("day(ts)", [{"N": "1440979200123"}, {"N": "1440979300123"}, {"N": "1441065600000"}],  # epoch millis
     {"2015-08-31": 2, "2015-09-01": 1}),
    ("year(ts)", [{"S": "2015-08-31T12:00:00Z"}, {"S": "2016-01-01"}, {"S": "not a time"}],  # ISO-8601
     {"2015": 1, "2016": 1, "__HIVE_DEFAULT_PARTITION__": 1}),
    ("hour(ts, epoch_seconds)", [{"N": "3600"}, {"N": "3601"}, {"N": "7200"}],
     {"1970-01-01-01": 2, "1970-01-01-02": 1}),
])
def test_time_transforms_partition_a_derived_timestamp(tmp_path: Path, setting: str, values: list[dict],
                                                       expected: dict[str, int]) -> None:
    result = convert_export(export_of(tmp_path / "export", [{"ts": v} for v in values]), tmp_path / "lake" / "t",
                            ConvertOptions(workers=1, partition_by=setting))
    assert {name: p["rows"] for name, p in result.partitions.items()} == expected
    meta, rows = read_rows(str(tmp_path / "lake" / "t"))
    [(field_name, transform)] = meta["partition_spec"]
    assert field_name == f"ts_{setting.split('(')[0]}" and transform == setting.split("(")[0]
    derived = next(c for c in meta["columns"] if c["name"] == "ts__ts")
    assert derived["type"] == "timestamptz" and derived["encoding"] == "time"
    # The attribute keeps its own column, exactly as it was.
    kind = next(iter(values[0]))
    assert sorted(str(r["ts"]) for r in rows) == sorted(str(v[kind]) for v in values)


def test_bucket_partitions_agree_with_icebergs_own_transform(tmp_path: Path) -> None:
    from pyiceberg.transforms import BucketTransform
    from pyiceberg.types import StringType

    keys = [f"customer-{i}" for i in range(40)]
    result = convert_export(export_of(tmp_path / "export", [{"customer": {"S": k}} for k in keys]),
                            tmp_path / "lake" / "t", ConvertOptions(workers=2, partition_by="bucket(4, customer)"))
    bucket = BucketTransform(4).transform(StringType())
    expected: dict[str, int] = {}
    for key in keys:
        expected[str(bucket(key))] = expected.get(str(bucket(key)), 0) + 1
    assert {name: p["rows"] for name, p in result.partitions.items()} == expected
    table = read_table_metadata(str(tmp_path / "lake" / "t"))["table"]
    for task in table.scan().plan_files():  # each file's partition record is its rows' bucket
        rows = table.scan(row_filter=f"customer == '{keys[0]}'").to_arrow()
        assert rows.num_rows == 1
        assert task.file.partition[0] in range(4)


def test_a_map_partition_attribute_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    folder = _case("partition-by-map")
    result = run_cli("convert", str(folder), str(tmp_path / "lake" / "t"), "--partition-by", "meta")
    assert result.returncode == 1
    assert "attribute 'meta' is a map (M)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "lake" / "t").exists()


# -- empty exports -----------------------------------------------------------------------------------


def test_an_empty_export_gives_an_empty_table_every_command_and_engine_reads(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert run_cli("convert", str(_case("empty-export")), str(lake / "empty"), "--partition-by", "year").returncode == 0
    assert run_cli("convert", str(_case("set-columns")), str(lake / "sets")).returncode == 0
    for sql, expected in (("SELECT count(*) AS n FROM empty", {"n": 0}), ("SELECT count(*) AS n FROM sets", {"n": 2})):
        result = run_cli("query", sql, "--lake", str(lake), "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == expected
    listed = run_cli("tables", "--lake", str(lake), "--format", "json")
    tables = {t["identifier"]: t for t in json.loads(listed.stdout)["tables"]}
    assert tables["ddb_lake.empty"]["rows"] == 0 and tables["ddb_lake.sets"]["rows"] == 2
    meta, rows = read_rows(str(lake / "empty"))  # pyiceberg reads it too
    assert rows == [] and meta["columns"] == []

    # The next export of the table that has items gives the table its columns and its partitioning.
    later = doctor.make_export(tmp_path / "export", items=50)
    summary = doctor.summary(later)
    summary["tableArn"] = "arn:aws:dynamodb:us-east-1:111122223333:table/EmptyTable"
    summary["exportArn"] = f"{summary['tableArn']}/export/{later.name}"
    doctor.write_summary(later, summary)
    assert run_cli("convert", str(later), str(lake / "empty")).returncode == 0
    meta, rows = read_rows(str(lake / "empty"))
    assert len(rows) == 50 and meta["partition_spec"] == [("year", "identity")]


# -- maintenance -------------------------------------------------------------------------------------


def test_maintenance_compacts_expires_and_removes_orphans(tmp_path: Path) -> None:
    from ddb_assets.lake.maintenance import MaintenanceOptions, maintain
    from ddb_assets.lake.tables import history

    root = tmp_path / "lake" / "reviews"
    for number in range(3):  # three exports, three snapshots, each replacing the last; two workers: two files per year
        folder = doctor.make_export(tmp_path / f"export{number}", items=400, files=4, seed=4)
        convert_export(folder, root, ConvertOptions(workers=2, partition_by="year", small_partition_bytes=0))
    orphan = root / "data" / "year=2015" / "killed-run-00000.parquet"
    orphan.write_bytes(b"PAR1")
    table = read_table_metadata(str(root))["table"]
    catalog = open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"]).resolve(
        tmp_path / "lake"))
    table = load_table(catalog, "ddb_lake", "reviews")
    rows_before = sorted(table.scan().to_arrow().column("review_id").to_pylist())
    files_per_year_before = _files_per_partition(table)
    assert max(files_per_year_before.values()) == 2

    dry = maintain(table, MaintenanceOptions(expire_after=timedelta(0), keep_snapshots=1, grace=timedelta(0),
                                             dry_run=True))
    assert dry.compacted and orphan.exists() and len(table.snapshots()) == 3  # nothing changed
    result = maintain(table, MaintenanceOptions(expire_after=timedelta(0), keep_snapshots=1, grace=timedelta(0)))
    table.refresh()
    assert _files_per_partition(table) == {year: 1 for year in files_per_year_before}
    assert sorted(table.scan().to_arrow().column("review_id").to_pylist()) == rows_before
    assert len(table.snapshots()) == 1 and len(result.expired_snapshots) == 3
    [compaction] = history(table)  # the same export, compacted: not applied twice
    assert (compaction["action"], compaction["export_id"], compaction["rows"]) == ("compaction", folder.name, 400)
    assert str(orphan) in result.orphans and not orphan.exists()
    on_disk = {str(p) for p in (root / "data").rglob("*.parquet")}
    assert on_disk == {task.file.file_path for task in table.scan().plan_files()}  # superseded files gone
    meta, rows = read_rows(str(root))  # an independent reader finds everything it needs
    assert len(rows) == 400


def test_maintenance_keeps_the_record_of_what_the_table_holds_under_another_writers_snapshot(
        tmp_path: Path) -> None:
    """Another writer's DELETE (no record of ours) on top: expiring keeps the snapshot that records
    the export (else the table's high-water mark would be gone), and a compaction carries that
    record along, naming the snapshot that applied it."""
    from pyiceberg.expressions import EqualTo

    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.maintenance import MaintenanceOptions, maintain
    from ddb_assets.lake.record import APPLIED_BY, high_water_mark

    folder = doctor.make_export(tmp_path / "export", items=200, files=2, seed=3)
    converted = convert_export(folder, tmp_path / "lake" / "reviews",  # two files a year: compactable
                               ConvertOptions(workers=2, partition_by="year", small_partition_bytes=0))
    table = load_table(open_catalog(CatalogConfig(), resolve(tmp_path / "lake")), "ddb_lake", "reviews")
    mark = high_water_mark(table)
    assert mark[1] == folder.name
    table.delete(EqualTo("year", 2015))
    table.refresh()
    options = dict(expire_after=timedelta(0), keep_snapshots=1, grace=timedelta(0))
    assert maintain(table, MaintenanceOptions(**options, compact=False)).expired_snapshots == []
    assert high_water_mark(table) == mark
    result = maintain(table, MaintenanceOptions(**options, small_file_bytes=1 << 30))
    table.refresh()
    assert result.compacted and [s.snapshot_id for s in table.snapshots()] == [result.snapshot_id]
    assert high_water_mark(table) == mark
    carried = table.current_snapshot().summary.additional_properties
    assert carried[APPLIED_BY] == str(converted.commit.snapshot_id)


def test_a_dry_run_names_the_orphans_the_run_removes(tmp_path: Path) -> None:
    """A dry run expires nothing, yet counts the files of the snapshots it would expire as orphans."""
    from ddb_assets.lake.maintenance import MaintenanceOptions, maintain

    root = tmp_path / "lake" / "reviews"
    for number in range(2):
        folder = doctor.make_export(tmp_path / f"export{number}", items=200, files=2, seed=number)
        convert_export(folder, root, ConvertOptions(workers=1, partition_by="year"))
    table = load_table(open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"])
                                    .resolve(tmp_path / "lake")), "ddb_lake", "reviews")
    options = dict(expire_after=timedelta(0), keep_snapshots=1, grace=timedelta(0), compact=False)
    dry = maintain(table, MaintenanceOptions(**options, dry_run=True))
    assert len(dry.expired_snapshots) == 1 and len(table.snapshots()) == 2
    real = maintain(table, MaintenanceOptions(**options))
    assert sorted(dry.orphans) == sorted(real.orphans) and dry.orphan_bytes == real.orphan_bytes
    assert any("/data/" in uri for uri in real.orphans)  # the first export's data files


def test_a_small_table_holds_one_file_per_partition(tmp_path: Path) -> None:
    """Each worker writes its own file per partition; small partitions are merged before the commit."""
    folder = doctor.make_export(tmp_path / "export", items=400, files=4, seed=4)
    result = convert_export(folder, tmp_path / "lake" / "t", ConvertOptions(workers=2, partition_by="year"))
    table = result.commit.table
    assert set(_files_per_partition(table).values()) == {1} and len(_files_per_partition(table)) > 10
    assert table.scan().to_arrow().num_rows == 400
    assert {str(p) for p in (tmp_path / "lake" / "t" / "data").rglob("*.parquet")} == \
        {task.file.file_path for task in table.scan().plan_files()}  # the merged-away files are gone


def _files_per_partition(table: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for task in table.scan().plan_files():
        year = task.file.file_path.split("/data/")[1].split("/")[0]
        out[year] = out.get(year, 0) + 1
    return out


def test_the_maintain_command(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for number in range(2):
        folder = doctor.make_export(tmp_path / f"export{number}", items=100)
        assert run_cli("convert", str(folder), str(lake / "reviews"), "--partition-by", "year").returncode == 0
    result = run_cli("maintain", "reviews", "--lake", str(lake), "--expire-after-days", "0", "--keep-snapshots", "1",
                     "--grace-hours", "0")
    assert result.returncode == 0, result.stderr
    # two conversions (each partition already one file: nothing to compact): the newest is kept, and
    # the files only the older one referenced go
    assert "0 partitions rewritten" in result.stdout and "1 snapshot expired" in result.stdout
    assert "orphans" in result.stdout and " 0 files removed" not in result.stdout
    assert result.stderr == ("warning: a grace of 0 hours: files of a conversion or merge still writing to reviews "
                             "may be removed as orphans (its commit then fails); keep it longer than your longest "
                             "run\n")
    missing = run_cli("maintain", "nope", "--lake", str(lake))
    assert missing.returncode == 1 and "no table 'nope'" in missing.stderr and "reviews" in missing.stderr


def test_maintain_refuses_a_table_whose_files_are_missing_and_changes_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for number in range(2):
        folder = doctor.make_export(tmp_path / f"export{number}", items=100, seed=number)
        assert run_cli("convert", str(folder), str(lake / "reviews"), "--partition-by", "year").returncode == 0
    catalog = open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"]).resolve(lake))
    table = load_table(catalog, "ddb_lake", "reviews")
    first, second = [s.snapshot_id for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms)]
    live = sorted(task.file.file_path for task in table.scan().plan_files())
    gone = Path(live[1])
    gone.unlink()  # by hand, or a bucket lifecycle rule
    on_disk = sorted(str(p) for p in (lake / "reviews").rglob("*") if p.is_file())

    refused = run_cli("maintain", "reviews", "--lake", str(lake), "--expire-after-days", "0", "--keep-snapshots", "1",
                      "--grace-hours", "0")
    assert refused.returncode == 1
    [line] = [line for line in refused.stderr.splitlines() if line.strip()]
    assert line == (f"error: table reviews: 1 file that its current snapshot {second} lists is missing (first: "
                    f"{gone}), so the table cannot be read; nothing was changed: restore it, or roll back to a "
                    f"snapshot whose files exist (`ddb-assets history reviews`, then `ddb-assets rollback reviews "
                    f"SNAPSHOT_ID`) and run maintenance again")
    assert sorted(str(p) for p in (lake / "reviews").rglob("*") if p.is_file()) == on_disk  # nothing removed
    table.refresh()
    assert len(table.snapshots()) == 2

    # The way out it names: back to the first export's snapshot, whose files exist; then maintenance runs.
    assert run_cli("rollback", "reviews", str(first), "--lake", str(lake)).returncode == 0
    result = run_cli("maintain", "reviews", "--lake", str(lake), "--grace-hours", "0")
    assert result.returncode == 0, result.stderr
    assert "0 snapshots expired" in result.stdout  # the newest (rolled back) is kept with the current one
    assert len(read_rows(str(lake / "reviews"))[1]) == 100


def test_missing_files_on_s3_are_found_by_one_listing(aws_env: dict[str, str], s3: Any, tmp_path: Path) -> None:
    from ddb_assets.exports.storage import S3Options
    from ddb_assets.lake.maintenance import missing_files

    lake = unique("lake")
    s3.create_bucket(Bucket=lake)
    folder = doctor.make_export(tmp_path / "export", items=120, files=2, seed=3)
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")
    table = convert_export(folder, f"s3://{lake}/reviews", ConvertOptions(workers=1, partition_by="year",
                                                                            catalog=catalog)).commit.table
    options = S3Options(endpoint_url=aws_env["AWS_ENDPOINT_URL"], region="us-east-1")
    assert missing_files(table, options) == []
    live = sorted(task.file.file_path for task in table.scan().plan_files())
    s3.delete_object(Bucket=lake, Key=live[0][len(f"s3://{lake}/"):])
    assert missing_files(table, options) == [live[0]]


def test_maintain_aborts_a_tables_stale_incomplete_multipart_uploads_only(aws_env: dict[str, str], s3: Any,
                                                                         tmp_path: Path) -> None:
    """A writer killed mid-file leaves an incomplete multipart upload under the table's data/: no
    listing of objects shows it, its parts are billed until aborted. Begun before the grace
    period, maintain aborts it (a dry run counts it); a younger one, or one outside data/, stays."""
    from ddb_assets.exports.storage import S3Options
    from ddb_assets.lake.maintenance import MaintenanceOptions, maintain

    lake = unique("lake")
    s3.create_bucket(Bucket=lake)
    folder = doctor.make_export(tmp_path / "export", items=60, files=1, seed=5)
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")
    table = convert_export(folder, f"s3://{lake}/reviews", ConvertOptions(workers=1, catalog=catalog)).commit.table

    def upload(key: str) -> str:
        begun = s3.create_multipart_upload(Bucket=lake, Key=key)["UploadId"]
        s3.upload_part(Bucket=lake, Key=key, UploadId=begun, PartNumber=1, Body=b"PAR1" + b"\0" * 1024)
        return begun

    def uploads() -> list[str]:
        return sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=lake).get("Uploads", []))

    killed = "reviews/data/20260101T000000-0123456789ab-00000.parquet"
    elsewhere = "reviews-backup/data/other.parquet"  # another prefix that begins alike: not the table's
    upload(killed), upload(elsewhere)
    options = S3Options(endpoint_url=aws_env["AWS_ENDPOINT_URL"], region="us-east-1")
    kept = maintain(table, MaintenanceOptions(grace=timedelta(hours=1), compact=False), options)
    assert kept.aborted_uploads == [] and uploads() == sorted([killed, elsewhere])  # younger than the grace period
    time.sleep(0.01)
    dry = maintain(table, MaintenanceOptions(grace=timedelta(0), compact=False, dry_run=True), options)
    assert dry.aborted_uploads == [f"s3://{lake}/{killed}"] and uploads() == sorted([killed, elsewhere])
    real = maintain(table, MaintenanceOptions(grace=timedelta(0), compact=False), options)
    assert real.aborted_uploads == [f"s3://{lake}/{killed}"] and uploads() == [elsewhere]
    assert s3.list_multipart_uploads(Bucket=lake, Prefix="reviews/data/").get("Uploads", []) == []
    assert table.scan().to_arrow().num_rows == 60  # the table's own files untouched


def test_uploads_that_cannot_be_listed_are_one_line_naming_the_prefix_and_the_permissions(
        aws_env: dict[str, str], tmp_path: Path) -> None:
    from ddb_assets.lake.maintenance import UploadsNotAborted, abort_stale_uploads

    bucket = unique("gone")
    with pytest.raises(UploadsNotAborted) as raised:
        abort_stale_uploads(f"s3://{bucket}/lake/t", timedelta(0))
    assert str(raised.value) == (
        f"the incomplete multipart uploads under s3://{bucket}/lake/t/data/ could not be listed: the bucket does "
        f"not exist: create it, or check the s3:// URI (NO_SUCH_BUCKET during ListMultipartUploads); maintenance "
        f"needs s3:ListBucketMultipartUploads and s3:AbortMultipartUpload on the lake bucket")
    assert abort_stale_uploads(str(tmp_path / "lake" / "t"), timedelta(0)) == []  # a local table: nothing to abort


def test_the_maintain_command_names_the_uploads_it_aborts(aws_env: dict[str, str], s3: Any, tmp_path: Path) -> None:
    lake = unique("lake")
    s3.create_bucket(Bucket=lake)
    folder = doctor.make_export(tmp_path / "export", items=40, files=1, seed=6)
    where = ["--lake", f"s3://{lake}", "--catalog", f"sqlite:///{tmp_path / 'catalog.db'}"]
    converted = run_cli("convert", str(folder), f"s3://{lake}/t", *where[2:])
    assert converted.returncode == 0, converted.stderr
    s3.create_multipart_upload(Bucket=lake, Key="t/data/killed.parquet")
    dry = run_cli("maintain", "t", *where, "--grace-hours", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"^uploads +1 incomplete multipart upload would be aborted$", dry.stdout, re.M), dry.stdout
    real = run_cli("maintain", "t", *where, "--grace-hours", "0")
    assert re.search(r"^uploads +1 incomplete multipart upload aborted$", real.stdout, re.M), real.stdout
    assert s3.list_multipart_uploads(Bucket=lake).get("Uploads", []) == []


def test_tables_json_describes_each_table_for_other_tools(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = run_cli("convert", str(doctor.make_export(tmp_path / "export", items=80)), str(lake / "reviews"),
                     "--partition-by", "year")
    assert result.returncode == 0, result.stderr
    listed = run_cli("tables", "--lake", str(lake), "--format", "json")
    [entry] = json.loads(listed.stdout)["tables"]
    meta = read_table_metadata(str(lake / "reviews"))
    assert entry["identifier"] == "ddb_lake.reviews" and entry["catalog"] == "sql"
    assert entry["metadata_location"] == meta["metadata_location"] and entry["rows"] == 80
    assert entry["current_snapshot_id"] == meta["table"].current_snapshot().snapshot_id
    assert entry["partition_spec"] == [{"name": "year", "transform": "identity", "source": "year", "attribute": {
        "attribute": "year", "path": ["year"], "descriptor": "N", "encoding": "scalar", "text": "year (N)"}}]
    assert [c["name"] for c in entry["schema"]] == [c["name"] for c in meta["columns"]]


def test_a_rebuild_replans_names_and_partitioning_in_one_commit(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    folder = doctor.make_export(tmp_path / "export", items=120)
    assert run_cli("convert", str(folder), str(lake / "t"), "--partition-by", "year").returncode == 0
    refused = run_cli("convert", str(folder), str(lake / "t"), "--partition-by", "bucket(4, product_id)")
    assert refused.returncode == 1 and "--rebuild" in refused.stderr
    rebuilt = run_cli("convert", str(folder), str(lake / "t"), "--partition-by", "bucket(4, product_id)",
                      "--naming", "glue", "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    meta, rows = read_rows(str(lake / "t"))
    assert meta["partition_spec"] == [("item.product_id.s_bucket", "bucket[4]")] and len(rows) == 120
    assert all(c["name"].startswith("item.") for c in meta["columns"])
    history = json.loads(run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout)
    # The rebuild: one snapshot (a new schema and spec, every old file out, the new ones in).
    assert [(h["operation"], h["rows"]) for h in history] == [("append", 120), ("overwrite", 120)]
    assert history[1]["files_removed"] == history[0]["files_added"] and history[1]["files_added"] >= 1
    assert history[1]["parent_id"] == history[0]["snapshot_id"] and history[1]["current"]
    as_of = run_cli("query", "select count(*) as n from t", "--lake", str(lake), "--table", "t", "--as-of",
                    str(history[1]["snapshot_id"]), "--format", "csv")
    assert as_of.returncode == 0 and as_of.stdout.split() == ['"n"', "120"], as_of.stderr


def test_a_rebuild_keeps_the_table_options_not_given(tmp_path: Path) -> None:
    """Converting the same export again (--rebuild, as a restore does) keeps the table's partitioning
    and naming unless asked otherwise; --partition-by '' makes it unpartitioned on purpose."""
    lake = tmp_path / "lake"
    folder = doctor.make_export(tmp_path / "export", items=60)
    assert run_cli("convert", str(folder), str(lake / "t"), "--partition-by", "year", "--naming", "glue",
                   "--workers", "1").returncode == 0
    again = run_cli("convert", str(folder), str(lake / "t"), "--rebuild", "--workers", "1")
    assert again.returncode == 0, again.stderr
    meta, rows = read_rows(str(lake / "t"))
    assert meta["partition_spec"] == [("item.year.n", "identity")] and len(rows) == 60
    assert all(c["name"].startswith("item.") for c in meta["columns"])
    flat = run_cli("convert", str(folder), str(lake / "t"), "--rebuild", "--partition-by", "", "--workers", "1")
    assert flat.returncode == 0, flat.stderr
    meta, rows = read_rows(str(lake / "t"))
    assert meta["partition_spec"] == [] and len(rows) == 60
    assert all(c["name"].startswith("item.") for c in meta["columns"])  # naming: still the table's


def test_a_rebuild_in_two_snapshots_by_an_earlier_build_reads_as_one(tmp_path: Path) -> None:
    """Earlier builds committed a rebuild as two snapshots (the old files out, then the new in):
    history names the two steps, and a rollback to the first (an empty table) names the second."""
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.record import SUMMARY_PREFIX
    from ddb_assets.lake.tables import RollbackRefused, history, rollback

    lake = tmp_path / "lake"
    assert run_cli("convert", str(doctor.make_export(tmp_path / "export", items=40)), str(lake / "t"),
                   "--workers", "1").returncode == 0
    table = load_table(open_catalog(CatalogConfig(), resolve(lake)), "ddb_lake", "t")
    summary = {k: v for k, v in table.current_snapshot().summary.additional_properties.items()
               if k.startswith(SUMMARY_PREFIX)}
    files = [task.file for task in table.scan().plan_files()]
    transaction = table.transaction()  # what those builds committed: two snapshots, one commit
    with transaction.update_snapshot(snapshot_properties={**summary, f"{SUMMARY_PREFIX}operation": "rebuild"}) \
            .overwrite() as removing:
        for data_file in files:
            removing.delete_data_file(data_file)
    with transaction.update_snapshot(snapshot_properties=summary).fast_append() as adding:
        for data_file in files:
            adding.append_data_file(data_file)
    transaction.commit_transaction()
    table.refresh()
    entries = history(table)
    assert [(e["action"], e["rows"]) for e in entries] == [("convert", 40), ("rebuild 1/2", 0), ("rebuild 2/2", 40)]
    first, second = entries[1]["snapshot_id"], entries[2]["snapshot_id"]
    with pytest.raises(RollbackRefused) as refused:
        rollback(table, first)
    assert str(refused.value) == (
        f"table t: snapshot {first} is the first step of a rebuild (the old files removed, no rows yet; earlier "
        f"versions made a rebuild in two snapshots): roll back to its second step, snapshot {second}, the rebuilt "
        f"table")


def test_a_rollback_to_before_a_rebuild_is_refused_in_one_line(tmp_path: Path) -> None:
    """A rebuild gives every column a new field id; a rollback moves only the snapshot pointer,
    so the older snapshot's files would read as nulls: refused, saying what to do instead."""
    lake = tmp_path / "lake"
    folder = doctor.make_export(tmp_path / "export", items=40)
    assert run_cli("convert", str(folder), str(lake / "t"), "--workers", "1").returncode == 0
    before = json.loads(run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout)[-1]["snapshot_id"]
    assert run_cli("convert", str(folder), str(lake / "t"), "--rebuild", "--workers", "1").returncode == 0
    refused = run_cli("rollback", "t", str(before), "--lake", str(lake))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: table t: snapshot {before} was committed before the table was rebuilt (its columns have other "
        f"field ids), so after a rollback its rows would read as nulls; convert the export it holds again with "
        f"--rebuild instead (`ddb-assets history` names it)")
    meta, rows = read_rows(str(lake / "t"))
    assert len(rows) == 40 and all(r["review_id"] is not None for r in rows)  # the rebuilt table, untouched
    # Within one schema lineage a rollback still works.
    after = json.loads(run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout)[-1]["snapshot_id"]
    again = doctor.make_export(tmp_path / "export2", items=30, seed=9)
    assert run_cli("convert", str(again), str(lake / "t"), "--workers", "1").returncode == 0
    rolled = run_cli("rollback", "t", str(after), "--lake", str(lake))
    assert rolled.returncode == 0, rolled.stderr
    assert len(read_rows(str(lake / "t"))[1]) == 40


def test_a_commit_landing_while_maintenance_runs_keeps_its_files_even_with_no_grace(tmp_path: Path) -> None:
    """Maintenance loaded the table, then another run committed (a new export): the orphan sweep
    reads the table as the catalog has it now, so the new snapshot's data and metadata files stay
    and the table reads back whole."""
    from ddb_assets.lake.maintenance import remove_orphan_files

    root = tmp_path / "lake" / "reviews"
    convert_export(doctor.make_export(tmp_path / "export0", items=100, files=2, seed=1), root,
                   ConvertOptions(workers=1, partition_by="year"))
    catalog = open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"]).resolve(
        tmp_path / "lake"))
    loaded_before = load_table(catalog, "ddb_lake", "reviews")  # what maintenance read at its start
    convert_export(doctor.make_export(tmp_path / "export1", items=150, files=2, seed=2), root,
                   ConvertOptions(workers=1, partition_by="year"))  # lands meanwhile

    removed, _ = remove_orphan_files(loaded_before, timedelta(0))

    now = load_table(catalog, "ddb_lake", "reviews")
    assert now.metadata_location not in removed and Path(now.metadata_location).exists()
    assert now.scan().to_arrow().num_rows == 150
    assert all(Path(task.file.file_path).exists() for task in now.scan().plan_files())
    assert removed == []  # the first export's files are the older snapshot's: kept until it expires


def test_a_compaction_that_loses_the_commit_race_says_so_and_leaves_no_file(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ddb_assets.lake import maintenance
    from ddb_assets.lake.commit import CommitConflict

    root = tmp_path / "lake" / "reviews"
    convert_export(doctor.make_export(tmp_path / "export0", items=300, files=3, seed=3), root,
                   ConvertOptions(workers=2, partition_by="year", small_partition_bytes=0))
    catalog = open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"]).resolve(
        tmp_path / "lake"))
    table = load_table(catalog, "ddb_lake", "reviews")
    files_before = {str(p) for p in (root / "data").rglob("*.parquet")}
    snapshot_before = table.current_snapshot().snapshot_id

    def another_writer_first() -> Any:  # as the compaction's commit begins, another run lands first
        def on_event(kind: str, info: dict) -> None:
            if kind == "committing":
                convert_export(doctor.make_export(tmp_path / "export1", items=300, files=3, seed=4), root,
                               ConvertOptions(workers=1, partition_by="year"))
        return on_event

    with pytest.raises(CommitConflict, match=r"^table reviews: another writer committed to it while maintenance "
                                             r"compacted it \(.*\); nothing was committed and the compacted files "
                                             r"were removed: run maintenance again$"):
        maintenance.compact_small_files(table, 32 << 20, None, on_event=another_writer_first())

    now = load_table(catalog, "ddb_lake", "reviews")
    assert now.current_snapshot().snapshot_id != snapshot_before  # the other run's commit stands
    assert not [p for p in (root / "data").rglob("*.parquet") if "compact" in p.name]
    assert {task.file.file_path for task in now.scan().plan_files()} <= {str(p) for p in (root / "data").rglob("*.parquet")}
    assert files_before <= {str(p) for p in (root / "data").rglob("*.parquet")}  # nothing of the table removed


@pytest.mark.parametrize("command", [("history", "reviews"), ("query", "SELECT count(*) FROM reviews"),
                                     ("maintain", "reviews", "--dry-run")], ids=lambda c: c[0])
def test_a_missing_current_metadata_file_is_one_line_naming_it(tmp_path: Path, command: tuple[str, ...]) -> None:
    lake = tmp_path / "lake"
    folder = doctor.make_export(tmp_path / "export", items=50)
    assert run_cli("convert", str(folder), str(lake / "reviews")).returncode == 0
    catalog = open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"]).resolve(lake))
    current = Path(load_table(catalog, "ddb_lake", "reviews").metadata_location)
    current.unlink()

    result = run_cli(*command, "--lake", str(lake))

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and \
        "table ddb_lake.reviews: the metadata file the catalog points to is missing (" in lines[0]
    assert str(current) in lines[0] and "previous_metadata_location" in lines[0]


def test_maintain_on_s3_removes_empty_folder_markers_and_keeps_the_table(aws_env: dict[str, str], s3: Any,
                                                                         tmp_path: Path) -> None:
    """Folder markers pyarrow leaves on S3 for a folder it emptied (a killed run's orphans removed)
    go with the sweep; folders holding the table's files stay whole."""
    from ddb_assets.exports.storage import S3Options
    from ddb_assets.lake.maintenance import MaintenanceOptions, maintain

    lake = unique("lake")
    s3.create_bucket(Bucket=lake)
    folder = doctor.make_export(tmp_path / "export", items=60, files=1, seed=5)
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")
    table = convert_export(folder, f"s3://{lake}/reviews", ConvertOptions(workers=1, catalog=catalog,
                                                                           partition_by="year")).commit.table
    s3.put_object(Bucket=lake, Key="reviews/data/year=1901/20260101T000000-0123456789ab-00000.parquet", Body=b"PAR1")
    s3.put_object(Bucket=lake, Key="reviews/data/year=1902/", Body=b"")  # a marker left by an earlier clean-up
    held = next(iter(table.scan().plan_files())).file.file_path.split(f"s3://{lake}/", 1)[1]
    s3.put_object(Bucket=lake, Key=held.rsplit("/", 1)[0] + "/", Body=b"")  # beside the table's files
    time.sleep(1.1)  # S3 times objects to the second: the next commit's metadata file comes after them
    table = convert_export(doctor.make_export(tmp_path / "export2", items=60, files=1, seed=5), f"s3://{lake}/reviews",
                           ConvertOptions(workers=1, catalog=catalog, partition_by="year")).commit.table

    maintain(table, MaintenanceOptions(grace=timedelta(0), compact=False),
             S3Options(endpoint_url=aws_env["AWS_ENDPOINT_URL"], region="us-east-1"))

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=lake, Prefix="reviews/data/").get("Contents", [])]
    assert [k for k in keys if k.endswith("/")] == [held.rsplit("/", 1)[0] + "/"]  # no marker of an empty folder
    assert not [k for k in keys if "year=1901" in k or "year=1902" in k]
    live = {task.file.file_path for task in table.scan().plan_files()}
    assert live <= {f"s3://{lake}/{k}" for k in keys} and table.scan().to_arrow().num_rows == 60


def test_files_removed_before_the_commit_fail_it_and_nothing_is_committed(tmp_path: Path) -> None:
    """A written file deleted before the commit (a maintenance run with too short a grace): the
    conversion commits nothing, says which file and why, and leaves none of its files."""
    from ddb_assets.lake.commit import FilesRemoved

    root = tmp_path / "lake" / "reviews"
    convert_export(doctor.make_export(tmp_path / "export0", items=80, seed=1), root,
                   ConvertOptions(workers=1, partition_by="year"))
    catalog = open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"]).resolve(
        tmp_path / "lake"))
    before = load_table(catalog, "ddb_lake", "reviews").current_snapshot().snapshot_id
    files_before = {str(p) for p in (root / "data").rglob("*.parquet")}
    gone: list[Path] = []

    def sweep_as_it_commits(kind: str, info: dict) -> None:
        if kind == "committing":
            new = sorted(p for p in (root / "data").rglob("*.parquet") if str(p) not in files_before)
            gone.append(new[0])
            new[0].unlink()

    with pytest.raises(FilesRemoved) as raised:
        convert_export(doctor.make_export(tmp_path / "export1", items=90, seed=2), root,
                       ConvertOptions(workers=1, partition_by="year"), progress=sweep_as_it_commits)
    assert str(raised.value).startswith("table reviews: 1 of the ")
    assert f"files this run wrote was removed before its commit (first: {gone[0]})" in str(raised.value)
    assert str(raised.value).endswith("Nothing was committed: run it again")
    table = load_table(catalog, "ddb_lake", "reviews")
    assert table.current_snapshot().snapshot_id == before and table.scan().to_arrow().num_rows == 80
    assert {str(p) for p in (root / "data").rglob("*.parquet")} == files_before  # the run's other files removed


def test_the_sweep_keeps_files_written_since_the_current_metadata_file(tmp_path: Path) -> None:
    """A commit in flight wrote its data files and writes its manifests before the catalog points
    at them: unreferenced files newer than the current metadata file stay, even with no grace;
    older ones (a run killed before the table's last commit) go."""
    import os

    from ddb_assets.lake.maintenance import remove_orphan_files

    root = tmp_path / "lake" / "reviews"
    convert_export(doctor.make_export(tmp_path / "export", items=50, seed=1), root, ConvertOptions(workers=1))
    catalog = open_catalog(CatalogConfig(), __import__("ddb_assets.exports.storage", fromlist=["resolve"]).resolve(
        tmp_path / "lake"))
    table = load_table(catalog, "ddb_lake", "reviews")
    current = Path(table.metadata_location)
    in_flight = root / "metadata" / "0f0e0d0c-in-flight-m0.avro"
    in_flight.write_bytes(b"Obj\x01")
    os.utime(in_flight, (current.stat().st_mtime + 5, current.stat().st_mtime + 5))
    left_over = root / "metadata" / "0a0b0c0d-left-over-m0.avro"
    left_over.write_bytes(b"Obj\x01")
    os.utime(left_over, (current.stat().st_mtime - 60, current.stat().st_mtime - 60))
    fresh_data = root / "data" / "20261201T000000-0123456789ab-00000.parquet"  # a run about to commit
    fresh_data.write_bytes(b"PAR1")
    os.utime(fresh_data, (current.stat().st_mtime + 5, current.stat().st_mtime + 5))
    killed = root / "data" / "20261130T000000-0123456789ab-00000.parquet"  # a run killed before the last commit
    killed.write_bytes(b"PAR1")
    os.utime(killed, (current.stat().st_mtime - 60, current.stat().st_mtime - 60))

    removed, _ = remove_orphan_files(table, timedelta(0))

    assert sorted(removed) == sorted([str(left_over), str(killed)])
    assert in_flight.exists() and fresh_data.exists() and not left_over.exists() and not killed.exists()
    assert table.scan().to_arrow().num_rows == 50
