"""The Dagster platform against the local world over HTTP: assets, sensors, backfills, checks."""

import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pytest

from ddb_assets.definitions import build_definitions
from ddb_assets.defs.names import TableNames
from ddb_assets.exports.reader import DataFile
from ddb_assets.local.loader import batch_write
from ddb_assets.local.pipeline import local_settings, run_pipeline
from ddb_assets.local.sample_data import ReviewGenerator
from ddb_assets.local.tables import create_reviews_table
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import unique, wait_done
from ddb_assets_tests.lake_reader import read_rows


@pytest.fixture
def platform(world: LocalWorld, ddb: Any, s3: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    table, bucket = unique("reviews"), unique("exports")
    arn = create_reviews_table(ddb, table)
    s3.create_bucket(Bucket=bucket)
    batch_write(ddb, table, ReviewGenerator(400, seed=11))
    settings = local_settings(world.endpoint, str(tmp_path / "lake"), table=table, bucket=bucket, convert_workers=1,
                              convert_work_dir=str(tmp_path / "scratch"))
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        yield {"settings": settings, "defs": defs, "instance": instance, "names": TableNames(settings, settings.tables[0]),
               "table": table, "bucket": bucket, "arn": arn, "lake": tmp_path / "lake",
               "scratch": tmp_path / "scratch"}


def _assets(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetsDefinition]:
    return {a.key: a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)}


def _sensor_tick(p: dict[str, Any], name: str, cursor: str | None = None) -> Any:
    sensor = p["defs"].resolve_sensor_def(name)
    with dg.build_sensor_context(instance_ref=p["instance"].get_ref(), definitions=p["defs"],
                                 resources=p["defs"].resources, cursor=cursor) as context:
        return sensor.evaluate_tick(context)


def _export_outside_dagster(p: dict[str, Any], ddb: Any, bucket: str | None = None) -> str:
    started = ddb.export_table_to_point_in_time(TableArn=p["arn"], S3Bucket=bucket or p["bucket"],
                                                S3Prefix=f"exports/{p['table']}")["ExportDescription"]
    wait_done(ddb, started["ExportArn"])
    return started["ExportArn"].rsplit("/", 1)[1]


def test_definitions_load_per_table_with_groups_kinds_and_descriptions(platform: dict[str, Any]) -> None:
    defs, names = platform["defs"], platform["names"]
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k for k in graph.get_all_asset_keys() if k.path[0] == names.name}
    assert {names.source_key, names.pitr_export_key, names.raw_export_key, names.parquet_key,
            names.key("top_customers"), names.key("most_reviewed_products")} <= keys
    for key in keys:
        node = graph.get(key)
        assert node.group_name == names.group and node.description and node.kinds


def test_pitr_export_starts_and_waits(platform: dict[str, Any]) -> None:
    p = platform
    result = dg.materialize([_assets(p["defs"])[p["names"].pitr_export_key]], instance=p["instance"],
                            resources=p["defs"].resources)
    [mat] = result.asset_materializations_for_node("__".join(p["names"].pitr_export_key.path))
    assert mat.metadata["status"].value == "COMPLETED" and mat.metadata["item_count"].value == 400
    assert mat.metadata["export_arn"].value.startswith(p["arn"] + "/export/")
    # Same run, same token: a retry returns the same export instead of starting another.
    assert mat.metadata["client_token"].value == f"dagster-{result.run_id}"
    # Dagster recorded this export already: the sensor adds no materialization of its own.
    tick = _sensor_tick(p, f"{p['names'].name}_export_completion_sensor")
    assert [r.partition_key for r in tick.run_requests] == [mat.metadata["export_id"].value]
    assert not tick.asset_events


def test_export_sensor_new_external_failed_and_restart(platform: dict[str, Any], ddb: Any) -> None:
    p = platform
    name = f"{p['names'].name}_export_completion_sensor"
    first = _export_outside_dagster(p, ddb)  # started outside Dagster, like the console or the CLI
    tick = _sensor_tick(p, name)
    assert [r.partition_key for r in tick.run_requests] == [first]
    assert tick.dynamic_partitions_requests[0].partition_keys == [first]
    # pitr_export is not left grey: the export is recorded as its (runless) materialization.
    [recorded] = tick.asset_events
    assert isinstance(recorded, dg.AssetMaterialization) and recorded.asset_key == p["names"].pitr_export_key
    assert recorded.metadata["export_id"].value == first and recorded.metadata["item_count"].value == 400
    assert recorded.metadata["started_by"].value.startswith("outside Dagster")
    cursor = tick.cursor

    again = _sensor_tick(p, name, cursor)  # restart with the stored cursor: nothing twice
    assert not again.run_requests and again.skip_message

    failed = _export_outside_dagster(p, ddb, bucket=unique("missing-bucket"))
    tick = _sensor_tick(p, name, again.cursor)
    assert not tick.run_requests
    [observation] = tick.asset_events
    assert observation.asset_key == p["names"].pitr_export_key
    assert observation.metadata["failure_code"].value == "S3NoSuchBucket"
    assert failed in json.loads(tick.cursor)["handled"]
    assert not _sensor_tick(p, name, tick.cursor).asset_events  # reported once, not forever


def test_export_sensor_follows_pagination(platform: dict[str, Any], ddb: Any) -> None:
    p = platform
    ids = []
    for i in range(27):  # more than one ListExports page (25)
        started = ddb.export_table_to_point_in_time(TableArn=p["arn"], S3Bucket=p["bucket"], S3Prefix=f"page/{i}")
        ids.append(started["ExportDescription"]["ExportArn"].rsplit("/", 1)[1])
    for export_arn in (f"{p['arn']}/export/{i}" for i in ids):
        wait_done(ddb, export_arn)
    tick = _sensor_tick(p, f"{p['names'].name}_export_completion_sensor")
    assert sorted(r.partition_key for r in tick.run_requests) == sorted(ids)


def test_raw_export_records_and_registers_partitions(platform: dict[str, Any], ddb: Any) -> None:
    p = platform
    export_id = _export_outside_dagster(p, ddb)
    p["instance"].add_dynamic_partitions(p["names"].export_partitions.name, [export_id])
    result = dg.materialize([_assets(p["defs"])[p["names"].raw_export_key]], partition_key=export_id,
                            instance=p["instance"], resources=p["defs"].resources)
    [mat] = result.asset_materializations_for_node("__".join(p["names"].raw_export_key.path))
    assert mat.metadata["dagster/row_count"].value == 400
    assert mat.metadata["export_arn"].value.endswith(export_id) and mat.metadata["data_files"].value == 4
    assert "price" in mat.metadata["attribute_types"].value
    years = {item["year"]["N"] for item in ReviewGenerator(400, seed=11)}
    assert set(p["names"].value_partitions.get_partition_keys(dynamic_partitions_store=p["instance"])) == years
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["checksums_verified"].passed and checks["schema_drift"].passed


def _validated_export(p: dict[str, Any], ddb: Any) -> tuple[dg.DagsterInstance, dict[dg.AssetKey, dg.AssetsDefinition],
                                                             TableNames]:
    """An export started outside Dagster, registered and validated by raw_export."""
    export_id = _export_outside_dagster(p, ddb)
    instance, assets, names = p["instance"], _assets(p["defs"]), p["names"]
    instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
    dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                   resources=p["defs"].resources)
    return instance, assets, names


def _partition_range(values: list[str]) -> dict[str, str]:
    """Run tags of a single-run backfill over ``values`` (a range of the partitions)."""
    return {"dagster/asset_partition_range_start": values[0], "dagster/asset_partition_range_end": values[-1]}


def test_single_run_backfill_reads_the_export_once_and_writes_exactly_those_partitions(
        platform: dict[str, Any], ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    p = platform
    reads: list[str] = []
    original = DataFile.stream_verified
    monkeypatch.setattr(DataFile, "stream_verified", lambda self, *a: reads.append(self.name) or original(self, *a))
    instance, assets, names = _validated_export(p, ddb)
    partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
    chosen = partitions[2:6]
    validated = list(reads)
    result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                            instance=instance, resources=p["defs"].resources,
                            tags=_partition_range(chosen))
    assert result.success
    # From export to snapshot, each of the export's 4 data files is read exactly once: by the
    # validation, which staged the table's data files; the lake table's run only commits them.
    assert len(validated) == 4 and len(set(validated)) == 4 and reads == validated
    assert instance.get_materialized_partitions(names.parquet_key) == set(chosen)
    meta, rows = read_rows(str(p["lake"] / names.name))
    assert {str(r["year"]) for r in rows} == set(chosen)  # a new table: only those partitions so far
    written = {f.relative_to(p["lake"] / names.name / "data").parts[0]
               for f in (p["lake"] / names.name / "data").rglob("*.parquet")}
    assert written == {f"year={v}" for v in chosen}
    materializations = list(result.asset_materializations_for_node("__".join(names.parquet_key.path)))
    # each partition's event carries that partition's own row count
    assert {m.partition: m.metadata["dagster/row_count"].value for m in materializations} == \
        {v: sum(1 for r in rows if str(r["year"]) == v) for v in chosen}
    [mat] = materializations[:1]
    assert mat.metadata["dagster/column_schema"].value.columns
    # raw_export staged the data files (two stages: a new table has no schema to plan from)
    assert mat.metadata["conversion"].value == "read by raw_export, not here: its staged data files committed (two " \
                                               "stages: a new table (no stored schema to plan from))"
    assert mat.metadata["scratch_bytes"].value > 0
    assert re.fullmatch(r"arrow-rs: [1-4] of 4 pieces, [0-3] fell back to pyarrow's reader",
                        mat.metadata["json_parse"].value), mat.metadata["json_parse"].value
    assert not any(p["scratch"].iterdir())  # the work folder is left clean
    # the staged files of the partitions not chosen are removed, and the record with them
    assert not list((p["lake"] / names.name / "_staged").glob("*.json"))
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["keys_not_null_and_unique"].passed
    assert not checks["row_count_matches_export"].passed  # only some partitions are from this export yet


def test_without_a_saved_profile_the_conversion_takes_two_stages_and_the_same_table(
        platform: dict[str, Any], ddb: Any) -> None:
    p = platform
    instance, assets, names = _validated_export(p, ddb)
    table_root = p["lake"] / names.name
    tags = _partition_range(names.value_partitions.get_partition_keys(dynamic_partitions_store=instance))

    node = "__".join(names.parquet_key.path)

    def convert(rebuild: bool = False) -> tuple[str, list[dict[str, Any]]]:
        result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]],
                                selection=[names.parquet_key], instance=instance, resources=p["defs"].resources,
                                tags=tags, run_config={"ops": {node: {"config": {"rebuild": rebuild}}}})
        [mat] = list(result.asset_materializations_for_node(node))[:1]
        _, rows = read_rows(str(table_root))  # the published version, read by an independent reader
        return mat.metadata["conversion"].value, sorted(rows, key=lambda r: (r["product_id"], r["review_id"]))

    staged, rows = convert()
    assert staged.startswith("read by raw_export, not here: ")
    # The same export again: the table holds it already, nothing is read or committed.
    unchanged, same = convert()
    assert unchanged.startswith("none: the table holds export") and same == rows
    one_pass, again = convert(rebuild=True)  # converted again on purpose: from raw_export's profile
    assert one_pass.startswith("one pass") and again == rows
    shutil.rmtree(table_root / "_profiles")  # saved before this version, say, or pruned
    two_stages, again = convert(rebuild=True)
    assert two_stages.startswith("two stages") and again == rows and len(rows) == 400
    assert p["scratch"].is_dir() and not any(p["scratch"].iterdir())  # the settings' work folder, left clean


def test_a_profile_that_cannot_be_saved_does_not_fail_the_validation(platform: dict[str, Any], ddb: Any) -> None:
    p = platform
    names = p["names"]
    table_root = p["lake"] / names.name
    table_root.mkdir(parents=True)
    (table_root / "_profiles").write_text("a file where the folder should be")  # no writing there
    instance, assets, _ = _validated_export(p, ddb)
    [event] = instance.get_latest_materialization_events([names.raw_export_key]).values()
    metadata = event.asset_materialization.metadata
    assert metadata["valid"].value is True and metadata["profile"].value.startswith("not saved")
    result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                            instance=instance, resources=p["defs"].resources, tags=_partition_range(
                                names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)))
    [mat] = list(result.asset_materializations_for_node("__".join(names.parquet_key.path)))[:1]
    assert mat.metadata["conversion"].value.startswith("read by raw_export, not here: ")
    assert len(read_rows(str(table_root))[1]) == 400


def test_automation_requests_every_partition_after_a_new_export(platform: dict[str, Any], ddb: Any) -> None:
    p = platform
    run_pipeline(p["settings"], p["instance"], quiet=True)
    names, instance = p["names"], p["instance"]
    defs = p["defs"]
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert not result.get_requested_partitions(names.parquet_key)  # everything is up to date
    # A new export lands and is validated (as the sensor would request); a materialization alone
    # is not enough: automation waits for raw_export's blocking check to pass.
    newer = _export_outside_dagster(p, ddb)
    instance.add_dynamic_partitions(names.export_partitions.name, [newer])
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=names.raw_export_key, partition=newer))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert not result.get_requested_partitions(names.parquet_key)
    dg.materialize([_assets(defs)[names.raw_export_key]], partition_key=newer, instance=instance,
                   resources=defs.resources)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    everything = set(names.value_partitions.get_partition_keys(dynamic_partitions_store=instance))
    assert result.get_requested_partitions(names.parquet_key) == everything


def test_reports_sensor_requests_one_run_per_publication(platform: dict[str, Any]) -> None:
    p = platform
    run = run_pipeline(p["settings"], p["instance"], quiet=True)
    assert len(run.partitions) > 5
    name = f"{p['names'].name}_reports_sensor"
    # The pipeline (as `make demo`) refreshed the reports after its publication: a sensor starting
    # without a cursor (`dev` afterwards) has nothing to do.
    first = _sensor_tick(p, name)
    assert not first.run_requests and "after the latest publication" in first.skip_message
    parquet = _assets(p["defs"])[p["names"].parquet_key]
    # Materialized again with nothing new: no snapshot, so nothing for the reports.
    same = dg.materialize([parquet], partition_key=run.partitions[0], instance=p["instance"],
                          resources=p["defs"].resources)
    idle = _sensor_tick(p, name, first.cursor)
    assert not idle.run_requests and idle.skip_message == (
        f"run {same.run_id} found {p['names'].name} up to date: no new snapshot to report")
    # A publication after the reports (converted again on purpose): one run for it, however many
    # partition events it made.
    node = "__".join(p["names"].parquet_key.path)
    published = dg.materialize([parquet], partition_key=run.partitions[0], instance=p["instance"],
                               resources=p["defs"].resources,
                               run_config={"ops": {node: {"config": {"rebuild": True}}}})
    tick = _sensor_tick(p, name, idle.cursor)
    assert [r.run_key for r in tick.run_requests] == [f"publication-{published.run_id}"]
    assert not _sensor_tick(p, name, tick.cursor).run_requests


def test_reports_are_written_with_previews(platform: dict[str, Any]) -> None:
    p = platform
    run_pipeline(p["settings"], p["instance"], quiet=True)
    event = p["instance"].get_latest_materialization_event(p["names"].key("top_customers"))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value > 0 and "| customer_id |" in metadata["preview"].value
    assert metadata["bytes_scanned"].value > 0  # what the engine read, for cost visibility
    assert metadata["dagster/table_name"].value == f"ddb_lake.{p['names'].name}_top_customers"
    from pyiceberg.table import StaticTable

    from ddb_assets_tests.lake_reader import latest_metadata

    report = StaticTable.from_metadata(latest_metadata(str(p["lake"] / "reports" / p["names"].name / "top_customers")))
    top = report.scan().to_arrow().to_pylist()  # an Iceberg table, read by pyiceberg
    expected: dict[str, int] = {}
    for item in ReviewGenerator(400, seed=11):
        expected[item["customer_id"]["S"]] = expected.get(item["customer_id"]["S"], 0) + 1
    best = max(expected.values())
    assert top[0]["reviews"] == best and expected[top[0]["customer_id"]] == best


def test_checks_fail_on_a_doctored_export(platform: dict[str, Any], ddb: Any, s3: Any) -> None:
    p = platform
    names, instance, assets = p["names"], p["instance"], _assets(p["defs"])
    export_id = _export_outside_dagster(p, ddb)
    description = ddb.describe_export(ExportArn=f"{p['arn']}/export/{export_id}")["ExportDescription"]
    folder = description["ExportManifest"].rsplit("/", 1)[0]
    # Doctor it: the same key twice (a duplicate item), with the manifests kept consistent.
    files = s3.get_object(Bucket=p["bucket"], Key=f"{folder}/manifest-files.json")["Body"].read().decode()
    lines = [json.loads(line) for line in files.splitlines() if line]
    entry = max(lines, key=lambda e: e["itemCount"])
    data = gzip.decompress(s3.get_object(Bucket=p["bucket"], Key=entry["dataFileS3Key"])["Body"].read())
    first = data.split(b"\n")[0] + b"\n"
    doctored = gzip.compress(data + first)
    import base64
    import hashlib
    s3.put_object(Bucket=p["bucket"], Key=entry["dataFileS3Key"], Body=doctored)
    entry["md5Checksum"] = base64.b64encode(hashlib.md5(doctored).digest()).decode()
    entry["itemCount"] += 1
    new_files = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines).encode()
    s3.put_object(Bucket=p["bucket"], Key=f"{folder}/manifest-files.json", Body=new_files)
    s3.put_object(Bucket=p["bucket"], Key=f"{folder}/manifest-files.md5",
                  Body=base64.b64encode(hashlib.md5(new_files).digest()))
    summary = json.loads(s3.get_object(Bucket=p["bucket"], Key=description["ExportManifest"])["Body"].read())
    summary["itemCount"] += 1
    summary_bytes = json.dumps(summary, separators=(",", ":")).encode()
    s3.put_object(Bucket=p["bucket"], Key=description["ExportManifest"], Body=summary_bytes)
    s3.put_object(Bucket=p["bucket"], Key=f"{folder}/manifest-summary.md5",
                  Body=base64.b64encode(hashlib.md5(summary_bytes).digest()))

    instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
    dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                   resources=p["defs"].resources)
    partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
    result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                            instance=instance, resources=p["defs"].resources,
                            tags={"dagster/asset_partition_range_start": partitions[0],
                                  "dagster/asset_partition_range_end": partitions[-1]})
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["keys_not_null_and_unique"].passed
    assert checks["keys_not_null_and_unique"].metadata["duplicate_keys"].value == 1

    # And a corrupted data file fails the export's checksum check.
    s3.put_object(Bucket=p["bucket"], Key=entry["dataFileS3Key"], Body=doctored[:-3] + b"xyz")
    bad = dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                         resources=p["defs"].resources, raise_on_error=False)
    assert not bad.success
    checks = {c.check_name: c for c in bad.get_asset_check_evaluations()}
    assert not checks["checksums_verified"].passed
    assert entry["dataFileS3Key"] in checks["checksums_verified"].metadata["error"].value


def test_schema_drift_warns_with_details(platform: dict[str, Any], ddb: Any) -> None:
    p = platform
    names, instance, assets = p["names"], p["instance"], _assets(p["defs"])
    first = _export_outside_dagster(p, ddb)
    ddb.put_item(TableName=p["table"], Item={"product_id": {"S": "X"}, "review_id": {"S": "Y"},
                                            "brand_new": {"S": "attribute"}, "year": {"N": "2015"}})
    second = _export_outside_dagster(p, ddb)
    for export_id in (first, second):
        instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
        result = dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                                resources=p["defs"].resources)
    drift = {c.check_name: c for c in result.get_asset_check_evaluations()}["schema_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["details"].value["new"] == ["brand_new"]
    # Validated again (or out of order), the export is still compared with the one before it.
    again = dg.materialize([assets[names.raw_export_key]], partition_key=second, instance=instance,
                           resources=p["defs"].resources)
    drift = {c.check_name: c for c in again.get_asset_check_evaluations()}["schema_drift"]
    assert not drift.passed and drift.metadata["compared_with"].value == first


def _corrupt_a_data_file(p: dict[str, Any], ddb: Any, s3: Any, export_id: str) -> str:
    """Damage one data file of a COMPLETED export (its md5 no longer matches); returns its key."""
    description = ddb.describe_export(ExportArn=f"{p['arn']}/export/{export_id}")["ExportDescription"]
    folder = description["ExportManifest"].rsplit("/", 1)[0]
    files = s3.get_object(Bucket=p["bucket"], Key=f"{folder}/manifest-files.json")["Body"].read().decode()
    entry = max((json.loads(line) for line in files.splitlines() if line), key=lambda e: e["itemCount"])
    data = s3.get_object(Bucket=p["bucket"], Key=entry["dataFileS3Key"])["Body"].read()
    s3.put_object(Bucket=p["bucket"], Key=entry["dataFileS3Key"], Body=data[:-3] + b"xyz")
    return str(entry["dataFileS3Key"])


def test_an_export_that_fails_validation_is_never_converted(platform: dict[str, Any], ddb: Any, s3: Any) -> None:
    p = platform
    names, instance, assets, defs = p["names"], p["instance"], _assets(p["defs"]), p["defs"]
    good = run_pipeline(p["settings"], instance, quiet=True).export_id  # validated and converted
    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert not automation.get_requested_partitions(names.parquet_key)

    # A newer export COMPLETES, but its data does not match its manifest.
    ddb.put_item(TableName=p["table"], Item={"product_id": {"S": "X"}, "review_id": {"S": "Y"}, "year": {"N": "2015"}})
    bad = _export_outside_dagster(p, ddb)
    damaged = _corrupt_a_data_file(p, ddb, s3, bad)
    table_root = p["lake"] / names.name
    files_before = sorted((table_root / "data").rglob("*.parquet"))
    instance.add_dynamic_partitions(names.export_partitions.name, [bad])
    validation = dg.materialize([assets[names.raw_export_key]], partition_key=bad, instance=instance,
                                resources=defs.resources, raise_on_error=False)
    assert not validation.success  # the blocking check fails the run
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=names.raw_export_key, asset_partitions=[bad]), limit=1).records
    metadata = record.asset_materialization.metadata
    assert metadata["valid"].value is False and damaged in metadata["error"].value
    assert metadata["latest_valid_export"].value == good  # the UI says which export the lake keeps
    # Its read staged nothing: no record, and no data file beside the table's own.
    assert sorted((table_root / "data").rglob("*.parquet")) == files_before
    assert not (table_root / "_staged" / f"{bad}.json").exists()

    # Automation does not convert it: no partition of the lake table is requested.
    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=automation.cursor)
    assert not automation.get_requested_partitions(names.parquet_key)

    # A backfill by hand converts the latest valid export, and says which newer one it passed over.
    partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
    backfill = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]],
                              selection=[names.parquet_key], instance=instance, resources=defs.resources,
                              tags=_partition_range(partitions))
    assert backfill.success
    [mat] = list(backfill.asset_materializations_for_node("__".join(names.parquet_key.path)))[:1]
    assert mat.metadata["export_id"].value == good
    assert bad in mat.metadata["latest_valid_export"].value and "failed validation" in \
        mat.metadata["latest_valid_export"].value
    assert len(read_rows(str(p["lake"] / names.name))[1]) == 400  # not the bad export's 401 items
    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=automation.cursor)
    assert not automation.get_requested_partitions(names.parquet_key)  # up to date with the valid export

    # Once a valid export arrives, automation converts it as before.
    newer = _export_outside_dagster(p, ddb)
    instance.add_dynamic_partitions(names.export_partitions.name, [newer])
    assert dg.materialize([assets[names.raw_export_key]], partition_key=newer, instance=instance,
                          resources=defs.resources).success
    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=automation.cursor)
    assert automation.get_requested_partitions(names.parquet_key) == \
        set(names.value_partitions.get_partition_keys(dynamic_partitions_store=instance))


def test_an_export_of_an_earlier_local_world_fails_with_what_to_do(platform: dict[str, Any], ddb: Any,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # make dev after make demo: the demo's export is the latest valid one, but its world is gone.
    p = platform
    names, instance, assets = p["names"], p["instance"], _assets(p["defs"])
    gone = "01700000000000-0000dead"
    instance.add_dynamic_partitions(names.export_partitions.name, [gone])
    instance.add_dynamic_partitions(names.value_partitions.name, ["2015"])
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=names.raw_export_key, partition=gone,
                                                                metadata={"valid": True}))
    result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                            partition_key="2015", instance=instance, resources=p["defs"].resources,
                            raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message
    assert f"export/{gone} is not known to DynamoDB" in message and "earlier local world" in message
    assert "kept a copy" not in message  # no copy of it in var/exports here

    # The demo's copy, where the demo keeps it: named.
    monkeypatch.chdir(tmp_path)
    kept = tmp_path / "var" / "exports" / "ddb-exports" / "exports" / "reviews" / "AWSDynamoDB" / gone
    kept.mkdir(parents=True)
    result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                            partition_key="2015", instance=instance, resources=p["defs"].resources,
                            raise_on_error=False)
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert f"(the demo kept a copy in var/exports/ddb-exports/exports/reviews/AWSDynamoDB/{gone}/, for " \
           f"`ddb-assets inspect` and `convert`)" in failure.step_failure_data.error.message
