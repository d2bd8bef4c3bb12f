"""The ``glue`` runner: each pass of a conversion is one run of an AWS Glue Spark job (Glue 5.x,
Python 3.11) whose script is the package's own (lake/shards/glue_job.py, uploaded with the
package's wheel by ``ddb-assets shard package``).

This process (the driver) writes the pass's shard specs and a round file listing them to the
``s3://`` staging folder, starts the job run with ``--ddb_assets_round <round URI>`` and follows
it to its end: with boto3 (``StartJobRun``, then ``GetJobRun`` every few seconds) from the CLI, or
with dagster-aws's ``PipesGlueClient`` inside Dagster (a ``glue_launcher`` the assets pass). The
job maps ``run_shard_document`` over the specs with Spark (one task per shard, retried by Spark)
and writes the collected results beside the round file; the driver commits them (driver.py).

A job run that ends in any state but SUCCEEDED fails the conversion with Glue's ErrorMessage; a
shard that kept failing fails it with its error; the staging folder is then kept, for
``ddb-assets shard run --spec URI``.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Protocol

import orjson

from ddb_assets.exports.storage import Location, resolve
from ddb_assets.lake.shards.spec import ShardFailed, ShardResult, ShardSpec, round_results

RESULTS_FORMAT = "ddb_assets.shard-results/1"  # as lake/shards/spark_job.py writes it
ROUND_ARGUMENT = "--ddb_assets_round"
FINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED")
POLL_SECONDS = 5.0  # GetJobRun's pace (PipesGlueClient's too); Glue reports state changes in seconds


class GlueLauncher(Protocol):
    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        """Start a job run with StartJobRun's ``params``, follow it to a final state, and return
        its GetJobRun ``JobRun`` (``Id``, ``JobRunState``, ``ErrorMessage``)."""
        ...


class Boto3Launcher:
    """StartJobRun, then GetJobRun every ``poll_seconds`` until the run ends (the CLI's way)."""

    def __init__(self, client: Any = None, poll_seconds: float = POLL_SECONDS):
        self.client, self.poll_seconds = client, poll_seconds

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        import boto3

        client = self.client or boto3.client("glue")
        run_id = client.start_job_run(**params)["JobRunId"]
        wait = 1.0  # then 2, 4, ... up to poll_seconds: a short run is seen ending soon
        while True:
            job_run = client.get_job_run(JobName=params["JobName"], RunId=run_id)["JobRun"]
            if job_run["JobRunState"] in FINAL_STATES:
                return dict(job_run)
            time.sleep(min(wait, self.poll_seconds))
            wait *= 2


def job_run_params(runner: Any, round_uri: str) -> dict[str, Any]:
    """StartJobRun's parameters for one round: the job, its worker type and count when set, the
    configured extra arguments and the round file."""
    params: dict[str, Any] = {"JobName": runner.glue_job,
                              "Arguments": {**dict(runner.glue_arguments), ROUND_ARGUMENT: round_uri}}
    if runner.glue_worker_type:
        params["WorkerType"] = runner.glue_worker_type
    if runner.glue_workers:
        params["NumberOfWorkers"] = runner.glue_workers
    return params


class GlueEngine:
    """The Glue job runs of one conversion: ``with GlueEngine(options, run) as engine:
    engine.run(specs)`` per pass. ``options``: the conversion's ConvertOptions (its ``runner``
    and ``s3``)."""

    def __init__(self, options: Any, run: str):
        self.runner, self.s3, self.run_id = options.runner, options.s3, run
        self.launch: GlueLauncher = self.runner.glue_launcher or Boto3Launcher()
        self.folder: Location = resolve(self.runner.staging, self.s3).join(run)
        self.rounds = 0

    def __enter__(self) -> "GlueEngine":
        return self

    def run(self, specs: list[ShardSpec], options: Any = None) -> list[ShardResult]:
        """Run one pass's ``specs`` as one job run; their results. Raises ShardFailed when the job
        run did not succeed (its state and Glue's ErrorMessage) or a task kept failing."""
        number = self.rounds
        self.rounds += 1
        uris = []
        for spec in specs:
            location = self.folder.join(f"round-{number}", f"shard-{spec.shard:05d}.json")
            location.write_bytes(spec.to_json())
            uris.append(location.uri)
        request = self.folder.join(f"round-{number}.json")
        request.write_bytes(orjson.dumps({"specs": uris}))
        job_run = self.launch(job_run_params(self.runner, request.uri))
        state = job_run.get("JobRunState")
        if state != "SUCCEEDED":
            raise ShardFailed(f"Glue job {self.runner.glue_job} run {job_run.get('Id', '?')} ended {state}: "
                              f"{job_run.get('ErrorMessage') or 'no error message'} (its specs: {request.uri})")
        results = self.folder.join(f"round-{number}.results.json")
        if not results.exists():
            raise ShardFailed(f"Glue job {self.runner.glue_job} run {job_run.get('Id', '?')} succeeded but wrote "
                              f"no {results.uri}: is the job's script the one `ddb-assets shard package` uploads?")
        return round_results(orjson.loads(results.read_bytes()), results.uri)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None or not issubclass(kind, ShardFailed):
            try:
                self.folder.fs.delete_dir(self.folder.path)
            except OSError:
                pass  # staging left behind costs a few KB; the conversion's outcome stands
        # When a job run failed, the specs stay for `ddb-assets shard run`.


__all__ = ["Boto3Launcher", "GlueEngine", "GlueLauncher", "job_run_params"]
