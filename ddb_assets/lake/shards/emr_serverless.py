"""The ``emr_serverless`` runner: each pass of a conversion is one job run on an EMR Serverless
Spark application (EMR 7.x), whose entry point is the package's own job script
(lake/shards/glue_job.py, uploaded by ``ddb-assets shard package``; the same script as the glue
runner's).

The staging and the results are lake/shards/staged.py's: this process (the driver) writes the
pass's shard specs and a round file to the ``s3://`` staging folder, starts the job run with the
round file's URI among the entry point's arguments, follows it to its end, and commits the
results the job wrote beside the round file (driver.py). From the CLI the run is followed with
boto3 (``StartJobRun``, then ``GetJobRun`` every few seconds); inside Dagster with dagster-aws's
``PipesEMRServerlessClient`` (an ``emr_launcher`` the assets pass: defs/emr_pipes.py).

Python code reaches the driver and executors as EMR Serverless documents it: the package's modules
through ``spark.submit.pyFiles`` (the zip ``shard package`` uploads), and its dependencies through
the application's image or a virtualenv archive (``spark.archives``) given in ``emr_spark_conf``.

A job run that ends in any state but SUCCESS fails the conversion with EMR Serverless's
``stateDetails``; a shard that kept failing fails it with its error.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from ddb_assets.lake.shards.glue_job import ROUND_ARGUMENT
from ddb_assets.lake.shards.staged import StagedEngine

FINAL_STATES = ("SUCCESS", "FAILED", "CANCELLED")
POLL_SECONDS = 5.0  # GetJobRun's pace (PipesEMRServerlessClient's too)


class EmrServerlessLauncher(Protocol):
    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        """Start a job run with StartJobRun's ``params``, follow it to a final state, and return
        its GetJobRun ``jobRun`` (``jobRunId``, ``state``, ``stateDetails``)."""
        ...


class Boto3Launcher:
    """StartJobRun, then GetJobRun every ``poll_seconds`` until the run ends (the CLI's way)."""

    def __init__(self, client: Any = None, poll_seconds: float = POLL_SECONDS):
        self.client, self.poll_seconds = client, poll_seconds

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        import boto3

        client = self.client or boto3.client("emr-serverless")
        started = client.start_job_run(**params)
        wait = 1.0  # then 2, 4, ... up to poll_seconds: a short run is seen ending soon
        while True:
            job_run = client.get_job_run(applicationId=started["applicationId"],
                                         jobRunId=started["jobRunId"])["jobRun"]
            if job_run["state"] in FINAL_STATES:
                return dict(job_run)
            time.sleep(min(wait, self.poll_seconds))
            wait *= 2


def spark_submit_parameters(runner: Any) -> str:
    """sparkSubmitParameters: the package's zip as ``spark.submit.pyFiles`` (when set), then the
    configured ``--conf key=value`` pairs, in order."""
    pairs = ([("spark.submit.pyFiles", runner.emr_py_files)] if runner.emr_py_files else []) + list(runner.emr_spark_conf)
    return " ".join(f"--conf {key}={value}" for key, value in pairs)


def job_run_params(runner: Any, round_uri: str, name: str | None = None) -> dict[str, Any]:
    """StartJobRun's parameters for one round: the application, the job runtime role, and a
    ``sparkSubmit`` job driver running the entry point with the round file's URI."""
    submit: dict[str, Any] = {"entryPoint": runner.emr_entry_point, "entryPointArguments": [ROUND_ARGUMENT, round_uri]}
    parameters = spark_submit_parameters(runner)
    if parameters:
        submit["sparkSubmitParameters"] = parameters
    params: dict[str, Any] = {"applicationId": runner.emr_application, "executionRoleArn": runner.emr_role,
                              "jobDriver": {"sparkSubmit": submit}}
    if name:
        params["name"] = name
    return params


class EmrServerlessEngine(StagedEngine):
    """The EMR Serverless job runs of one conversion (lake/shards/staged.py): ``with
    EmrServerlessEngine(options, run) as engine: engine.run(specs)`` per pass."""

    def __init__(self, options: Any, run: str):
        super().__init__(options, run)
        self.launch: EmrServerlessLauncher = self.runner.emr_launcher or Boto3Launcher()

    def launch_round(self, round_uri: str) -> tuple[str, str | None]:
        job_run = self.launch(job_run_params(self.runner, round_uri, f"ddb-assets {self.run_id} round {self.rounds - 1}"))
        name = f"EMR Serverless application {self.runner.emr_application} job run {job_run.get('jobRunId', '?')}"
        state = job_run.get("state")
        if state == "SUCCESS":
            return name, None
        return name, f"{state}: {job_run.get('stateDetails') or 'no state details'}"


__all__ = ["Boto3Launcher", "EmrServerlessEngine", "EmrServerlessLauncher", "job_run_params",
           "spark_submit_parameters"]
