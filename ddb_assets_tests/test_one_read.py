"""One read per export in Dagster: raw_export's validation is the conversion's read, and the lake
table's run commits the data files it staged (lake/staging.py). Counted on the local world's S3
(moto's request recorder over HTTP), against the real Dagster assets."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import dagster as dg
import pytest
import requests

from ddb_assets.lake.catalog import CatalogConfig
from ddb_assets.lake.convert import ConvertOptions, convert_export, profile_export
from ddb_assets.lake.maintenance import remove_orphan_files
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.lake_reader import read_rows
from ddb_assets_tests.test_dagster_platform import _assets, _export_outside_dagster, _partition_range
from ddb_assets_tests.test_dagster_platform import platform  # noqa: F401 - the fixture
from ddb_assets_tests.test_dagster_incremental import WINDOW, Platform, _iso
from ddb_assets_tests.test_dagster_incremental import clock  # noqa: F401 - the fixture


class _Recorder:
    """moto's own request recorder, through the world's HTTP API."""

    def __init__(self, endpoint: str):
        self.api = f"{endpoint}/moto-api/recorder"

    def start(self) -> None:
        requests.post(f"{self.api}/reset-recording", timeout=10).raise_for_status()
        requests.post(f"{self.api}/start-recording", timeout=10).raise_for_status()

    def gets(self, keys: set[str]) -> Counter:
        """Stop recording; GETs of each of ``keys`` (object keys) since ``start``."""
        requests.post(f"{self.api}/stop-recording", timeout=10).raise_for_status()
        text = requests.get(f"{self.api}/download-recording", timeout=60).text
        counts: Counter = Counter()
        for line in text.splitlines():
            entry = json.loads(line)
            if entry["method"] != "GET":
                continue
            path = unquote(urlparse(entry["url"]).path).lstrip("/")
            key = path.split("/", 1)[1] if "/" in path else ""  # path-style: bucket/key
            if key in keys:
                counts[key] += 1
        return counts


@pytest.fixture
def recorder(world: LocalWorld) -> Iterator[_Recorder]:
    recording = _Recorder(world.endpoint)
    yield recording
    requests.post(f"{recording.api}/stop-recording", timeout=10)
    requests.post(f"{recording.api}/reset-recording", timeout=10)


def _data_file_keys(p: dict[str, Any], ddb: Any, s3: Any, export_id: str) -> tuple[str, set[str]]:
    description = ddb.describe_export(ExportArn=f"{p['arn']}/export/{export_id}")["ExportDescription"]
    folder = description["ExportManifest"].rsplit("/", 1)[0]
    files = s3.get_object(Bucket=p["bucket"], Key=f"{folder}/manifest-files.json")["Body"].read().decode()
    keys = {json.loads(line)["dataFileS3Key"] for line in files.splitlines() if line}
    return f"s3://{p['bucket']}/{description['ExportManifest']}", keys


def test_from_export_to_snapshot_each_data_file_is_fetched_once(platform: dict[str, Any], ddb: Any, s3: Any,  # noqa: F811
                                                                 recorder: _Recorder) -> None:
    p = platform
    names, instance, assets = p["names"], p["instance"], _assets(p["defs"])
    export_id = _export_outside_dagster(p, ddb)
    manifest, keys = _data_file_keys(p, ddb, s3, export_id)
    assert len(keys) == 4

    # The yardstick: what reading the export once costs in GETs (one per file at this size).
    recorder.start()
    profile_export(manifest, ConvertOptions(workers=1, s3=p["defs"].resources["lake"].s3_options()))
    once = recorder.gets(keys)
    assert set(once) == keys

    recorder.start()
    instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
    validation = dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                                resources=p["defs"].resources)
    partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
    table = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                           instance=instance, resources=p["defs"].resources, tags=_partition_range(partitions))
    assert recorder.gets(keys) == once  # validated, converted and committed: the export read once

    [checked] = validation.asset_materializations_for_node("__".join(names.raw_export_key.path))
    assert checked.metadata["staged"].value.startswith("400 rows in ")
    [mat] = list(table.asset_materializations_for_node("__".join(names.parquet_key.path)))[:1]
    assert mat.metadata["conversion"].value.startswith("read by raw_export, not here: ")
    assert mat.metadata["table_rows"].value == 400 and len(read_rows(str(p["lake"] / names.name))[1]) == 400
    assert not (p["lake"] / names.name / "_staged").exists()  # the record goes with its commit, and its folder


def test_staged_files_that_are_gone_cost_a_second_read_not_the_table(platform: dict[str, Any],  # noqa: F811
                                                                     ddb: Any) -> None:
    p = platform
    names, instance, assets = p["names"], p["instance"], _assets(p["defs"])
    export_id = _export_outside_dagster(p, ddb)
    instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
    dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                   resources=p["defs"].resources)
    table_root = p["lake"] / names.name
    staged = sorted((table_root / "data").rglob("*.parquet"))
    staged[0].unlink()  # say, removed by hand or by another tool
    partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
    result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                            instance=instance, resources=p["defs"].resources, tags=_partition_range(partitions))
    [mat] = list(result.asset_materializations_for_node("__".join(names.parquet_key.path)))[:1]
    # read again, in one pass from raw_export's profile; the run says why
    assert mat.metadata["conversion"].value == "one pass: planned from this export's profile"
    warnings = [e.message for e in instance.all_logs(result.run_id) if e.level == 30]
    assert any("data files are gone" in w and export_id in w for w in warnings), warnings
    _, rows = read_rows(str(table_root))
    assert len(rows) == 400
    # the stale staged files went with their record: only the table's own files are left
    assert sorted((table_root / "data").rglob("*.parquet")) != staged
    assert not list((table_root / "_staged").glob("*.json"))


def test_staged_files_are_not_orphans_and_superseded_ones_are_removed(platform: dict[str, Any],  # noqa: F811
                                                                      ddb: Any) -> None:
    p = platform
    names, instance, assets, resources = p["names"], p["instance"], _assets(p["defs"]), p["defs"].resources
    table_root = p["lake"] / names.name

    def validate() -> str:
        export_id = _export_outside_dagster(p, ddb)
        instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
        dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                       resources=resources)
        return export_id

    def materialize() -> Any:
        partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
        return dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]],
                              selection=[names.parquet_key], instance=instance, resources=resources,
                              tags=_partition_range(partitions))

    validate()
    materialize()
    ddb.put_item(TableName=p["table"], Item={"product_id": {"S": "X"}, "review_id": {"S": "Y"},
                                            "year": {"N": "2015"}})
    committed = set((table_root / "data").rglob("*.parquet"))
    older = validate()
    # Maintenance with no grace at all: the staged files are named by a live record, not orphans.
    table = resources["lake"].table(names.name)
    removed, _ = remove_orphan_files(table, timedelta(0), resources["lake"].s3_options())
    assert not [r for r in removed if r.endswith(".parquet")]
    staged_older = set((table_root / "data").rglob("*.parquet")) - committed
    assert staged_older and (table_root / "_staged" / f"{older}.json").is_file()

    newer = validate()  # a newer export arrives before the table's run: it is the one applied
    result = materialize()
    [mat] = list(result.asset_materializations_for_node("__".join(names.parquet_key.path)))[:1]
    assert mat.metadata["export_id"].value == newer and mat.metadata["table_rows"].value == 401
    assert mat.metadata["conversion"].value.startswith("read by raw_export, not here: ")
    # the older export's staged files will never be committed: removed with their record
    assert not any(f.exists() for f in staged_older)
    assert not list((table_root / "_staged").glob("*.json"))
    assert len(read_rows(str(table_root))[1]) == 401


def _window_export(p: Platform, key: str) -> tuple[str, str, set[str]]:
    """Export the window starting at ``key`` (through its asset): (export id, manifest URI, data file keys)."""
    started = p.materialize([p.names.incremental_export_key], partition_key=key)
    assert started.success
    [event] = started.asset_materializations_for_node("__".join(p.names.incremental_export_key.path))
    export_id = event.metadata["export_id"].value
    bucket = p.settings.tables[0].export_bucket
    arn = p.ddb.describe_table(TableName=p.table)["Table"]["TableArn"]
    description = p.ddb.describe_export(ExportArn=f"{arn}/export/{export_id}")["ExportDescription"]
    folder = description["ExportManifest"].rsplit("/", 1)[0]
    s3 = p.world.client("s3")
    files = s3.get_object(Bucket=bucket, Key=f"{folder}/manifest-files.json")["Body"].read().decode()
    keys = {json.loads(line)["dataFileS3Key"] for line in files.splitlines() if line}
    return export_id, f"s3://{bucket}/{description['ExportManifest']}", keys


def _table_with_one_window(world: LocalWorld, clock: WorldClock, tmp_path: Path,
                           instance: dg.DagsterInstance, history: bool = False) -> tuple[Platform, str]:
    """A lake table made from a full export of 300 reviews, and the key of the window after it,
    closed, holding updates (a partition move, a new attribute), deletes and inserts."""
    p = Platform(world, clock, tmp_path, instance, history=history)
    for i in range(300):
        p.put(f"r{i:03d}", 2015 + i % 3, stars={"N": str(i % 5)})
    clock.set(p.start, frozen=True)
    assert p.materialize([p.names.pitr_export_key], run_config={"ops": {
        "__".join(p.names.pitr_export_key.path): {"config": {"export_time": _iso(p.start)}}}}).success
    assert p.sensor_tick_and_validate()
    assert p.lake_table().success
    clock.advance(60)
    for i in range(0, 60, 3):
        p.put(f"r{i:03d}", 2018, stars={"N": "5"}, note={"S": f"moved {i}"})
    for i in range(1, 60, 6):
        p.delete(f"r{i:03d}")
    for i in range(300, 320):
        p.put(f"r{i:03d}", 2016)  # the moves rewrite a 2015 file, the deletes a 2016 one
    clock.set(p.start + WINDOW + 1, frozen=True)
    return p, datetime.fromtimestamp(p.start, timezone.utc).strftime("%Y-%m-%dT%H:%M")


def test_an_incremental_export_is_fetched_once_from_completed_to_merged(world: LocalWorld, clock: WorldClock,  # noqa: F811
                                                                       tmp_path: Path, recorder: _Recorder) -> None:
    with dg.instance_for_test() as instance:
        p, key = _table_with_one_window(world, clock, tmp_path, instance)
        export_id, manifest, keys = _window_export(p, key)
        lake = p.defs.resources["lake"]
        recorder.start()
        profile_export(manifest, ConvertOptions(workers=1, s3=lake.s3_options()))
        once = recorder.gets(keys)
        assert set(once) == keys

        recorder.start()
        assert export_id in p.sensor_tick_and_validate()
        merged = p.lake_table()
        assert merged.success
        assert recorder.gets(keys) == once  # validated, staged, merged: the window read once

        [validation] = [e for e in instance.fetch_materializations(p.names.raw_export_key, limit=10).records
                        if e.partition_key == export_id]
        assert validation.asset_materialization.metadata["staged"].value.startswith(
            "40 upserts in ")  # 20 moved, 20 inserted; and the keys of 50 changes
        assert "the keys of its 50 changes" in validation.asset_materialization.metadata["staged"].value
        [event] = merged.asset_materializations_for_node("__".join(p.names.parquet_key.path))[:1]
        assert event.metadata["conversion"].value.startswith("read by raw_export, not here: its staged upserts")
        assert event.metadata["merged"].value == [{"export_id": export_id, "upserts": 40, "deletes": 10,
                                                   "deletes_missing": 0, "files_rewritten": 2,
                                                   "merge_mode": "copy-on-write", "delete_files": 0}]
        assert not (p.lake / "_staged").exists()  # record, change keys and folder gone with the commit

        # The table convert_export makes of the same two exports, outside Dagster.
        exports = sorted(p.ddb.list_exports(TableArn=p.ddb.describe_table(TableName=p.table)["Table"]["TableArn"])
                         ["ExportSummaries"], key=lambda e: e["ExportArn"])
        check = tmp_path / "check" / p.names.name
        options = p.settings.convert_options(p.settings.tables[0], s3=lake.s3_options(), catalog=CatalogConfig())
        for summary in exports:
            description = p.ddb.describe_export(ExportArn=summary["ExportArn"])["ExportDescription"]
            with world.environment():
                convert_export(f"s3://{description['S3Bucket']}/{description['ExportManifest']}", str(check), options)
        assert _rows(check) == _rows(p.lake) and len(_rows(p.lake)) == 310


@pytest.mark.parametrize("kept_bytes, reads", [(None, 2), (0, 3)], ids=["changes-kept", "changes-read-again"])
def test_the_change_history_fetches_a_window_once_more_when_its_changes_fit_in_memory(  # noqa: F811
        world: LocalWorld, clock: WorldClock, tmp_path: Path, recorder: _Recorder, monkeypatch: pytest.MonkeyPatch,
        kept_bytes: int | None, reads: int) -> None:
    from ddb_assets.lake import change_history

    if kept_bytes is not None:  # a window bigger than the history may hold: profiled, then read again
        monkeypatch.setattr(change_history, "KEPT_BYTES", kept_bytes)
    with dg.instance_for_test() as instance:
        p, key = _table_with_one_window(world, clock, tmp_path, instance, history=True)
        export_id, manifest, keys = _window_export(p, key)
        lake = p.defs.resources["lake"]
        recorder.start()
        profile_export(manifest, ConvertOptions(workers=1, s3=lake.s3_options()))
        once = recorder.gets(keys)

        recorder.start()
        assert export_id in p.sensor_tick_and_validate()
        merged = p.lake_table()
        assert merged.success
        # Validated, staged and merged in one read; the history (old images) in one more, or two.
        assert recorder.gets(keys) == {key_: count * reads for key_, count in once.items()}
        [event] = merged.asset_materializations_for_node("__".join(p.names.parquet_key.path))[:1]
        assert event.metadata["history_appended"].value == [{"export_id": export_id, "changes": 50}]
        changes = lake.table(f"{p.names.name}_changes").scan().to_arrow().to_pylist()
        operations = Counter(row["operation"] for row in changes)
        assert operations == {"MODIFY": 20, "REMOVE": 10, "INSERT": 20}
        moved = {row["review_id"]: (row["old_year"], row["new_year"], row["new_note"]) for row in changes
                 if row["operation"] == "MODIFY"}
        assert moved["r003"] == (2015, 2018, "moved 3") and moved["r057"] == (2015, 2018, "moved 57")


def _rows(root: Path) -> list[dict[str, Any]]:
    return sorted(read_rows(str(root))[1], key=lambda row: row["review_id"])


def test_a_bad_line_in_an_incremental_export_fails_validation_and_stages_nothing(  # noqa: F811
        world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        p, key = _table_with_one_window(world, clock, tmp_path, instance)
        export_id, manifest, keys = _window_export(p, key)
        bucket, s3 = p.settings.tables[0].export_bucket, p.world.client("s3")
        folder = manifest.split("/", 3)[3].rsplit("/", 1)[0]
        files = s3.get_object(Bucket=bucket, Key=f"{folder}/manifest-files.json")["Body"].read().decode()
        entries = [json.loads(line) for line in files.splitlines() if line]
        entry = max(entries, key=lambda e: e["itemCount"])
        lines = gzip.decompress(s3.get_object(Bucket=bucket, Key=entry["dataFileS3Key"])["Body"].read()).split(b"\n")
        lines[1] = lines[1][: len(lines[1]) // 2]  # cut short: the manifests, md5s and counts still agree
        doctored = gzip.compress(b"\n".join(lines))
        s3.put_object(Bucket=bucket, Key=entry["dataFileS3Key"], Body=doctored)
        entry["md5Checksum"] = base64.b64encode(hashlib.md5(doctored).digest()).decode()
        new_files = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.json", Body=new_files)
        s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.md5",
                      Body=base64.b64encode(hashlib.md5(new_files).digest()))
        data_before = sorted((p.lake / "data").rglob("*.parquet"))

        instance.add_dynamic_partitions(p.names.export_partitions.name, [export_id])
        assert not p.materialize([p.names.raw_export_key], partition_key=export_id).success  # the blocking check
        [validation] = [e for e in instance.fetch_materializations(p.names.raw_export_key, limit=10).records
                        if e.partition_key == export_id]
        metadata = validation.asset_materialization.metadata
        assert metadata["valid"].value is False
        assert metadata["error"].value.startswith(f"s3://{bucket}/{entry['dataFileS3Key']}:2: "), metadata["error"].value
        # Nothing staged: no record, no change keys, no data file beyond the table's own.
        assert not (p.lake / "_staged").exists() or not list((p.lake / "_staged").iterdir())
        assert sorted((p.lake / "data").rglob("*.parquet")) == data_before


def test_an_overlapping_window_is_staged_by_write_time_when_the_table_allows_overlap(  # noqa: F811
        world: LocalWorld, clock: WorldClock, tmp_path: Path, recorder: _Recorder) -> None:
    """allow_overlap in the table's settings reaches raw_export too: the window that starts before
    the full export's time is staged (changes before the mark left out), merged from the staged
    files, and read once."""
    with dg.instance_for_test() as instance:
        p = Platform(world, clock, tmp_path, instance, allow_overlap=True)
        for i in range(3):
            p.put(f"r{i}", 2015, note={"S": "orig"})
        clock.set(p.start + 60, frozen=True)
        p.put("r0", 2015, note={"S": "before the mark"})
        clock.set(p.start + 300, frozen=True)
        assert p.materialize([p.names.pitr_export_key], run_config={"ops": {
            "__".join(p.names.pitr_export_key.path): {"config": {"export_time": _iso(p.start + 300)}}}}).success
        assert p.sensor_tick_and_validate()
        assert p.lake_table().success
        clock.set(p.start + 400, frozen=True)
        p.put("r1", 2016, note={"S": "after the mark"})
        p.delete("r2")
        clock.set(p.start + WINDOW + 1, frozen=True)
        key = datetime.fromtimestamp(p.start, timezone.utc).strftime("%Y-%m-%dT%H:%M")
        export_id, _, keys = _window_export(p, key)  # the window from p.start: 300 s before the mark
        recorder.start()
        assert export_id in p.sensor_tick_and_validate()
        [validation] = [e for e in instance.fetch_materializations(p.names.raw_export_key, limit=10).records
                        if e.partition_key == export_id]
        staged = validation.asset_materialization.metadata["staged"].value
        assert staged.startswith("1 upsert in 1 data file and the keys of its 2 changes ("), staged
        merged = p.lake_table()
        assert merged.success
        assert set(recorder.gets(keys).values()) == {1}  # validated, staged, merged: read once
        [event] = merged.asset_materializations_for_node("__".join(p.names.parquet_key.path))[:1]
        assert event.metadata["conversion"].value.startswith("read by raw_export, not here: its staged upserts")
        assert p.rows() == [("r0", 2015, "before the mark"), ("r1", 2016, "after the mark")]
