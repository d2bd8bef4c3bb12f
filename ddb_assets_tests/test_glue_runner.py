"""The glue runner end to end against the local world: the job's wheel and script uploaded by
`ddb-assets shard package`, the Glue job created with the ordinary API, and each pass a real
StartJobRun that the world runs as a local spark-submit (local/glue_jobs.py). The export is read
from, and the table's files written to, the world's S3; the committed table is the one the local
runner gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ddb_assets.defs.glue_pipes import pipes_glue_launcher
from ddb_assets.lake.catalog import CatalogConfig
from ddb_assets.lake.catalog import load_table
from ddb_assets.lake.convert import ConvertOptions, convert_export, lake_target, profile_export
from ddb_assets.lake.unique_keys import DuplicateKey
from ddb_assets.lake.shards.options import RunnerOptions
from ddb_assets.lake.shards.glue import Boto3Launcher, job_run_params
from ddb_assets_tests import doctor
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.test_shards import KEYS, _key_columns, _one_key_in_two_files, _sorted_rows, needs_spark


@pytest.mark.fast
def test_the_settings_give_the_glue_runner_its_job_and_staging_and_name_what_is_missing(tmp_path: Path) -> None:
    from ddb_assets.settings import ConfigError, load_settings

    base = "lake_root: ./lake\ntables:\n  - table: reviews\n    export_bucket: ddb-exports\n"
    path = tmp_path / "c.yaml"
    wheel = "s3://assets/ddb_assets-0.1.0-py3-none-any.whl"
    path.write_text(base + "runner: glue\nglue:\n  job: shards\n  staging: s3://assets/staging\n"
                           f"  worker_type: G.2X\n  workers: 10\n  shards: 40\n"
                           f"  arguments: {{--additional-python-modules: {wheel}}}\n")
    settings = load_settings(path)
    runner = settings.convert_options(settings.tables[0]).runner
    assert runner == RunnerOptions(kind="glue", shards=40, staging="s3://assets/staging", glue_job="shards",
                                   glue_worker_type="G.2X", glue_workers=10,
                                   glue_arguments=(("--additional-python-modules", wheel),))
    assert job_run_params(runner, "s3://assets/staging/r/round-0.json") == {
        "JobName": "shards", "WorkerType": "G.2X", "NumberOfWorkers": 10,
        "Arguments": {"--additional-python-modules": wheel,
                      "--ddb_assets_round": "s3://assets/staging/r/round-0.json"}}
    for block, missing in [("glue:\n  staging: s3://assets/staging\n", "glue.job"),
                           ("glue:\n  job: shards\n  staging: /tmp/staging\n", "glue.staging")]:
        path.write_text(base + "runner: glue\n" + block)
        with pytest.raises(ConfigError) as raised:
            load_settings(path)
        assert missing in str(raised.value)


def _upload(s3: Any, folder: Path, bucket: str, prefix: str) -> str:
    """The export folder (``.../AWSDynamoDB/<id>``) uploaded under ``prefix``, keys as AWS lays them out."""
    root = folder.parent.parent
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(root).as_posix()}", Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}/{folder.relative_to(root).as_posix()}"


def _glue_job(world: Any, bucket: str, script: str, wheel: str) -> str:
    name = unique("ddb-assets-shards")
    world.client("glue").create_job(
        Name=name, Role="arn:aws:iam::123456789012:role/ddb-assets-glue", GlueVersion="5.0", WorkerType="G.1X",
        NumberOfWorkers=2, Command={"Name": "glueetl", "PythonVersion": "3", "ScriptLocation": script},
        DefaultArguments={"--additional-python-modules": wheel})
    return name


@pytest.fixture(scope="module")
def packaged(world: Any) -> tuple[str, str]:
    """`ddb-assets shard package` once for the module: (script URI, wheel URI) in the world's S3."""
    s3 = world.client("s3")
    bucket = unique("glue-assets")
    s3.create_bucket(Bucket=bucket)
    with world.environment():
        done = run_cli("shard", "package", "--to", f"s3://{bucket}/ddb-assets/")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.startswith(("wheel", "script")))
    script, wheel = lines["script"].strip(), lines["wheel"].strip()
    assert script == f"s3://{bucket}/ddb-assets/glue_job.py" and wheel.endswith("-py3-none-any.whl")
    assert f"--additional-python-modules {wheel}" in done.stdout
    key = wheel[len(f"s3://{bucket}/"):]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read()[:2] == b"PK"  # a zip: the wheel
    return script, wheel


@needs_spark
def test_the_glue_runner_converts_through_glue_job_runs_as_the_local_runner_does(
        world: Any, aws_env: dict[str, str], s3: Any, bucket: str, packaged: tuple[str, str], tmp_path: Path) -> None:
    script, wheel = packaged
    job = _glue_job(world, bucket, script, wheel)
    folder = doctor.make_export(tmp_path / "export", items=2500, files=4, seed=5)
    source = _upload(s3, folder, bucket, "exports/reviews")
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")
    local = convert_export(folder, tmp_path / "lake" / "by_local", ConvertOptions(partition_by="year", workers=1))
    # With the export's profile (the Dagster raw_export asset's) the conversion is one pass: one job
    # run (a Spark application takes tens of seconds to start here). The profile pass is the same
    # engine call, and the spark runner's test covers it.
    _, known = profile_export(folder, ConvertOptions(workers=1))
    runner = RunnerOptions(kind="glue", shards=2, staging=f"s3://{bucket}/staging", glue_job=job)
    events: list[tuple[str, dict]] = []
    # With the key attributes, the key check is a job run of its own, on the files in the world's S3.
    glued = convert_export(source, f"s3://{bucket}/lake/reviews",
                           ConvertOptions(partition_by="year", catalog=catalog, runner=runner, key_attributes=KEYS),
                           known=known, progress=lambda kind, info: events.append((kind, info)))

    # two job runs (the writing pass, the key check), run for real, succeeded
    runs = world.client("glue").get_job_runs(JobName=job)["JobRuns"]
    assert len(runs) == 2 and all(r["JobRunState"] == "SUCCEEDED" for r in runs)
    assert all(r["Arguments"]["--ddb_assets_round"].startswith(f"s3://{bucket}/staging/") for r in runs)
    assert all(r["Arguments"]["--additional-python-modules"] == wheel for r in runs)  # the job's defaults kept
    assert glued.shards == 2 and dict(events)["sharded"]["runner"] == "glue"
    # the shards wrote the table's files into the world's S3, under the table's location
    files = [task.file.file_path for task in glued.commit.table.scan().plan_files()]
    assert files and all(f.startswith(f"s3://{bucket}/lake/reviews/data/year=") for f in files)
    # the same table as the local runner's: rows, values, schema, partitions
    assert glued.commit.rows == local.commit.rows == 2500
    assert {k: v["rows"] for k, v in glued.partitions.items()} == {k: v["rows"] for k, v in local.partitions.items()}
    assert glued.commit.table.schema() == local.commit.table.schema()
    keys = _key_columns(local)
    expected, got = _sorted_rows(local.commit.table, keys), _sorted_rows(glued.commit.table, keys)
    assert got.schema.equals(expected.schema, check_metadata=True) and got.equals(expected)
    # the staging folder of a run that succeeded is removed (pyarrow keeps an empty marker of its parent)
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="staging/").get("Contents", [])]
    assert [key for key in left if not key.endswith("/")] == []


@needs_spark
def test_the_glue_runner_refuses_a_key_held_in_two_shards_and_commits_nothing(
        world: Any, aws_env: dict[str, str], s3: Any, bucket: str, packaged: tuple[str, str], tmp_path: Path) -> None:
    script, wheel = packaged
    job = _glue_job(world, bucket, script, wheel)
    folder = doctor.make_export(tmp_path / "export", items=800, files=2, seed=17)
    key = _one_key_in_two_files(folder)
    source = _upload(s3, folder, bucket, "exports/twice")
    _, known = profile_export(folder, ConvertOptions(workers=1))
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")
    runner = RunnerOptions(kind="glue", shards=2, staging=f"s3://{bucket}/staging", glue_job=job)
    with pytest.raises(DuplicateKey) as raised:
        convert_export(source, f"s3://{bucket}/lake/twice",
                       ConvertOptions(catalog=catalog, runner=runner, key_attributes=KEYS), known=known)
    # the driver names where the two items are, as the export's S3 objects: each data file's first line
    first, second = (f"{source}/data/{doctor.data_path(folder, entry).name}"
                     for entry in doctor.manifest_lines(folder)[:2])
    assert str(raised.value) == (
        f"{source}: 2 items have the primary key product_id={key['product_id']['S']!r}, "
        f"review_id={key['review_id']['S']!r}: {first} line 1 and {second} line 1; a DynamoDB table holds one "
        f"item per key (a damaged or assembled export?)")
    runs = world.client("glue").get_job_runs(JobName=job)["JobRuns"]
    assert len(runs) == 2 and all(r["JobRunState"] == "SUCCEEDED" for r in runs)  # the writing pass, the check
    target = lake_target(f"s3://{bucket}/lake/twice", ConvertOptions(catalog=catalog))
    assert load_table(target.catalog, *target.identifier) is None  # nothing committed
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="lake/twice/").get("Contents", [])]
    assert [k for k in left if k.endswith(".parquet")] == []  # and the shards' files removed


@needs_spark
def test_a_glue_job_run_that_fails_reports_glues_state_and_error_message(
        world: Any, aws_env: dict[str, str], bucket: str, packaged: tuple[str, str]) -> None:
    script, wheel = packaged
    job = _glue_job(world, bucket, script, wheel)
    round_uri = f"s3://{bucket}/staging/nothing-here/round-0.json"
    runner = RunnerOptions(kind="glue", staging=f"s3://{bucket}/staging", glue_job=job)
    job_run = Boto3Launcher(poll_seconds=1)(job_run_params(runner, round_uri))
    assert job_run["JobRunState"] == "FAILED"
    assert "nothing-here/round-0.json" in job_run["ErrorMessage"], job_run["ErrorMessage"]


@needs_spark
def test_inside_dagster_the_job_run_is_followed_by_the_pipes_client_and_its_messages_reach_the_run(
        world: Any, aws_env: dict[str, str], s3: Any, bucket: str, packaged: tuple[str, str], tmp_path: Path) -> None:
    script, wheel = packaged
    job = _glue_job(world, bucket, script, wheel)
    folder = doctor.make_export(tmp_path / "export", items=600, files=2, seed=8)
    source = _upload(s3, folder, bucket, "exports/pipes")
    _, known = profile_export(folder, ConvertOptions(workers=1))
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")

    @dg.asset
    def reviews(context):  # type: ignore[no-untyped-def]  # (a string annotation, which Dagster cannot resolve)
        staging = f"s3://{bucket}/staging"
        runner = RunnerOptions(kind="glue", shards=2, staging=staging, glue_job=job,
                               glue_launcher=pipes_glue_launcher(context, staging))
        result = convert_export(source, f"s3://{bucket}/lake/pipes", ConvertOptions(catalog=catalog, runner=runner),
                                known=known)
        return dg.MaterializeResult(metadata={"rows": result.commit.rows})

    instance = dg.DagsterInstance.ephemeral()
    outcome = dg.materialize([reviews], instance=instance)
    assert outcome.success
    materialized = outcome.asset_materializations_for_node("reviews")[0]
    assert materialized.metadata["rows"].value == 600
    messages = [entry.user_message for entry in instance.all_logs(outcome.run_id)]
    run_id = world.client("glue").get_job_runs(JobName=job)["JobRuns"][0]["Id"]
    assert any(f"Started AWS Glue job {job} run: {run_id}" in m for m in messages)  # PipesGlueClient's own
    assert any("2 shards done: 600 items read, 600 rows written" in m for m in messages), messages  # the job's


def test_cli_runner_glue_refuses_what_it_lacks_as_usage_errors(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=20, files=1)
    lacking = run_cli("convert", str(folder), str(tmp_path / "lake" / "t"), "--runner", "glue",
                      "--staging", "s3://assets/staging")
    assert lacking.returncode == 2 and "runner glue needs the Glue job's name" in lacking.stderr
    local_staging = run_cli("convert", str(folder), str(tmp_path / "lake" / "t"), "--runner", "glue",
                            "--glue-job", "shards", "--staging", str(tmp_path / "staging"))
    assert local_staging.returncode == 2 and "needs an s3:// staging folder" in local_staging.stderr
    assert not (tmp_path / "lake").exists()
    packaged = run_cli("shard", "package", "--to", str(tmp_path / "assets"))
    assert packaged.returncode == 2 and "is not an s3:// folder" in packaged.stderr
