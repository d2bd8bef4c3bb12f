"""The emr_serverless runner end to end against the local world: the job's script and the
package's zip uploaded by `ddb-assets shard package`, an EMR Serverless application created with
the ordinary API, and each pass a real StartJobRun that the world runs as a local spark-submit
(local/emr_serverless_jobs.py), followed with GetJobRun from the CLI and with dagster-aws's
PipesEMRServerlessClient inside Dagster. The export is read from, and the table's files written
to, the world's S3; the committed table is the one the local runner gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import pytest

from ddb_assets.defs.emr_pipes import pipes_emr_serverless_launcher
from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.reader import open_export
from ddb_assets.lake.catalog import CatalogConfig, load_table
from ddb_assets.lake.convert import ConvertOptions, convert_export, lake_target, profile_export
from ddb_assets.lake.shards.emr_serverless import Boto3Launcher, job_run_params
from ddb_assets.lake.shards.options import RunnerOptions
from ddb_assets_tests import doctor
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.test_glue_runner import _upload
from ddb_assets_tests.test_shards import _key_columns, _sorted_rows, needs_spark

ROLE = "arn:aws:iam::123456789012:role/ddb-assets-emr-serverless"


@pytest.mark.fast
def test_the_settings_give_the_emr_serverless_runner_what_it_needs_and_name_what_is_missing(tmp_path: Path) -> None:
    from ddb_assets.settings import ConfigError, load_settings

    base = "lake_root: ./lake\ntables:\n  - table: reviews\n    export_bucket: ddb-exports\n"
    block = ("emr_serverless:\n  application_id: 00fabc\n  execution_role_arn: " + ROLE + "\n"
             "  entry_point: s3://assets/glue_job.py\n  py_files: s3://assets/ddb_assets-0.1.0-py3-none-any.zip\n"
             "  staging: s3://assets/staging\n  shards: 40\n"
             "  spark_conf: {spark.archives: 's3://assets/venv.tar.gz#environment', spark.executor.cores: '4'}\n")
    path = tmp_path / "c.yaml"
    path.write_text(base + "runner: emr_serverless\n" + block)
    settings = load_settings(path)
    runner = settings.convert_options(settings.tables[0]).runner
    assert runner == RunnerOptions(kind="emr_serverless", shards=40, staging="s3://assets/staging",
                                   emr_application="00fabc", emr_role=ROLE, emr_entry_point="s3://assets/glue_job.py",
                                   emr_py_files="s3://assets/ddb_assets-0.1.0-py3-none-any.zip",
                                   emr_spark_conf=(("spark.archives", "s3://assets/venv.tar.gz#environment"),
                                                   ("spark.executor.cores", "4")))
    assert job_run_params(runner, "s3://assets/staging/r/round-0.json", "ddb-assets r round 0") == {
        "applicationId": "00fabc", "executionRoleArn": ROLE, "name": "ddb-assets r round 0",
        "jobDriver": {"sparkSubmit": {
            "entryPoint": "s3://assets/glue_job.py",
            "entryPointArguments": ["--ddb_assets_round", "s3://assets/staging/r/round-0.json"],
            "sparkSubmitParameters": "--conf spark.submit.pyFiles=s3://assets/ddb_assets-0.1.0-py3-none-any.zip "
                                     "--conf spark.archives=s3://assets/venv.tar.gz#environment "
                                     "--conf spark.executor.cores=4"}}}
    for drop, missing in [("  application_id: 00fabc\n", "emr_serverless.application_id"),
                          (f"  execution_role_arn: {ROLE}\n", "emr_serverless.execution_role_arn"),
                          ("  entry_point: s3://assets/glue_job.py\n", "emr_serverless.entry_point"),
                          ("  staging: s3://assets/staging\n", "emr_serverless.staging")]:
        path.write_text(base + "runner: emr_serverless\n" + block.replace(drop, ""))
        with pytest.raises(ConfigError) as raised:
            load_settings(path)
        assert missing in str(raised.value)


@pytest.mark.fast
def test_cli_runner_emr_serverless_refuses_what_it_lacks_and_other_runners_refuse_its_options(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=20, files=1)
    dest = str(tmp_path / "lake" / "t")
    lacking = run_cli("convert", str(folder), dest, "--runner", "emr_serverless", "--emr-application", "00fabc",
                      "--emr-entry-point", "s3://assets/glue_job.py", "--staging", "s3://assets/staging")
    assert lacking.returncode == 2 and "runner emr_serverless needs the job runtime role's ARN" in lacking.stderr
    local_staging = run_cli("convert", str(folder), dest, "--runner", "emr_serverless", "--emr-application", "00fabc",
                            "--emr-role", ROLE, "--emr-entry-point", "s3://assets/glue_job.py",
                            "--staging", str(tmp_path / "staging"))
    assert local_staging.returncode == 2 and "needs an s3:// staging folder" in local_staging.stderr
    misplaced = run_cli("convert", str(folder), dest, "--runner", "glue", "--glue-job", "shards",
                        "--staging", "s3://assets/staging", "--emr-role", ROLE)
    assert misplaced.returncode == 2 and "--emr-role is not for --runner glue" in misplaced.stderr
    assert not (tmp_path / "lake").exists()


@pytest.fixture(scope="module")
def packaged(world: Any) -> tuple[str, str]:
    """`ddb-assets shard package` once for the module: (entry point URI, package zip URI)."""
    s3 = world.client("s3")
    bucket = unique("emr-assets")
    s3.create_bucket(Bucket=bucket)
    with world.environment():
        done = run_cli("shard", "package", "--to", f"s3://{bucket}/ddb-assets/")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.startswith(("script", "modules")))
    script, modules = lines["script"].strip(), lines["modules"].strip()
    assert script == f"s3://{bucket}/ddb-assets/glue_job.py" and modules.endswith("-py3-none-any.zip")
    assert f"--emr-entry-point {script} --emr-py-files {modules}" in done.stdout
    assert s3.get_object(Bucket=bucket, Key=modules[len(f"s3://{bucket}/"):])["Body"].read()[:2] == b"PK"
    return script, modules


@pytest.fixture(scope="module")
def application(world: Any) -> str:
    return world.client("emr-serverless").create_application(name=unique("ddb-assets"), releaseLabel="emr-7.5.0",
                                                             type="SPARK")["applicationId"]


def _job_runs(world: Any, application: str) -> list[dict]:
    return world.client("emr-serverless").list_job_runs(applicationId=application)["jobRuns"]


@needs_spark
def test_the_cli_converts_through_emr_serverless_job_runs_as_the_local_runner_does(
        world: Any, aws_env: dict[str, str], s3: Any, bucket: str, packaged: tuple[str, str], application: str,
        tmp_path: Path) -> None:
    script, modules = packaged
    folder = doctor.make_export(tmp_path / "export", items=2000, files=4, seed=6)
    source = _upload(s3, folder, bucket, "exports/reviews")
    local = convert_export(folder, tmp_path / "lake" / "by_local", ConvertOptions(partition_by="year", workers=1))
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    before = len(_job_runs(world, application))
    done = run_cli("convert", source, f"s3://{bucket}/lake/reviews", "--partition-by", "year", "--catalog", catalog,
                   "--runner", "emr_serverless", "--emr-application", application, "--emr-role", ROLE,
                   "--emr-entry-point", script, "--emr-py-files", modules, "--staging", f"s3://{bucket}/staging",
                   "--shards", "2", timeout=900)
    assert done.returncode == 0, done.stderr
    assert "2 shard tasks on the emr_serverless runner" in done.stdout

    # Two job runs (the profile pass, then the writing pass), run for real, each SUCCESS, with the
    # package's zip as spark.submit.pyFiles and the round file among the entry point's arguments.
    runs = _job_runs(world, application)[before:]
    assert [r["state"] for r in runs] == ["SUCCESS", "SUCCESS"]
    emr = world.client("emr-serverless")
    for run in runs:
        driver = emr.get_job_run(applicationId=application, jobRunId=run["id"])["jobRun"]["jobDriver"]["sparkSubmit"]
        assert driver["entryPoint"] == script
        assert driver["sparkSubmitParameters"] == f"--conf spark.submit.pyFiles={modules}"
        assert driver["entryPointArguments"][0] == "--ddb_assets_round"
        assert driver["entryPointArguments"][1].startswith(f"s3://{bucket}/staging/")

    target = lake_target(f"s3://{bucket}/lake/reviews", ConvertOptions(catalog=CatalogConfig(uri=catalog)))
    table = load_table(target.catalog, *target.identifier)
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert files and all(f.startswith(f"s3://{bucket}/lake/reviews/data/year=") for f in files)
    assert table.schema() == local.commit.table.schema()
    keys = _key_columns(local)
    expected, got = _sorted_rows(local.commit.table, keys), _sorted_rows(table, keys)
    assert got.num_rows == 2000 and got.schema.equals(expected.schema, check_metadata=True) and got.equals(expected)
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="staging/").get("Contents", [])]
    assert [key for key in left if not key.endswith("/")] == []  # the staging of a run that succeeded is removed


@needs_spark
def test_a_job_run_that_fails_reports_emr_serverless_state_and_details(
        world: Any, aws_env: dict[str, str], bucket: str, packaged: tuple[str, str], application: str) -> None:
    script, modules = packaged
    round_uri = f"s3://{bucket}/staging/nothing-here/round-0.json"
    runner = RunnerOptions(kind="emr_serverless", staging=f"s3://{bucket}/staging", emr_application=application,
                           emr_role=ROLE, emr_entry_point=script, emr_py_files=modules)
    job_run = Boto3Launcher(poll_seconds=1)(job_run_params(runner, round_uri))
    assert job_run["state"] == "FAILED"
    assert "nothing-here/round-0.json" in job_run["stateDetails"], job_run["stateDetails"]
    # The dashboard of a failed local run is its output folder: the package's zip was fetched from
    # the world's S3 into it, for spark-submit's --py-files, as EMR Serverless fetches pyFiles.
    url = world.client("emr-serverless").get_dashboard_for_job_run(applicationId=application,
                                                                    jobRunId=job_run["jobRunId"])["url"]
    assert (Path(urlparse(url).path) / modules.rsplit("/", 1)[1]).read_bytes()[:2] == b"PK"
    missing = RunnerOptions(kind="emr_serverless", staging=f"s3://{bucket}/staging", emr_application=application,
                            emr_role=ROLE, emr_entry_point=script, emr_py_files=f"s3://{bucket}/no/such.zip")
    job_run = Boto3Launcher(poll_seconds=1)(job_run_params(missing, round_uri))
    assert job_run["state"] == "FAILED" and f"s3://{bucket}/no/such.zip does not exist" in job_run["stateDetails"]


@needs_spark
def test_a_shard_that_fails_fails_the_run_with_its_file_and_line_and_commits_nothing(
        world: Any, aws_env: dict[str, str], s3: Any, bucket: str, packaged: tuple[str, str], application: str,
        tmp_path: Path) -> None:
    script, modules = packaged
    folder = doctor.make_export(tmp_path / "export", items=900, files=3, seed=4)
    _, known = profile_export(folder, ConvertOptions(workers=1))
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(4, lines[4][:-7]))  # line 5 cut short
    source = _upload(s3, folder, bucket, "exports/damaged")
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")
    runner = RunnerOptions(kind="emr_serverless", shards=3, staging=f"s3://{bucket}/staging",
                           emr_application=application, emr_role=ROLE, emr_entry_point=script, emr_py_files=modules)
    dest = f"s3://{bucket}/lake/damaged"
    with pytest.raises(ExportFormatError) as raised:
        convert_export(open_export(source), dest, ConvertOptions(catalog=catalog, runner=runner), known=known)
    assert raised.value.line == 5 and raised.value.obj.endswith(doctor.data_path(folder, entry).name)
    assert f"{raised.value.obj}:5: malformed JSON" in str(raised.value)
    target = lake_target(dest, ConvertOptions(catalog=catalog))
    assert load_table(target.catalog, *target.identifier) is None  # nothing committed
    written = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="lake/damaged/").get("Contents", [])]
    assert [key for key in written if key.endswith(".parquet")] == []  # and no shard's files left behind


@needs_spark
def test_inside_dagster_the_pipes_client_follows_the_job_run_and_its_messages_reach_the_run(
        world: Any, aws_env: dict[str, str], s3: Any, bucket: str, packaged: tuple[str, str], application: str,
        tmp_path: Path) -> None:
    script, modules = packaged
    folder = doctor.make_export(tmp_path / "export", items=600, files=2, seed=8)
    source = _upload(s3, folder, bucket, "exports/pipes")
    _, known = profile_export(folder, ConvertOptions(workers=1))
    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")

    @dg.asset
    def reviews(context):  # type: ignore[no-untyped-def]  # (a string annotation, which Dagster cannot resolve)
        runner = RunnerOptions(kind="emr_serverless", shards=2, staging=f"s3://{bucket}/staging",
                               emr_application=application, emr_role=ROLE, emr_entry_point=script,
                               emr_py_files=modules, emr_launcher=pipes_emr_serverless_launcher(context, poll_seconds=1))
        result = convert_export(source, f"s3://{bucket}/lake/pipes", ConvertOptions(catalog=catalog, runner=runner),
                                known=known)
        return dg.MaterializeResult(metadata={"rows": result.commit.rows})

    instance = dg.DagsterInstance.ephemeral()
    outcome = dg.materialize([reviews], instance=instance)
    assert outcome.success
    assert outcome.asset_materializations_for_node("reviews")[0].metadata["rows"].value == 600
    messages = [entry.user_message for entry in instance.all_logs(outcome.run_id)]
    run = _job_runs(world, application)[-1]
    assert run["state"] == "SUCCESS"
    assert any(f"EMR Serverless job started with job_run_id {run['id']}" in m for m in messages)  # the client's
    assert any("2 shards done: 600 items read, 600 rows written" in m for m in messages), messages  # the job's
    # The driver's output went where EMR Serverless puts it, and Pipes read the messages from there.
    stream = f"/applications/{application}/jobs/{run['id']}/SPARK_DRIVER/stdout"
    events = world.client("logs").get_log_events(logGroupName="/aws/emr-serverless", logStreamName=stream)["events"]
    assert any("2 shards done" in e["message"] for e in events)
