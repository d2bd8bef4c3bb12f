"""Incremental exports through Dagster: the window asset, the completion sensor, validation, and the
lake table applying the exports in window order (a missing window blocks the later ones)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pytest

from ddb_assets.definitions import build_definitions
from ddb_assets.lake.commit import instant
from ddb_assets.defs.names import TableNames
from ddb_assets.local import emulator
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.pipeline import local_settings
from ddb_assets.local.tables import create_reviews_table
from ddb_assets.local.world import LocalWorld
from ddb_assets.settings import IncrementalSettings, TableSettings
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.lake_reader import read_rows

WINDOW = 15 * 60


@pytest.fixture
def clock(world: LocalWorld) -> Iterator[WorldClock]:
    boundary = (math.ceil(world.clock.now() / WINDOW) + 1) * WINDOW  # a window boundary just ahead
    world.clock.set(boundary, frozen=True)
    emulator.settings["export_delay_seconds"] = 0.0
    try:
        yield world.clock
    finally:
        world.clock.reset()
        emulator.settings["export_delay_seconds"] = 0.2


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Platform:
    def __init__(self, world: LocalWorld, clock: WorldClock, tmp: Path, instance: dg.DagsterInstance,
                 history: bool = False, allow_overlap: bool = False, merge_mode: str | None = None):
        self.world, self.clock, self.instance = world, clock, instance
        self.ddb = world.client("dynamodb")
        self.table, bucket = unique("reviews"), unique("exports")
        self.bucket = bucket
        create_reviews_table(self.ddb, self.table)
        world.client("s3").create_bucket(Bucket=bucket)
        self.start = clock.now() + WINDOW  # the next window boundary: the writes before it are older
        base = local_settings(world.endpoint, str(tmp / "lake"), table=self.table, bucket=bucket, convert_workers=1)
        table = TableSettings(table=self.table, export_bucket=bucket, export_prefix=f"exports/{self.table}",
                              incremental=IncrementalSettings(window="15m", start=_iso(self.start),
                                                              future_windows=16,  # the clock runs ahead
                                                              allow_overlap=allow_overlap,
                                                              merge_mode=merge_mode),
                              history=history)
        self.settings = base.model_copy(update={"tables": [table]})
        self.names = TableNames(self.settings, table)
        self.defs = build_definitions(self.settings)
        self.assets = {a.key: a for a in self.defs.assets if isinstance(a, dg.AssetsDefinition)}
        self.lake = tmp / "lake" / self.names.name
        self.validated: dict[str, dg.ExecuteInProcessResult] = {}  # export id -> its raw_export run
        self.doctor: tuple[bytes, bytes] | None = None  # (old, new): the newest export of the next tick, doctored

    def put(self, review: str, year: int, **values: Any) -> None:
        self.ddb.put_item(TableName=self.table, Item={"product_id": {"S": "p"}, "review_id": {"S": review},
                                                       "year": {"N": str(year)}, **values})

    def delete(self, review: str) -> None:
        self.ddb.delete_item(TableName=self.table, Key={"product_id": {"S": "p"}, "review_id": {"S": review}})

    def full_export(self) -> dg.ExecuteInProcessResult:
        """The full export at the first window's start, the clock set there: the chain begins there."""
        self.clock.set(self.start, frozen=True)
        return self.materialize([self.names.pitr_export_key], run_config={"ops": {
            "__".join(self.names.pitr_export_key.path): {"config": {"export_time": _iso(self.start)}}}})

    def materialize(self, keys: list[dg.AssetKey], **kwargs: Any) -> dg.ExecuteInProcessResult:
        return dg.materialize([self.assets[k] for k in keys], instance=self.instance, resources=self.defs.resources,
                              raise_on_error=False, **kwargs)

    def sensor_tick_and_validate(self) -> list[str]:
        sensor = self.defs.resolve_sensor_def(f"{self.names.name}_export_completion_sensor")
        with dg.build_sensor_context(instance_ref=self.instance.get_ref(), definitions=self.defs,
                                     resources=self.defs.resources) as context:
            tick = sensor.evaluate_tick(context)
        for request in tick.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        ids = [r.partition_key for r in tick.run_requests]
        doctored, self.doctor = self.doctor, None
        if doctored is not None:  # the newest export (ids are in start-time order)
            self._doctor_export(ids[-1], *doctored)
        for export_id in ids:
            if export_id in self.validated:
                continue  # validated at an earlier tick (this context keeps no cursor)
            self.validated[export_id] = self.materialize([self.names.raw_export_key], partition_key=export_id)
            assert self.validated[export_id].success == (doctored is None or export_id != ids[-1])
        return ids

    def _doctor_export(self, export_id: str, old: bytes, new: bytes) -> None:
        """``old`` replaced by ``new`` in the export's data files, its manifests' checksums kept
        right: only its content is bad."""
        import base64
        import gzip
        import hashlib
        import json

        s3 = self.world.client("s3")
        arn = self.ddb.describe_table(TableName=self.table)["Table"]["TableArn"]
        summary_key = self.ddb.describe_export(ExportArn=f"{arn}/export/{export_id}")["ExportDescription"]["ExportManifest"]
        folder = summary_key.rsplit("/", 1)[0]
        text = s3.get_object(Bucket=self.bucket, Key=f"{folder}/manifest-files.json")["Body"].read().decode()
        lines = [json.loads(line) for line in text.splitlines() if line]
        for entry in lines:
            data = gzip.decompress(s3.get_object(Bucket=self.bucket, Key=entry["dataFileS3Key"])["Body"].read())
            body = gzip.compress(data.replace(old, new))
            s3.put_object(Bucket=self.bucket, Key=entry["dataFileS3Key"], Body=body)
            entry["md5Checksum"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        files = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines).encode()
        s3.put_object(Bucket=self.bucket, Key=f"{folder}/manifest-files.json", Body=files)
        s3.put_object(Bucket=self.bucket, Key=f"{folder}/manifest-files.md5",
                      Body=base64.b64encode(hashlib.md5(files).digest()))

    def lake_table(self) -> dg.ExecuteInProcessResult:
        partitions = self.names.value_partitions.get_partition_keys(dynamic_partitions_store=self.instance)
        return self.materialize([self.assets[self.names.raw_export_key].key, self.names.parquet_key],
                                selection=[self.names.parquet_key],
                                tags={"dagster/asset_partition_range_start": partitions[0],
                                      "dagster/asset_partition_range_end": partitions[-1]})

    def rows(self) -> list[tuple[str, int, Any]]:
        _, rows = read_rows(str(self.lake))
        return sorted((r["review_id"], r["year"], r.get("note")) for r in rows)


def test_windows_are_exported_validated_and_merged_in_order(world: LocalWorld, clock: WorldClock,
                                                            tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        p = Platform(world, clock, tmp_path, instance)
        p.put("r1", 2015)
        p.put("r2", 2015)
        full = p.full_export()
        assert full.success
        assert p.sensor_tick_and_validate()
        assert p.lake_table().success
        assert p.rows() == [("r1", 2015, None), ("r2", 2015, None)]

        # Window 1: an update that moves a partition, a delete, an insert.
        clock.advance(60)
        p.put("r1", 2016, note={"S": "moved"})
        p.delete("r2")
        p.put("r3", 2017)
        # Window 2: another change. Window 3 stays empty.
        clock.set(p.start + WINDOW + 60, frozen=True)
        p.put("r3", 2017, note={"S": "later"})
        clock.set(p.start + 3 * WINDOW + 1, frozen=True)
        windows = p.names.settings.tables[0].incremental
        assert windows is not None
        keys = [datetime.fromtimestamp(p.start + i * WINDOW, timezone.utc).strftime("%Y-%m-%dT%H:%M") for i in range(3)]

        # Window 2 exported before window 1: the lake refuses to skip window 1, and says so.
        assert p.materialize([p.names.incremental_export_key], partition_key=keys[1]).success
        assert p.sensor_tick_and_validate()
        blocked = p.lake_table()
        assert not blocked.success
        [step] = [e for e in blocked.all_events if e.is_step_failure]
        failure = step.event_specific_data.error.message  # type: ignore[union-attr]
        assert "are missing" in failure and "could not be applied" in failure

        # Window 1 arrives: both are applied, in window order, one snapshot each.
        assert p.materialize([p.names.incremental_export_key], partition_key=keys[0]).success
        assert p.sensor_tick_and_validate()
        merged = p.lake_table()
        assert merged.success
        assert p.rows() == [("r1", 2016, "moved"), ("r3", 2017, "later")]
        [event] = merged.asset_materializations_for_node("__".join(p.names.parquet_key.path))[:1]
        assert len(event.metadata["exports_applied"].value) == 2
        # The mark is the end of the second window applied (windows 0 and 1).
        assert instant(event.metadata["high_water_mark"].value) == pytest.approx(p.start + 2 * WINDOW, abs=1e-3)

        # A window that has not closed yet: DynamoDB refuses its export, and the run says why.
        future = datetime.fromtimestamp(p.start + 4 * WINDOW, timezone.utc).strftime("%Y-%m-%dT%H:%M")
        early = p.materialize([p.names.incremental_export_key], partition_key=future)
        assert not early.success
        [failure] = [e for e in early.all_events if e.is_step_failure]
        message = failure.event_specific_data.error.message  # type: ignore[union-attr]
        assert "DynamoDB refused the export of the window" in message and "InvalidExportTimeException" in message

        # The checks of a table fed by windows: the mark's freshness, then reconciliation with a full
        # export at the mark (equal), then after a row is lost behind the pipeline's back (not equal).
        mark = p.start + 2 * WINDOW
        fresh = p.defs.resolve_job_def(f"{p.names.name}_freshness_job").execute_in_process(instance=instance)
        [evaluation] = fresh.get_asset_check_evaluations()
        assert evaluation.passed and evaluation.check_name == "high_water_mark_fresh"
        assert abs(evaluation.metadata["lag_seconds"].value - (time.time() - mark)) < 60
        reconcile_job = p.defs.resolve_job_def(f"{p.names.name}_reconcile_job")
        [equal] = reconcile_job.execute_in_process(instance=instance).get_asset_check_evaluations()
        assert equal.passed, equal.metadata["result"].value
        assert (equal.metadata["table_rows"].value, equal.metadata["full_export_rows"].value) == (2, 2)
        from pyiceberg.expressions import EqualTo

        from ddb_assets.aws.resources import LakeResource

        lake = p.defs.resources["lake"]
        assert isinstance(lake, LakeResource)
        lake.table(p.names.name).delete(EqualTo("review_id", "r3"))
        [differs] = reconcile_job.execute_in_process(instance=instance).get_asset_check_evaluations()
        assert not differs.passed
        assert (differs.metadata["missing"].value, differs.metadata["extra"].value,
                differs.metadata["different"].value) == (1, 0, 0)
        assert differs.metadata["examples"].value == [{"problem": "missing", "key": "product_id=p, review_id=r3"}]


def test_the_lake_table_keeps_the_change_history_of_its_windows(world: LocalWorld, clock: WorldClock,
                                                               tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        p = Platform(world, clock, tmp_path, instance, history=True, merge_mode="merge-on-read")
        p.put("r1", 2015)
        p.put("r2", 2015)
        assert p.full_export().success
        assert p.sensor_tick_and_validate()
        assert p.lake_table().success
        clock.advance(60)
        p.put("r1", 2016, note={"S": "moved"})
        moved = clock.now()
        clock.advance(1)
        p.delete("r2")
        clock.set(p.start + WINDOW + 1, frozen=True)
        key = datetime.fromtimestamp(p.start, timezone.utc).strftime("%Y-%m-%dT%H:%M")
        window = p.materialize([p.names.incremental_export_key], partition_key=key)
        assert window.success
        [started] = window.asset_materializations_for_node("__".join(p.names.incremental_export_key.path))
        export_id = started.metadata["export_id"].value
        assert export_id in p.sensor_tick_and_validate()
        merged = p.lake_table()
        assert merged.success
        [event] = merged.asset_materializations_for_node("__".join(p.names.parquet_key.path))[:1]
        assert event.metadata["history_appended"].value == [{"export_id": export_id, "changes": 2}]
        # Merge-on-read: r1 moved to 2016 (one data file there) and r1's and r2's rows of 2015 hidden by one
        # position-delete file; nothing rewritten.
        [merge] = event.metadata["merged"].value
        assert (merge["merge_mode"], merge["delete_files"], merge["files_rewritten"]) == ("merge-on-read", 1, 0)
        assert (event.metadata["delete_files_added"].value, event.metadata["files_added"].value) == (1, 2)
        assert p.rows() == [("r1", 2016, "moved")]
        lake = p.defs.resources["lake"]
        changes = lake.table(f"{p.names.name}_changes").scan().to_arrow().to_pylist()
        assert sorted((r["review_id"], r["operation"], r["old_year"], r["new_year"], r["new_note"], r["export_id"])
                      for r in changes) == [("r1", "MODIFY", 2015, 2016, "moved", export_id),
                                            ("r2", "REMOVE", 2015, None, None, export_id)]
        assert [r["write_time"] for r in changes if r["review_id"] == "r1"] == \
            [datetime.fromtimestamp(round(moved * 1e6) / 1e6, timezone.utc)]

        # A second window: the history holds a second small file. The maintenance job keeps both
        # tables: the table's position-delete files folded by compaction, the history's two files
        # compacted into one, every row of each kept.
        clock.set(p.start + WINDOW + 60, frozen=True)
        p.put("r3", 2017)
        clock.set(p.start + 2 * WINDOW + 1, frozen=True)
        second = datetime.fromtimestamp(p.start + WINDOW, timezone.utc).strftime("%Y-%m-%dT%H:%M")
        assert p.materialize([p.names.incremental_export_key], partition_key=second).success
        assert p.sensor_tick_and_validate()
        assert p.lake_table().success
        assert len(lake.table(f"{p.names.name}_changes").inspect.files()) == 2
        maintained = p.defs.resolve_job_def(p.names.maintenance_job).execute_in_process(instance=instance)
        assert maintained.success
        [observed] = [e.event_specific_data.asset_observation for e in maintained.all_events  # type: ignore[union-attr]
                      if e.event_type_value == "ASSET_OBSERVATION"]
        assert observed.metadata["maintenance/position_delete_files_folded"].value == 1
        assert [v["files_before"] for v in observed.metadata["maintenance/history/partitions_compacted"].value.values()] \
            == [2]
        assert len(lake.table(f"{p.names.name}_changes").inspect.files()) == 1
        assert len(lake.table(f"{p.names.name}_changes").scan().to_arrow()) == 3
        assert p.rows() == [("r1", 2016, "moved"), ("r3", 2017, None)]


def test_schema_drift_of_windows_reports_new_attributes_never_vanished_ones(world: LocalWorld, clock: WorldClock,
                                                                          tmp_path: Path) -> None:
    """A window holds only the items it changed (none in a quiet one): its schema_drift check and
    its merge name no vanished attribute, and an attribute it adds is new against the full export
    and the windows before it."""
    with dg.instance_for_test() as instance:
        p = Platform(world, clock, tmp_path, instance)
        p.put("r1", 2015, note={"S": "n"}, stars={"N": "5"})
        p.put("r2", 2015)
        assert p.full_export().success
        assert p.sensor_tick_and_validate()
        assert p.lake_table().success
        clock.advance(60)
        p.put("r3", 2016)  # window 0: one item, without note or stars; window 1: quiet
        clock.set(p.start + 2 * WINDOW + 60, frozen=True)
        p.put("r4", 2017, brand={"S": "new"})  # window 2: a new attribute
        clock.set(p.start + 3 * WINDOW + 1, frozen=True)
        drifts = []
        for i in range(3):
            key = datetime.fromtimestamp(p.start + i * WINDOW, timezone.utc).strftime("%Y-%m-%dT%H:%M")
            window = p.materialize([p.names.incremental_export_key], partition_key=key)
            [started] = window.asset_materializations_for_node("__".join(p.names.incremental_export_key.path))
            export_id = started.metadata["export_id"].value
            assert export_id in p.sensor_tick_and_validate()
            evaluations = p.validated[export_id].get_asset_check_evaluations()
            drift = {c.check_name: c for c in evaluations}["schema_drift"]
            drifts.append((drift.passed, drift.metadata["details"].value["new"],
                           drift.metadata["details"].value["vanished"]))
        assert drifts == [(True, [], []), (True, [], []), (False, ["brand"], [])]
        merged = p.lake_table()
        assert merged.success
        events = merged.asset_materializations_for_node("__".join(p.names.parquet_key.path))
        assert events and all(e.metadata["vanished_attributes"].value == [] for e in events)


def test_a_rebuild_converts_the_latest_full_export_and_merges_its_windows_again(world: LocalWorld, clock: WorldClock,
                                                                               tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        p = Platform(world, clock, tmp_path, instance)
        for review in ("r0", "r1", "r2"):
            p.put(review, 2015, note={"S": "orig"})
        assert p.full_export().success
        [full] = p.sensor_tick_and_validate()
        assert p.lake_table().success
        clock.advance(60)
        p.put("r0", 2016, note={"S": "w1"})
        p.delete("r1")
        clock.set(p.start + WINDOW + 60, frozen=True)
        p.put("r2", 2015, note={"S": "w2"})
        clock.set(p.start + 2 * WINDOW + 1, frozen=True)
        windows = []
        for i in range(2):
            key = datetime.fromtimestamp(p.start + i * WINDOW, timezone.utc).strftime("%Y-%m-%dT%H:%M")
            window = p.materialize([p.names.incremental_export_key], partition_key=key)
            assert window.success
            [started] = window.asset_materializations_for_node("__".join(p.names.incremental_export_key.path))
            windows.append(started.metadata["export_id"].value)
        p.sensor_tick_and_validate()
        assert p.lake_table().success
        expected = [("r0", 2016, "w1"), ("r2", 2015, "w2")]
        assert p.rows() == expected

        partitions = p.names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
        node = "__".join(p.names.parquet_key.path)
        rebuilt = p.materialize([p.assets[p.names.raw_export_key].key, p.names.parquet_key],
                                selection=[p.names.parquet_key],
                                run_config={"ops": {node: {"config": {"rebuild": True}}}},
                                tags={"dagster/asset_partition_range_start": partitions[0],
                                      "dagster/asset_partition_range_end": partitions[-1]})
        assert rebuilt.success
        # Replaced from the full export, then both windows merged again, in order: where it was.
        [event] = rebuilt.asset_materializations_for_node(node)[:1]
        assert event.metadata["exports_applied"].value == [full, *windows]
        assert [m["export_id"] for m in event.metadata["merged"].value] == windows
        assert instant(event.metadata["high_water_mark"].value) == pytest.approx(p.start + 2 * WINDOW, abs=1e-3)
        assert p.rows() == expected
        from ddb_assets.aws.resources import LakeResource
        from ddb_assets.lake.record import high_water_mark

        lake = p.defs.resources["lake"]
        assert isinstance(lake, LakeResource)
        assert instant(high_water_mark(lake.table(p.names.name))[0]) == pytest.approx(p.start + 2 * WINDOW, abs=1e-3)


def _snapshot_ids(p: Platform) -> list[int]:
    lake = p.defs.resources["lake"]
    return [s.snapshot_id for s in lake.table(p.names.name).snapshots()]


def _parquet_event(result: dg.ExecuteInProcessResult, p: Platform) -> Any:
    return result.asset_materializations_for_node("__".join(p.names.parquet_key.path))[0]


def test_materializing_an_up_to_date_table_succeeds_and_commits_nothing(world: LocalWorld, clock: WorldClock,
                                                                         tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        p = Platform(world, clock, tmp_path, instance)
        p.put("r1", 2015)
        p.put("r2", 2016)
        assert p.full_export().success
        [full] = p.sensor_tick_and_validate()
        assert p.lake_table().success
        converted = _snapshot_ids(p)

        # The same export again, nothing new: a success that commits nothing.
        again = p.lake_table()
        assert again.success
        assert _snapshot_ids(p) == converted
        event = _parquet_event(again, p)
        assert event.metadata["export_id"].value == full
        assert event.metadata["files_added"].value == 0
        assert event.metadata["up_to_date"].text == (
            f"{p.names.name} is up to date: it holds export {full} ({event.metadata['export_time'].value}) already, "
            f"so nothing was converted and no snapshot was made. Run config rebuild: true converts it again.")
        assert {e.check_name: e.passed for e in again.get_asset_check_evaluations()} == \
            {"row_count_matches_export": True, "keys_not_null_and_unique": True}

        # A window merged on top of the full export: the table is past the full export.
        clock.advance(60)
        p.put("r1", 2015, note={"S": "changed"})
        clock.set(p.start + WINDOW + 1, frozen=True)
        key = datetime.fromtimestamp(p.start, timezone.utc).strftime("%Y-%m-%dT%H:%M")
        started = p.materialize([p.names.incremental_export_key], partition_key=key)
        assert started.success
        window = started.asset_materializations_for_node("__".join(p.names.incremental_export_key.path))[0] \
            .metadata["export_id"].value
        assert window in p.sensor_tick_and_validate()
        assert p.lake_table().success
        merged = _snapshot_ids(p)
        assert len(merged) > len(converted)

        # Materialize (every partition), then a backfill of one partition: both succeed, commit
        # nothing, say so, and the table's checks are evaluated on the table as it is.
        partitions = p.names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
        for run in (p.lake_table(), p.materialize([p.assets[p.names.raw_export_key].key, p.names.parquet_key],
                                                   selection=[p.names.parquet_key], partition_key=partitions[0])):
            assert run.success
            assert _snapshot_ids(p) == merged
            event = _parquet_event(run, p)
            mark = event.metadata["high_water_mark"].value
            assert event.metadata["up_to_date"].text == (
                f"{p.names.name} is up to date: it holds changes up to {mark} (export {window}, applied after "
                f"full export {full}); no export newer than that has passed validation, so nothing was "
                f"converted and no snapshot was made. Run config rebuild: true converts the latest valid "
                f"full export again and merges the windows after it.")
            assert event.metadata["files_added"].value == 0
            assert instant(event.metadata["high_water_mark"].value) == pytest.approx(p.start + WINDOW, abs=1e-3)
            assert event.metadata["export_id"].value == window
            checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
            assert checks["keys_not_null_and_unique"].passed
            assert checks["keys_not_null_and_unique"].metadata["rows"].value == 2
            assert checks["row_count_matches_export"].passed
            assert checks["row_count_matches_export"].metadata["table_rows"].value == 2
        assert p.rows() == [("r1", 2015, "changed"), ("r2", 2016, None)]

        # A newer valid export older than the table's mark (the mark ran ahead of the clock): passed
        # over, and the metadata says so, with both times.
        later = f"{int(window.split('-')[0]) + 1:014d}-0000beef"
        older = datetime.fromtimestamp(p.start + 30, timezone.utc).isoformat().replace("+00:00", "Z")
        instance.add_dynamic_partitions(p.names.export_partitions.name, [later])
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=p.names.raw_export_key, partition=later,
            metadata={"valid": True, "export_type": "FULL_EXPORT", "export_time": older}))
        run = p.lake_table()
        assert run.success and _snapshot_ids(p) == merged
        text = _parquet_event(run, p).metadata["up_to_date"].text
        assert f"The newest validated export, {later} (changes up to {older}), was passed over: it is older than " \
               f"the table's mark {mark}; exports are applied again once they are later than {mark}." in text


def test_a_window_that_failed_validation_is_named_where_the_gap_is(world: LocalWorld, clock: WorldClock,
                                                                  tmp_path: Path) -> None:
    """Window 1's export holds a number that is not one (its checksums right): its validation fails;
    window 2 cannot be applied for the gap, and the failure names window 1's export and why, not
    only "missing"."""
    with dg.instance_for_test() as instance:
        p = Platform(world, clock, tmp_path, instance)
        p.put("r1", 2015)
        assert p.full_export().success
        assert p.sensor_tick_and_validate()
        assert p.lake_table().success
        keys = [datetime.fromtimestamp(p.start + i * WINDOW, timezone.utc).strftime("%Y-%m-%dT%H:%M") for i in range(2)]
        clock.advance(60)
        p.put("r2", 2016)
        clock.set(p.start + WINDOW + 60, frozen=True)
        p.put("r3", 2017)
        clock.set(p.start + 2 * WINDOW + 1, frozen=True)

        assert p.materialize([p.names.incremental_export_key], partition_key=keys[0]).success
        p.doctor = (b'{"N":"2016"}', b'{"N":"20x6"}')
        bad = p.sensor_tick_and_validate()[-1]  # its raw_export fails
        assert p.materialize([p.names.incremental_export_key], partition_key=keys[1]).success
        assert p.sensor_tick_and_validate()

        blocked = p.lake_table()
        assert not blocked.success
        [step] = [e for e in blocked.all_events if e.is_step_failure]
        failure = step.event_specific_data.error.message  # type: ignore[union-attr]
        assert "are missing" in failure
        assert f"exported since the mark but invalid (fix or export the window again): {bad} (failed validation: " \
            in failure
        assert "N must hold a number, found '20x6'" in failure
        assert p.rows() == [("r1", 2015, None)]  # nothing committed
