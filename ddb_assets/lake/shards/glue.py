"""The ``glue`` runner: each pass of a conversion is one run of an AWS Glue Spark job (Glue 5.x,
Python 3.11) whose script is the package's own (lake/shards/glue_job.py, uploaded with the
package's wheel by ``ddb-assets shard package``).

This process (the driver) writes the pass's shard specs and a round file listing them to the
``s3://`` staging folder, starts the job run with ``--ddb_assets_round <round URI>`` and follows
it to its end: with boto3 (``StartJobRun``, then ``GetJobRun`` every few seconds) from the CLI, or
with dagster-aws's ``PipesGlueClient`` inside Dagster (a ``glue_launcher`` the assets pass). The
job maps the specs over Spark tasks (one per shard, retried by Spark), each writing its result
beside its spec, and writes the records naming them beside the round file
(lake/shards/rounds.py); the driver reads those results side by side and commits them (driver.py).
With key attributes, one more job run checks each key is there once (lake/shards/key_round.py). The
staging and the reading of results are the emr_serverless runner's too (lake/shards/staged.py).

A job run that ends in any state but SUCCEEDED fails the conversion with Glue's ErrorMessage; a
shard that kept failing fails it with its error; the staging folder is then kept, for
``ddb-assets shard run --spec URI``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from ddb_assets.lake.shards.staged import StagedEngine

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


class GlueEngine(StagedEngine):
    """The Glue job runs of one conversion (lake/shards/staged.py): ``with GlueEngine(options, run)
    as engine: engine.run(specs)`` per pass."""

    def __init__(self, options: Any, run: str):
        super().__init__(options, run)
        self.launch: GlueLauncher = self.runner.glue_launcher or Boto3Launcher()

    def launch_round(self, round_uri: str) -> tuple[str, str | None]:
        job_run = self.launch(job_run_params(self.runner, round_uri))
        name = f"Glue job {self.runner.glue_job} run {job_run.get('Id', '?')}"
        state = job_run.get("JobRunState")
        if state == "SUCCEEDED":
            return name, None
        return name, f"{state}: {job_run.get('ErrorMessage') or 'no error message'}"


__all__ = ["Boto3Launcher", "GlueEngine", "GlueLauncher", "job_run_params"]
