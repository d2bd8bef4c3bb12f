"""The spark runner in Dagster: raw_export stages the export through shard tasks on the engine (pyspark
local[2]) and the lake table's run commits what they wrote. The Dagster process reads the manifests
only: every data file is fetched by the Spark executors (counted on the local world's S3 with moto's
recorder), never parsed here (counted in this process, which the executors' Python is not). A known
table's next export is read once; a new table's first export and a misfit take a profile pass
first, and say so. Bad input fails raw_export's check with its file and line, committing nothing."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pytest

from ddb_assets.definitions import build_definitions
from ddb_assets.defs.names import TableNames
from ddb_assets.exports.reader import DataFile
from ddb_assets.lake.convert import convert_export
from ddb_assets.lake.maintenance import remove_orphan_files
from ddb_assets.lake.shards.options import RunnerOptions
from ddb_assets.local.pipeline import local_settings
from ddb_assets.local.loader import batch_write
from ddb_assets.local.sample_data import ReviewGenerator
from ddb_assets.local.tables import create_reviews_table
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.test_dagster_platform import _assets, _export_outside_dagster, _partition_range
from ddb_assets_tests.test_one_read import _data_file_keys, _Recorder, recorder  # noqa: F401 - the fixture
from ddb_assets_tests.test_shards import _key_columns, _sorted_rows, needs_spark


@pytest.fixture
def spark_platform(world: LocalWorld, ddb: Any, s3: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """test_dagster_platform's platform with ``runner: spark`` (local[2], two shards, no web UI)."""
    table, bucket = unique("reviews"), unique("exports")
    arn = create_reviews_table(ddb, table)
    s3.create_bucket(Bucket=bucket)
    batch_write(ddb, table, ReviewGenerator(400, seed=11))
    settings = local_settings(world.endpoint, str(tmp_path / "lake"), table=table, bucket=bucket, convert_workers=1,
                              convert_work_dir=str(tmp_path / "scratch"), runner="spark",
                              spark={"master": "local[2]", "shards": 2, "conf": {"spark.ui.enabled": "false"}})
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        yield {"settings": settings, "defs": defs, "instance": instance,
               "names": TableNames(settings, settings.tables[0]), "table": table, "bucket": bucket, "arn": arn,
               "lake": tmp_path / "lake", "tmp": tmp_path}


@pytest.fixture
def parsed_here(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The data files this process opens to parse (the Spark executors' Python processes are not this one)."""
    reads: list[str] = []
    original = DataFile.stream_verified
    monkeypatch.setattr(DataFile, "stream_verified", lambda self, *a: reads.append(self.name) or original(self, *a))
    return reads


def _validate(p: dict[str, Any], export_id: str) -> dg.ExecuteInProcessResult:
    names, instance = p["names"], p["instance"]
    instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
    return dg.materialize([_assets(p["defs"])[names.raw_export_key]], partition_key=export_id, instance=instance,
                          resources=p["defs"].resources, raise_on_error=False)


def _materialize(p: dict[str, Any]) -> Any:
    names, instance, assets = p["names"], p["instance"], _assets(p["defs"])
    partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
    result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]], selection=[names.parquet_key],
                            instance=instance, resources=p["defs"].resources, tags=_partition_range(partitions))
    return list(result.asset_materializations_for_node("__".join(names.parquet_key.path)))[0]


def _staged(result: dg.ExecuteInProcessResult, names: TableNames) -> str:
    [mat] = result.asset_materializations_for_node("__".join(names.raw_export_key.path))
    return mat.metadata["staged"].value


@needs_spark
def test_raw_export_stages_through_spark_shards_and_the_dagster_process_never_parses_an_item(
        spark_platform: dict[str, Any], ddb: Any, s3: Any, recorder: _Recorder,  # noqa: F811
        parsed_here: list[str]) -> None:
    p = spark_platform
    names, resources = p["names"], p["defs"].resources
    where = "2 shard tasks on the spark runner"

    # A new table: nothing to plan from, so a profile pass, then the writing pass (each file twice).
    first = _export_outside_dagster(p, ddb)
    manifest, keys = _data_file_keys(p, ddb, s3, first)
    recorder.start()
    staged = _staged(_validate(p, first), names)
    assert recorder.gets(keys) == {k: 2 for k in keys} and parsed_here == []
    assert staged.startswith("400 rows in ") and staged.endswith(
        f" data files (2 passes in {where} (a profile pass, then the writing pass): a new table (no stored schema "
        f"to plan from)); the lake table's run commits them"), staged
    recorder.start()
    mat = _materialize(p)
    assert recorder.gets(keys) == {} and parsed_here == []  # the commit reads the manifests only
    assert mat.metadata["conversion"].value.startswith("read by raw_export, not here: ")
    assert mat.metadata["table_rows"].value == 400

    # The same table as the local runner's (rows, values, schema, partitions).
    options = names.settings.convert_options(names.table, s3=resources["lake"].s3_options())
    local = convert_export(manifest, p["tmp"] / "by_local" / names.name,
                           dataclasses.replace(options, runner=RunnerOptions(), catalog=type(options.catalog)()))
    by_spark = resources["lake"].table(names.name)
    by_local = local.commit.table
    assert by_spark.schema() == by_local.schema() and by_spark.spec() == by_local.spec()
    key_columns = _key_columns(local)
    assert _sorted_rows(by_spark, key_columns).equals(_sorted_rows(by_local, key_columns))
    parsed_here.clear()  # the local runner's reads, just now

    # A known table: planned from its schema and the first export's profile, read once, on the cluster.
    ddb.put_item(TableName=p["table"], Item={"product_id": {"S": "X"}, "review_id": {"S": "Y"},
                                            "year": {"N": "2015"}})
    second = _export_outside_dagster(p, ddb)
    _, keys = _data_file_keys(p, ddb, s3, second)
    recorder.start()
    staged = _staged(_validate(p, second), names)
    assert recorder.gets(keys) == {k: 1 for k in keys} and parsed_here == []
    assert f"(one pass in {where}: planned from the table's schema and export {first}'s profile)" in staged, staged
    assert _materialize(p).metadata["table_rows"].value == 401

    # A misfit (an attribute the plan lacks): the one pass's files go, and a writing pass planned
    # from the profile the one pass saw follows (no profile pass); the path says why.
    ddb.put_item(TableName=p["table"], Item={"product_id": {"S": "X"}, "review_id": {"S": "Z"},
                                            "brand_new": {"S": "attribute"}, "year": {"N": "2015"}})
    third = _export_outside_dagster(p, ddb)
    _, keys = _data_file_keys(p, ddb, s3, third)
    recorder.start()
    staged = _staged(_validate(p, third), names)
    assert recorder.gets(keys) == {k: 2 for k in keys} and parsed_here == []
    assert f"(2 passes in {where}: its items need columns the plan lacked (" in staged and "brand_new" in staged \
           and "the export was read again, planned from the profile the first pass saw)" in staged, staged
    mat = _materialize(p)
    assert mat.metadata["table_rows"].value == 402
    assert "brand_new" in {f.name for f in resources["lake"].table(names.name).schema().fields}
    # the misfit's files left nothing behind: every data file is one a snapshot holds
    removed, _ = remove_orphan_files(resources["lake"].table(names.name), timedelta(0),
                                     resources["lake"].s3_options())
    assert [r for r in removed if r.endswith(".parquet")] == []


@needs_spark
def test_a_bad_line_fails_raw_exports_check_with_file_and_line_and_stages_nothing(
        spark_platform: dict[str, Any], ddb: Any, s3: Any, parsed_here: list[str]) -> None:
    p = spark_platform
    names, bucket = p["names"], p["bucket"]
    export_id = _export_outside_dagster(p, ddb)
    description = ddb.describe_export(ExportArn=f"{p['arn']}/export/{export_id}")["ExportDescription"]
    folder = description["ExportManifest"].rsplit("/", 1)[0]
    files = s3.get_object(Bucket=bucket, Key=f"{folder}/manifest-files.json")["Body"].read().decode()
    lines = [json.loads(line) for line in files.splitlines() if line]
    entry = max(lines, key=lambda e: e["itemCount"])
    items = gzip.decompress(s3.get_object(Bucket=bucket, Key=entry["dataFileS3Key"])["Body"].read()).split(b"\n")
    items[2] = items[2][:-7]  # line 3 cut short; the manifests kept consistent, so the parse finds it
    doctored = gzip.compress(b"\n".join(items))
    s3.put_object(Bucket=bucket, Key=entry["dataFileS3Key"], Body=doctored)
    entry["md5Checksum"] = base64.b64encode(hashlib.md5(doctored).digest()).decode()
    new_files = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines).encode()
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.json", Body=new_files)
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.md5",
                  Body=base64.b64encode(hashlib.md5(new_files).digest()))

    result = _validate(p, export_id)
    assert not result.success and parsed_here == []
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    error = checks["checksums_verified"].metadata["error"].value
    assert not checks["checksums_verified"].passed
    assert error.startswith(f"s3://{bucket}/{entry['dataFileS3Key']}:3: malformed JSON"), error
    table_root = p["lake"] / names.name
    assert p["defs"].resources["lake"].table(names.name) is None  # nothing committed
    assert list(table_root.rglob("*.parquet")) == [] and list(table_root.rglob("_staged/*.json")) == []
