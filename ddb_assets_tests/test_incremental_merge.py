"""Incremental exports merged into the lake table: a full export, then windows of random puts,
updates, deletes and partition moves, each exported incrementally and merged, must equal a fresh
full export at the last window's end, value for value (both views, both formats)."""

from __future__ import annotations

import math
import re
import random
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from ddb_assets.lake.catalog import CatalogConfig
from ddb_assets.lake.commit import StaleExport
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.merge import ChainError
from ddb_assets.lake.reconcile import reconcile
from ddb_assets.local import emulator
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import make_table, unique, wait_done
from ddb_assets_tests.lake_reader import read_rows, rebuild_items

WINDOW = 15 * 60


@pytest.fixture
def clock(world: LocalWorld) -> Iterator[WorldClock]:
    world.clock.set(math.ceil(world.clock.now()) + 1, frozen=True)
    emulator.settings["export_delay_seconds"] = 0.0
    try:
        yield world.clock
    finally:
        world.clock.reset()
        emulator.settings["export_delay_seconds"] = 0.2


class Chain:
    """A table in the local world, a lake table fed from its exports, and the writes in between."""

    def __init__(self, world: LocalWorld, clock: WorldClock, tmp: Path, export_format: str, view: str):
        self.world, self.clock, self.tmp = world, clock, tmp
        self.ddb, s3 = world.client("dynamodb"), world.client("s3")
        self.name, self.arn = make_table(self.ddb)
        self.bucket = unique("chain")
        s3.create_bucket(Bucket=self.bucket)
        self.export_format, self.view = export_format, view
        self.lake = tmp / "lake"
        self.mark = 0.0

    def put(self, pk: str, sk: int, **values: Any) -> None:
        item = {"pk": {"S": pk}, "sk": {"N": str(sk)}, **values}
        self.ddb.put_item(TableName=self.name, Item=item)

    def delete(self, pk: str, sk: int) -> None:
        self.ddb.delete_item(TableName=self.name, Key={"pk": {"S": pk}, "sk": {"N": str(sk)}})

    def _source(self, done: dict[str, Any]) -> str:
        return f"s3://{self.bucket}/{done['ExportManifest']}"

    def full(self, table: str = "t", at: float | None = None) -> Any:
        if at is None:
            self.clock.advance(1)
        moment = self.clock.now() if at is None else at
        started = self.ddb.export_table_to_point_in_time(
            TableArn=self.arn, S3Bucket=self.bucket, S3Prefix=f"full-{table}", ExportFormat=self.export_format,
            ExportTime=moment)["ExportDescription"]
        done = wait_done(self.ddb, started["ExportArn"])
        assert done["ExportStatus"] == "COMPLETED", done
        self.mark = moment
        return self.convert(self._source(done), table)

    def incremental(self, start: float, end: float, table: str = "t", **options: Any) -> Any:
        spec = {"ExportFromTime": start, "ExportToTime": end, "ExportViewType": self.view}
        started = self.ddb.export_table_to_point_in_time(
            TableArn=self.arn, S3Bucket=self.bucket, S3Prefix="incremental", ExportFormat=self.export_format,
            ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification=spec)["ExportDescription"]
        done = wait_done(self.ddb, started["ExportArn"])
        assert done["ExportStatus"] == "COMPLETED", done
        return self.convert(self._source(done), table, **options)

    def convert(self, source: str, table: str, **options: Any) -> Any:
        with self.world.environment():
            return convert_export(source, str(self.lake / table), ConvertOptions(
                workers=1, partition_by="year", catalog=CatalogConfig(), **options))

    def items(self, table: str) -> list[dict[str, Any]]:
        meta, rows = read_rows(str(self.lake / table))
        return sorted(rebuild_items(meta, rows), key=lambda item: (item["pk"], item["sk"]))


OPERATIONS = st.lists(st.tuples(st.sampled_from(["put", "update", "move", "delete", "insert-delete"]),
                                st.integers(0, 11), st.integers(0, 3)), min_size=1, max_size=25)


# Each example is several exports and conversions: few examples, and no shrinking (minutes per step).
@settings(deadline=None, max_examples=6, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(windows=st.lists(OPERATIONS, min_size=1, max_size=3), export_format=st.sampled_from(["DYNAMODB_JSON", "ION"]),
       view=st.sampled_from(["NEW_AND_OLD_IMAGES", "NEW_IMAGE"]), seed=st.integers(0, 2**16),
       merge_mode=st.sampled_from(["copy-on-write", "merge-on-read"]))
def test_full_plus_incremental_merges_equal_a_fresh_full_export(world: LocalWorld, clock: WorldClock,
                                                                tmp_path_factory: Any, windows: list, export_format: str,
                                                                view: str, seed: int, merge_mode: str) -> None:
    rng = random.Random(seed)
    chain = Chain(world, clock, tmp_path_factory.mktemp("chain"), export_format, view)
    for i in range(8):
        chain.put(f"k{i}", i % 3, year={"N": str(2015 + i % 3)}, v={"S": f"first {i}"}, qty={"N": str(i)})
    chain.full()
    for window in windows:
        start = chain.mark
        for operation, key, value in window:
            chain.clock.advance(rng.randint(1, 30))
            pk, sk = f"k{key}", key % 3
            if operation == "put":
                chain.put(pk, sk, year={"N": str(2015 + value)}, v={"S": f"put {value}"},
                          **({"extra": {"M": {"n": {"N": f"{value}.5"}}}} if value == 3 else {}))
            elif operation == "update":
                chain.ddb.update_item(TableName=chain.name, Key={"pk": {"S": pk}, "sk": {"N": str(sk)}},
                                      UpdateExpression="SET qty = :q, tags = :t",
                                      ExpressionAttributeValues={":q": {"N": f"{value}.25"}, ":t": {"SS": [f"t{value}"]}})
            elif operation == "move":  # the partition attribute changes
                chain.put(pk, sk, year={"N": str(2020 + value)}, v={"S": "moved"})
            elif operation == "delete":
                chain.delete(pk, sk)
            else:  # inserted and deleted inside the window: invisible
                chain.put(f"gone{key}", sk, year={"N": "2019"})
                chain.clock.advance(1)
                chain.delete(f"gone{key}", sk)
        end = start + WINDOW
        chain.clock.set(end + 1, frozen=True)
        result = chain.incremental(start, end, merge_mode=merge_mode)
        assert result.merge is not None and result.merge.commit is not None
        chain.mark = end
    check = chain.full("t_check", at=chain.mark)  # a fresh full export at the last window's end
    assert chain.items("t") == chain.items("t_check"), (export_format, view, merge_mode)
    assert check.commit.rows == len(chain.items("t"))
    # The product's reconciliation (DuckDB, canonical cells) agrees with the independent reader.
    reconciled = reconcile(result.commit.table, check.commit.table, ["pk", "sk"])
    assert reconciled.equal, reconciled.describe()


def test_gaps_overlaps_and_the_same_export_twice(world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"})
    chain.put("b", 1, year={"N": "2015"})
    chain.full()
    start = chain.mark
    clock.advance(60)
    chain.put("a", 1, year={"N": "2016"}, v={"S": "moved"})  # a partition move
    chain.delete("b", 1)
    clock.set(start + 3 * WINDOW + 5, frozen=True)

    with pytest.raises(ChainError, match="the changes from .* are missing"):  # a gap
        chain.incremental(start + WINDOW, start + 2 * WINDOW)
    first = chain.incremental(start, start + WINDOW)
    assert first.merge.deletes == 1 and first.merge.deletes_missing == 0 and first.merge.upserts == 1
    assert [(i["pk"], str(i["year"])) for i in chain.items("t")] == [("a", "2016")]
    snapshots = len(first.commit.table.snapshots())

    with pytest.raises(StaleExport, match="ends at the table.s high-water mark .*nothing in it is new"):  # the same window exported again
        chain.incremental(start, start + WINDOW)
    with pytest.raises(ChainError, match="the windows overlap"):
        chain.incremental(start + 60, start + WINDOW + 60)
    overlapping = chain.incremental(start + 60, start + WINDOW + 60, allow_overlap=True)
    assert overlapping.merge.commit is not None
    assert [(i["pk"], str(i["year"])) for i in chain.items("t")] == [("a", "2016")]
    assert len(overlapping.commit.table.snapshots()) == snapshots + 1


def test_applying_the_same_export_twice_changes_nothing(world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_IMAGE")
    chain.put("a", 1, year={"N": "2015"})
    chain.full()
    start = chain.mark
    clock.advance(30)
    chain.put("c", 2, year={"N": "2017"}, late={"BOOL": True})  # an attribute that appears only now
    clock.set(start + WINDOW + 1, frozen=True)
    spec = {"ExportFromTime": start, "ExportToTime": start + WINDOW, "ExportViewType": "NEW_IMAGE"}
    done = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
        TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix="inc", ExportType="INCREMENTAL_EXPORT",
        IncrementalExportSpecification=spec)["ExportDescription"]["ExportArn"])
    first = chain.convert(chain._source(done), "t")
    assert [c.name for c in first.plan.added] == ["late"]
    second = chain.convert(chain._source(done), "t")
    # Known from the table before the export is read: nothing read, nothing committed.
    assert second.unchanged and second.merge is None and second.commit.snapshot_id == first.commit.snapshot_id
    assert [(i["pk"], i.get("late")) for i in chain.items("t")] == [("a", None), ("c", True)]


def test_an_incremental_export_needs_a_table(world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_IMAGE")
    chain.put("a", 1, year={"N": "2015"})
    start = clock.now()
    clock.set(start + WINDOW + 1, frozen=True)
    with pytest.raises(ChainError, match="convert the full export into it first"):
        chain.incremental(start, start + WINDOW, table="nothing_yet")
    assert not (tmp_path / "lake" / "nothing_yet" / "data").exists()


def test_deletes_of_keys_the_table_never_held_are_counted_not_errors(world: LocalWorld, clock: WorldClock,
                                                                      tmp_path: Path) -> None:
    """A window the table's state does not explain (written here directly, in the exact AWS layout:
    the local world cannot delete what DynamoDB never held)."""
    from datetime import datetime, timezone

    from ddb_assets.local.export_writer import ExportRequest, FolderSink, IncrementalWindow, write_incremental_export
    from ddb_assets.local.history import Change

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"})
    chain.full()
    start, end = chain.mark, chain.mark + WINDOW
    at = lambda epoch: datetime.fromtimestamp(epoch, timezone.utc)  # noqa: E731
    request = ExportRequest(export_arn=f"{chain.arn}/export/{int(end * 1000):014d}-0000abcd", table_arn=chain.arn,
                            table_id="x", bucket="b", prefix="inc", output_format="DYNAMODB_JSON",
                            start_time=at(end + 1), export_time=at(end), key_attributes=("pk", "sk"),
                            incremental=IncrementalWindow(at(start), at(end)))
    a_key, never_key = {"pk": {"S": "a"}, "sk": {"N": "1"}}, {"pk": {"S": "never"}, "sk": {"N": "1"}}
    changes = [Change("a", {**a_key, "year": {"N": "2015"}}, None, start + 5),
               Change("never", {**never_key, "year": {"N": "2015"}}, None, start + 6)]
    write_incremental_export(request, changes, FolderSink(tmp_path / "bucket"))
    result = chain.convert(str(tmp_path / "bucket" / request.folder), "t")
    assert result.merge.deletes == 2 and result.merge.deletes_missing == 1
    assert chain.items("t") == []


def test_the_cli_exports_a_window_and_merges_it(world: LocalWorld, clock: WorldClock, tmp_path: Path,
                                                aws_env: dict[str, str]) -> None:
    from datetime import datetime, timezone

    from ddb_assets_tests.cli_helpers import run_cli

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"})
    clock.advance(5)
    full = run_cli("export", chain.name, "--bucket", chain.bucket, "--prefix", "cli", env=aws_env)
    assert full.returncode == 0, full.stderr
    manifest = full.stdout.split("manifest ")[-1].strip()
    mark = clock.now()
    assert run_cli("convert", manifest, str(tmp_path / "lake" / "t"), "--partition-by", "year",
                   env=aws_env).returncode == 0
    history = run_cli("history", "t", "--lake", str(tmp_path / "lake"), "--format", "json")
    start = __import__("json").loads(history.stdout)[-1]["high_water_mark"]
    clock.advance(30)
    chain.put("b", 2, year={"N": "2016"})
    clock.set(mark + WINDOW + 60, frozen=True)
    end = datetime.fromtimestamp(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() + WINDOW,
                                 timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    window = run_cli("export", chain.name, "--bucket", chain.bucket, "--prefix", "cli-inc", "--incremental",
                     "--from", start.replace("Z", "").split(".")[0], "--to", end, env=aws_env)
    assert window.returncode == 0, window.stderr
    merged = run_cli("convert", window.stdout.split("manifest ")[-1].strip(), str(tmp_path / "lake" / "t"),
                     env=aws_env)
    assert merged.returncode == 0, merged.stderr
    assert "1 upsert, 0 deletes" in merged.stdout and "high-water mark" in merged.stdout
    assert [(i["pk"], str(i["year"])) for i in chain.items("t")] == [("a", "2015"), ("b", "2016")]
    refused = run_cli("export", chain.name, "--bucket", chain.bucket, "--incremental", "--from", end, env=aws_env)
    assert refused.returncode == 2 and "error: --incremental needs --from and --to" in refused.stderr

    # A window updating a: the merge's progress lines, the key scan and the rewrite, one file each.
    clock.advance(30)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "second"})
    later = datetime.fromisoformat(end).replace(tzinfo=timezone.utc).timestamp() + WINDOW
    clock.set(later + 60, frozen=True)
    window = run_cli("export", chain.name, "--bucket", chain.bucket, "--prefix", "cli-inc2", "--incremental",
                     "--from", end, "--to", datetime.fromtimestamp(later, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                     env=aws_env)
    assert window.returncode == 0, window.stderr
    merged = run_cli("convert", window.stdout.split("manifest ")[-1].strip(), str(tmp_path / "lake" / "t"),
                     env=aws_env)
    assert merged.returncode == 0, merged.stderr
    [scan] = [line for line in merged.stderr.splitlines() if line.startswith("find touched rows")]
    [rewrite] = [line for line in merged.stderr.splitlines() if line.startswith("rewrite files")]
    assert " 1/1 files read, touched keys in 1 file " in scan and " 1/1 files" in rewrite, merged.stderr
    assert [(i["pk"], i.get("v")) for i in chain.items("t")] == [("a", "second"), ("b", None)]

    # A window updating b, merged on read: the new row's data file and the old row's position-delete
    # file, each named as what it is (the delete file holds no row).
    clock.advance(30)
    chain.put("b", 2, year={"N": "2016"}, v={"S": "second"})
    last = later + WINDOW
    clock.set(last + 60, frozen=True)
    window = run_cli("export", chain.name, "--bucket", chain.bucket, "--prefix", "cli-inc3", "--incremental",
                     "--from", datetime.fromtimestamp(later, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                     "--to", datetime.fromtimestamp(last, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), env=aws_env)
    assert window.returncode == 0, window.stderr
    merged = run_cli("convert", window.stdout.split("manifest ")[-1].strip(), str(tmp_path / "lake" / "t"),
                     "--merge-mode", "merge-on-read", env=aws_env)
    assert merged.returncode == 0, merged.stderr
    [write] = [line for line in merged.stderr.splitlines() if line.startswith("write parquet")]
    assert " 1/1 1 row in 1 data file, 1 position-delete file " in write, merged.stderr
    assert "1 position-delete file written (merge-on-read)" in merged.stdout
    assert re.search(r"^files +2 added \(1 data file, 1 position-delete file\), 0 replaced ", merged.stdout, re.M), \
        merged.stdout
    assert [(i["pk"], i.get("v")) for i in chain.items("t")] == [("a", "second"), ("b", "second")]


def _same_rows_everywhere(table: Any) -> list[dict[str, Any]]:
    """The table's rows as pyiceberg reads them; asserting our DuckDB views and DuckDB's own
    iceberg extension (test_independent_readers) read the same rows."""
    from ddb_assets.query.duckdb_engine import DuckDBEngine
    from ddb_assets_tests.readers import duckdb_iceberg_scan
    from ddb_assets_tests.test_independent_readers import _compare, _key

    scanned = table.scan().to_arrow()
    engine = DuckDBEngine()
    try:
        engine.register_table("t", table)
        viewed = engine.query("SELECT * FROM t").table
    finally:
        engine.close()
    assert viewed.column_names == scanned.column_names
    plain = lambda rows: sorted(_key([duckdb_iceberg_scan.plain(v) for v in row.values()])  # noqa: E731
                                for row in rows.to_pylist())
    assert plain(viewed) == plain(scanned)
    _compare({"t": table})
    return scanned.to_pylist()


def test_merge_on_read_gives_the_rows_copy_on_write_gives(world: LocalWorld, clock: WorldClock,
                                                          tmp_path: Path) -> None:
    """The same exports merged both ways: equal tables (and equal to a fresh full export), read the
    same by pyiceberg, our DuckDB views and DuckDB's iceberg extension; the merge-on-read table
    holds position-delete files and no rewritten data file until compaction folds them."""
    from ddb_assets.lake.maintenance import compact_small_files
    from ddb_assets.lake.tables import describe, partition_rows

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    for i in range(8):
        # Attributes named like the columns DuckDB adds to read position deletes: no clash.
        chain.put(f"k{i}", i, year={"N": str(2015 + i % 2)}, v={"S": f"first {i}"}, filename={"S": f"f{i}"},
                  file_row_number={"N": str(-i)})
    chain.clock.advance(1)
    moment = chain.clock.now()
    done = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
        TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix="full", ExportTime=moment)["ExportDescription"]["ExportArn"])
    for table in ("cow", "mor"):
        chain.convert(chain._source(done), table)
    windows = [
        # a key updated in both windows; a delete; a partition move; an insert
        lambda: (chain.put("k1", 1, year={"N": "2015"}, v={"S": "second"}), chain.delete("k2", 2),
                 chain.put("k3", 3, year={"N": "2019"}, v={"S": "moved"}), chain.put("new", 9, year={"N": "2016"})),
        # the same key again (now in the first window's data file); the moved key deleted; k2 back
        lambda: (chain.put("k1", 1, year={"N": "2015"}, v={"S": "third"}), chain.delete("k3", 3),
                 chain.put("k2", 2, year={"N": "2016"}, v={"S": "back"})),
    ]
    start = moment
    for window in windows:
        chain.clock.advance(30)
        window()
        chain.clock.set(start + WINDOW + 1, frozen=True)
        spec = {"ExportFromTime": start, "ExportToTime": start + WINDOW, "ExportViewType": "NEW_AND_OLD_IMAGES"}
        done = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
            TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix=f"inc{start}", ExportType="INCREMENTAL_EXPORT",
            IncrementalExportSpecification=spec)["ExportDescription"]["ExportArn"])
        cow = chain.convert(chain._source(done), "cow")
        mor = chain.convert(chain._source(done), "mor", merge_mode="merge-on-read", history=True)
        assert mor.history_error is None
        assert mor.history.appended == [(mor.export.export_id, cow.merge.upserts + cow.merge.deletes)]
        assert cow.merge.merge_mode == "copy-on-write" and cow.merge.files_rewritten > 0
        assert mor.merge.merge_mode == "merge-on-read" and mor.merge.files_rewritten == 0
        assert mor.merge.delete_files > 0 and (mor.merge.upserts, mor.merge.deletes) == (cow.merge.upserts,
                                                                                         cow.merge.deletes)
        assert mor.merge.deletes_missing == cow.merge.deletes_missing == 0
        assert mor.commit.rows == cow.commit.rows
        # An applied export again: nothing happens (the mode is remembered by the table).
        again = chain.convert(chain._source(done), "mor")
        assert again.unchanged and again.commit.snapshot_id == mor.commit.snapshot_id
        start += WINDOW
    table = mor.commit.table
    assert table.properties["write.merge.mode"] == "merge-on-read"
    summary = table.current_snapshot().summary
    assert summary.operation.value == "overwrite" and int(summary["total-position-deletes"]) > 0
    assert chain.items("mor") == chain.items("cow")
    assert partition_rows(table) == partition_rows(cow.commit.table) == {"2015": 4, "2016": 4}
    assert describe(table, "default")["rows"] == 8
    assert [(i["pk"], i.get("v")) for i in chain.items("mor")] == [
        ("k0", "first 0"), ("k1", "third"), ("k2", "back"), ("k4", "first 4"), ("k5", "first 5"),
        ("k6", "first 6"), ("k7", "first 7"), ("new", None)]
    check = chain.full("check", at=start)
    for merged in (cow.commit.table, table):
        reconciled = reconcile(merged, check.commit.table, ["pk", "sk"])
        assert reconciled.equal, reconciled.describe()
    before = sorted(_same_rows_everywhere(table), key=lambda r: (r["pk"], r["sk"]))
    assert len(before) == 8

    # `history` counts delete files with data files, as the convert's summary does.
    from ddb_assets.lake.tables import history

    merge_entry = history(table)[-1]
    assert merge_entry["files_added"] == int(summary["added-data-files"]) + mor.merge.delete_files

    delete_files_before = int(table.current_snapshot().summary["total-delete-files"])
    folded: set[str] = set()
    compacted, snapshot_id = compact_small_files(table, 32 << 20, folded=folded)
    table.refresh()
    assert snapshot_id == table.current_snapshot().snapshot_id and compacted
    summary = table.current_snapshot().summary
    assert len(folded) == delete_files_before == int(summary["removed-delete-files"])  # all applied, all dropped
    assert int(summary["total-delete-files"]) == 0 and int(summary["total-position-deletes"]) == 0
    assert history(table)[-1]["files_removed"] == int(summary["deleted-data-files"]) + int(summary["removed-delete-files"])
    assert int(summary["removed-delete-files"]) > 0
    assert all(not task.delete_files for task in table.scan().plan_files())
    assert sorted(_same_rows_everywhere(table), key=lambda r: (r["pk"], r["sk"])) == before
    assert reconcile(table, check.commit.table, ["pk", "sk"]).equal


def test_a_full_export_replaces_a_merge_on_read_table_delete_files_included(world: LocalWorld, clock: WorldClock,
                                                                             tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_IMAGE")
    chain.put("a", 1, year={"N": "2015"})
    chain.put("b", 2, year={"N": "2015"})
    chain.full()
    start = chain.mark
    clock.advance(30)
    chain.delete("b", 2)
    clock.set(start + WINDOW + 1, frozen=True)
    merged = chain.incremental(start, start + WINDOW, merge_mode="merge-on-read")
    assert merged.merge.delete_files == 1 and merged.commit.rows == 1
    assert int(merged.commit.table.current_snapshot().summary["total-delete-files"]) == 1
    chain.put("c", 3, year={"N": "2016"})
    rebuilt = chain.full()  # a newer full export replaces every file, delete files too
    summary = rebuilt.commit.table.current_snapshot().summary
    assert int(summary["total-delete-files"]) == 0 and rebuilt.commit.rows == 2
    assert [i["pk"] for i in chain.items("t")] == ["a", "c"]


def test_copy_on_write_after_merge_on_read_leaves_no_delete_file_behind(world: LocalWorld, clock: WorldClock,
                                                                        tmp_path: Path) -> None:
    """A table merged on read, then copy-on-write: the rewritten file leaves out the rows deleted
    before, and the delete file naming it goes with it."""
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_IMAGE")
    for pk in ("a", "b", "c"):
        chain.put(pk, 1, year={"N": "2015"}, v={"S": "first"})
    chain.full()
    start = chain.mark
    clock.advance(30)
    chain.delete("b", 1)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "second"})
    clock.set(start + WINDOW + 1, frozen=True)
    first = chain.incremental(start, start + WINDOW, merge_mode="merge-on-read")
    assert first.merge.delete_files == 1
    clock.advance(30)
    chain.put("c", 1, year={"N": "2015"}, v={"S": "second"})
    clock.set(start + 2 * WINDOW + 1, frozen=True)
    second = chain.incremental(start + WINDOW, start + 2 * WINDOW, merge_mode="copy-on-write")
    assert second.merge.files_rewritten == 1
    table = second.commit.table
    summary = table.current_snapshot().summary
    assert int(summary["total-delete-files"]) == 0 and int(summary["total-position-deletes"]) == 0
    assert second.commit.rows == 2 and table.properties["write.merge.mode"] == "copy-on-write"
    assert [(i["pk"], i["v"]) for i in chain.items("t")] == [("a", "second"), ("c", "second")]
    assert len(_same_rows_everywhere(table)) == 2


def test_merge_on_read_on_s3_read_by_duckdb_and_compacted(world: LocalWorld, clock: WorldClock,
                                                          tmp_path: Path) -> None:
    from ddb_assets.lake.maintenance import compact_small_files
    from ddb_assets.query.duckdb_engine import DuckDBEngine

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_IMAGE")
    lake = unique("lake")
    world.client("s3").create_bucket(Bucket=lake)
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")

    def convert(source: str, table: str, **options: Any) -> Any:
        with world.environment():
            return convert_export(source, f"s3://{lake}/{table}", ConvertOptions(
                workers=1, partition_by="year", catalog=catalog, **options))

    chain.convert = convert  # type: ignore[method-assign]
    for pk in ("a", "b", "c"):
        chain.put(pk, 1, year={"N": "2015"})
    chain.full()
    start = chain.mark
    clock.advance(30)
    chain.delete("b", 1)
    chain.put("d", 1, year={"N": "2016"})
    clock.set(start + WINDOW + 1, frozen=True)
    merged = chain.incremental(start, start + WINDOW, merge_mode="merge-on-read")
    table = merged.commit.table
    assert merged.merge.delete_files == 1
    assert all(task.file.file_path.startswith(f"s3://{lake}/t/data/") for task in table.scan().plan_files())
    with world.environment():
        engine = DuckDBEngine()
        try:
            engine.register_table("t", table)
            assert engine.query("SELECT pk FROM t ORDER BY pk").table.column("pk").to_pylist() == ["a", "c", "d"]
        finally:
            engine.close()
        compact_small_files(table, 32 << 20)
    table.refresh()
    assert int(table.current_snapshot().summary["total-delete-files"]) == 0
    assert sorted(table.scan().to_arrow().column("pk").to_pylist()) == ["a", "c", "d"]


def test_an_incremental_export_with_a_dictionary_map_is_read_by_arrow_rs(tmp_path: Path) -> None:
    """A map the table holds as JSON text (a dictionary: ``votes`` by day, hundreds of keys over the
    table) shows a window's small pieces only a few keys each, too few to be detected: the merge
    carries it as text all the same (the table's column), so every piece after the first (which
    teaches the schema) is read by arrow-rs, and the merged table equals a fresh full export's."""
    from datetime import datetime, timedelta, timezone

    from ddb_assets.local.export_writer import (ExportRequest, FolderSink, IncrementalWindow, write_export,
                                                write_incremental_export)
    from ddb_assets.local.history import Change

    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    t1 = t0 + timedelta(hours=1)
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/votes"

    def request(name: str, at: datetime, window: Any = None, files: int = 2) -> ExportRequest:
        return ExportRequest(export_arn=f"{arn}/export/{int(at.timestamp() * 1000):014d}-{name}", table_arn=arn,
                             table_id="t", bucket="b", prefix=name, output_format="DYNAMODB_JSON", start_time=at,
                             export_time=at, key_attributes=("pk", "sk"), data_files=files, incremental=window)

    def item(n: int, salt: int = 0) -> dict[str, Any]:
        days = random.Random(n * 7 + salt).sample(range(2000), 3)
        return {"pk": {"S": f"p{n}"}, "sk": {"N": str(n % 5)}, "year": {"N": str(2015 + n % 4)},
                "body": {"S": f"review {n}, salt {salt}"}, "votes": {"M": {f"d{d}": {"N": str(d % 9)} for d in days}}}

    before = {n: item(n) for n in range(300)}
    after = dict(before)
    changes = []
    for n in range(0, 300, 7):  # updates (new vote days), deletes and inserts, a few per piece
        if n % 3 == 0:
            del after[n]
            changes.append(Change(f"p{n}", before[n], None, t0.timestamp() + 60 + n))
        else:
            after[n] = item(n, salt=1)
            changes.append(Change(f"p{n}", before[n], after[n], t0.timestamp() + 60 + n))
    for n in range(300, 310):
        after[n] = item(n)
        changes.append(Change(f"p{n}", None, after[n], t0.timestamp() + 60 + n))
    bucket = tmp_path / "bucket"
    full, fresh = request("full", t0), request("fresh", t1)
    incremental = request("window", t1, IncrementalWindow(t0, t1), files=4)
    write_export(full, before.values(), FolderSink(bucket), end_time=lambda: t0 + timedelta(minutes=5))
    write_export(fresh, after.values(), FolderSink(bucket), end_time=lambda: t1 + timedelta(minutes=5))
    write_incremental_export(incremental, changes, FolderSink(bucket), end_time=lambda: t1 + timedelta(minutes=5))
    options = ConvertOptions(workers=1, partition_by="year", catalog=CatalogConfig())
    lake = tmp_path / "lake"
    base = convert_export(str(bucket / full.folder), str(lake / "t"), options)
    assert [c.name for c in base.plan.columns if c.encoding == "json"] == ["votes"]

    merged = convert_export(str(bucket / incremental.folder), str(lake / "t"), options)
    pieces = len(merged.export.files)
    assert pieces == 4 and merged.readers.arrow_rs == pieces - 1 and merged.readers.pyarrow == 1
    assert merged.merge is not None and merged.merge.deletes == 15
    check = convert_export(str(bucket / fresh.folder), str(lake / "t_check"), options)
    reconciled = reconcile(merged.commit.table, check.commit.table, ["pk", "sk"])
    assert reconciled.equal, reconciled.describe()


def test_a_merge_over_many_files_reads_them_in_parallel_and_gives_the_fresh_export(
        world: LocalWorld, clock: WorldClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """60 data files (one per year), every one a candidate by its key bounds, 4 read at once and 5
    ahead: two windows touching a few files (updates, deletes, a partition move, an insert; the
    second window hits rows the first one's delete files hide) merge in both modes into tables
    equal to a fresh full export, and each merge reports its scan over every candidate. The
    copy-on-write rewrite reads its files 2 ahead (fewer than it rewrites)."""
    from ddb_assets.lake import merge, read_ahead

    monkeypatch.setattr(merge, "READ_THREADS", 4)
    monkeypatch.setattr(merge, "READ_AHEAD", 5)  # fewer than the files: the window refills as it goes
    monkeypatch.setattr(read_ahead, "READ_AHEAD_FILES", 2)
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    for i in range(180):
        chain.put(f"k{i:03d}", i, year={"N": str(1960 + i % 60)}, v={"S": f"first {i}"})
    clock.advance(1)
    moment = clock.now()
    done = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
        TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix="full", ExportTime=moment)["ExportDescription"]["ExportArn"])
    for table in ("cow", "mor"):
        assert len(chain.convert(chain._source(done), table).commit.table.scan().plan_files()) == 60

    def merge_window(start: float, table: str, mode: str) -> tuple[Any, list[dict[str, Any]]]:
        spec = {"ExportFromTime": start, "ExportToTime": start + WINDOW, "ExportViewType": "NEW_AND_OLD_IMAGES"}
        exported = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
            TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix=f"inc{start}-{table}", ExportType="INCREMENTAL_EXPORT",
            IncrementalExportSpecification=spec)["ExportDescription"]["ExportArn"])
        events: list[dict[str, Any]] = []
        with world.environment():
            result = convert_export(chain._source(exported), str(chain.lake / table), ConvertOptions(
                workers=1, partition_by="year", catalog=CatalogConfig(), merge_mode=mode),
                progress=lambda kind, info: events.append(info) if kind == "merge" else None)
        return result, events

    windows = [
        # k005, k065, k125 share the file of 1965; k010 moves from 1970 to 1999; k030 goes
        lambda: (chain.put("k005", 5, year={"N": "1965"}, v={"S": "second"}),
                 chain.put("k065", 65, year={"N": "1965"}, v={"S": "second"}), chain.delete("k125", 125),
                 chain.put("k010", 10, year={"N": "1999"}, v={"S": "moved"}), chain.delete("k030", 30),
                 chain.put("new", 500, year={"N": "1961"})),
        # the rows the first window replaced or deleted, touched again; an untouched file's row
        lambda: (chain.put("k005", 5, year={"N": "1965"}, v={"S": "third"}), chain.delete("k065", 65),
                 chain.put("k030", 30, year={"N": "1990"}, v={"S": "back"}), chain.delete("k044", 44)),
    ]
    start = moment
    for window in windows:
        clock.advance(30)
        window()
        clock.set(start + WINDOW + 1, frozen=True)
        cow, cow_events = merge_window(start, "cow", "copy-on-write")
        mor, mor_events = merge_window(start, "mor", "merge-on-read")
        for result, events in ((cow, cow_events), (mor, mor_events)):
            scans = [e for e in events if e["step"] == "scan"]
            # Each candidate read once; in the first window every file is one (each file's keys span
            # k0xx to k1xx); in the second the first's one-key upsert files (k010, "new") are pruned.
            assert scans[0]["done"] == 0 and scans[-1]["done"] == scans[-1]["total"]
            assert start > moment or scans[-1]["total"] == 60
            touched = int(result.commit.table.current_snapshot().summary[
                "ddb-assets.files-rewritten" if result is cow else "ddb-assets.files-with-new-deletes"])
            assert scans[-1]["affected"] == touched
        rewrites = [e for e in cow_events if e["step"] == "rewrite"]
        assert rewrites[-1]["done"] == rewrites[-1]["total"] == cow.merge.files_rewritten
        assert not [e for e in mor_events if e["step"] == "rewrite"] and mor.merge.files_rewritten == 0
        assert (mor.merge.upserts, mor.merge.deletes) == (cow.merge.upserts, cow.merge.deletes)
        assert mor.merge.deletes_missing == cow.merge.deletes_missing == 0
        start += WINDOW
    check = chain.full("check", at=start)
    assert check.commit.rows == 180 + 1 - 3  # "new" in; k125, k065, k044 out
    for merged in (cow, mor):
        reconciled = reconcile(merged.commit.table, check.commit.table, ["pk", "sk"])
        assert reconciled.equal, reconciled.describe()
    assert chain.items("cow") == chain.items("mor") == chain.items("check")


@pytest.mark.parametrize("step", ["scan", "rewrite"])
def test_a_merge_stopped_before_its_commit_leaves_no_file_and_no_snapshot(world: LocalWorld, clock: WorldClock,
                                                                          tmp_path: Path, step: str) -> None:
    """The merge's scan and rewrite commit nothing and may take long on a big table: Ctrl-C there
    stops the run (the command line holds it back only from the merge's ``committing`` event), and
    the run's files, upserts and rewritten ones alike, are removed."""
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    for sk in range(6):
        chain.put("k", sk, year={"N": str(2015 + sk % 2)}, v={"S": "x"})
    chain.full()
    start = chain.mark
    table_files = sorted(p for p in (chain.lake / "t" / "data").rglob("*") if p.is_file())
    clock.set(start + 10, frozen=True)
    chain.put("k", 1, year={"N": "2015"}, v={"S": "y"})
    chain.put("new", 0, year={"N": "2017"})
    clock.set(start + WINDOW + 1, frozen=True)
    spec = {"ExportFromTime": start, "ExportToTime": start + WINDOW, "ExportViewType": chain.view}
    done = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
        TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix="incremental", ExportType="INCREMENTAL_EXPORT",
        IncrementalExportSpecification=spec)["ExportDescription"]["ExportArn"])
    events: list[str] = []

    def progress(kind: str, info: dict[str, Any]) -> None:
        events.append(kind if kind != "merge" else f"merge {info['step']}")
        if kind == "merge" and info["step"] == step:
            raise KeyboardInterrupt  # as Ctrl-C raises it in the main thread

    before = chain.items("t")
    with chain.world.environment(), pytest.raises(KeyboardInterrupt):
        convert_export(chain._source(done), str(chain.lake / "t"), ConvertOptions(
            workers=1, partition_by="year", catalog=CatalogConfig()), progress=progress)
    assert "committing" not in events  # the merge had not reached its commit
    assert sorted(p for p in (chain.lake / "t" / "data").rglob("*") if p.is_file()) == table_files
    assert chain.items("t") == before
    # And the run can be retried: the same export merges, its commit announced after the scan.
    events.clear()
    with chain.world.environment():
        merged = convert_export(chain._source(done), str(chain.lake / "t"), ConvertOptions(
            workers=1, partition_by="year", catalog=CatalogConfig()), progress=lambda kind, info: events.append(kind))
    assert merged.merge.upserts == 2 and events.index("committing") > max(
        i for i, kind in enumerate(events) if kind == "merge")


def test_only_a_full_export_reports_vanished_attributes(world: LocalWorld, clock: WorldClock, tmp_path: Path,
                                                        aws_env: dict[str, str]) -> None:
    """An incremental export holds only the items that changed in its window (none in a quiet one):
    it says nothing about which attributes the table has, so `convert` names none as vanished; a
    full export lacking an attribute still does."""
    from ddb_assets_tests.cli_helpers import run_cli

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"}, note={"S": "n"})
    chain.put("b", 1, year={"N": "2016"}, v={"S": "b0"})
    chain.full()
    start = chain.mark

    def convert(prefix: str, **spec: Any) -> list[str]:
        done = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
            TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix=prefix, **spec)["ExportDescription"]["ExportArn"])
        converted = run_cli("convert", chain._source(done), str(chain.lake / "t"), env=aws_env)
        assert converted.returncode == 0, converted.stderr
        return converted.stdout.splitlines()

    def window(n: int) -> list[str]:
        return convert(f"window{n}", ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification={
            "ExportFromTime": start + n * WINDOW, "ExportToTime": start + (n + 1) * WINDOW,
            "ExportViewType": "NEW_AND_OLD_IMAGES"})

    def vanished(lines: list[str]) -> list[str]:
        return [line.split(None, 1)[1] for line in lines if line.startswith("vanished ")]

    clock.set(start + WINDOW + 1, frozen=True)
    quiet = window(0)
    assert any("0 upserts, 0 deletes" in line for line in quiet) and vanished(quiet) == []
    clock.set(start + WINDOW + 10, frozen=True)
    chain.put("c", 2, year={"N": "2017"})  # neither v nor note: the window's one item lacks them
    clock.set(start + 2 * WINDOW + 1, frozen=True)
    small = window(1)
    assert any("1 upsert, 0 deletes" in line for line in small) and vanished(small) == []

    chain.delete("a", 1)  # the only item with a note
    clock.advance(5)
    full = convert("full-again", ExportTime=clock.now())
    assert vanished(full) == ["note (kept as columns, null in this export's rows)"]
