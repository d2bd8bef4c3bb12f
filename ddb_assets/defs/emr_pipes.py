"""The emr_serverless runner inside a Dagster run: each job run is started and followed by
dagster-aws's ``PipesEMRServerlessClient``, so the job's Pipes messages (its shard counts, its
errors), the driver's stdout and stderr, and the job run's id reach the run's logs and metadata.

As the client is built for: the context goes into the driver's environment
(``spark.emr-serverless.driverEnv``, ``PipesEnvContextInjector``), and the job writes its messages
on stdout, which EMR Serverless ships to CloudWatch Logs, where ``PipesCloudWatchMessageReader``
reads them once the run ends. So the job run enables CloudWatch logging (``configurationOverrides``)
unless the runner's params already say how; the job's script opens Pipes with dagster-pipes'
defaults (lake/shards/glue_job.py)."""

from __future__ import annotations

from typing import Any

import boto3
import dagster as dg

from ddb_assets.exports.storage import S3Options

POLL_SECONDS = 5.0


def pipes_emr_serverless_launcher(context: dg.AssetExecutionContext | dg.OpExecutionContext,
                                  s3: S3Options | None = None, poll_seconds: float = POLL_SECONDS) -> Any:
    """An ``emr_launcher`` for RunnerOptions (lake/shards/emr_serverless.py's launcher):
    StartJobRun's params in, the finished GetJobRun ``jobRun`` out. ``s3``: the endpoint, region
    and keys (the local world's) the EMR Serverless and CloudWatch Logs clients use too."""
    from dagster_aws.pipes import PipesCloudWatchMessageReader, PipesEMRServerlessClient

    settings = (s3 or S3Options()).with_environment()
    keys = ({"aws_access_key_id": settings.access_key, "aws_secret_access_key": settings.secret_key}
            if settings.access_key and settings.secret_key else {})
    emr = boto3.client("emr-serverless", region_name=settings.region, endpoint_url=settings.endpoint_url, **keys)
    logs = boto3.client("logs", region_name=settings.region, endpoint_url=settings.endpoint_url, **keys)
    recording = _RunIds(emr)
    client = PipesEMRServerlessClient(client=recording,  # type: ignore[arg-type]
                                      message_reader=PipesCloudWatchMessageReader(client=logs),
                                      poll_interval=poll_seconds)

    def launch(params: dict[str, Any]) -> dict[str, Any]:
        params = dict(params)
        overrides = dict(params.get("configurationOverrides") or {})
        overrides.setdefault("monitoringConfiguration", {"cloudWatchLoggingConfiguration": {"enabled": True}})
        params["configurationOverrides"] = overrides
        before = len(recording.started)
        try:
            client.run(context=context, start_job_run_params=params)  # type: ignore[arg-type]
        except RuntimeError:
            if len(recording.started) == before:
                raise
            # The client raises for any state but SUCCESS; the engine reports EMR Serverless's own answer.
        application, job_run = recording.started[-1]
        return dict(emr.get_job_run(applicationId=application, jobRunId=job_run)["jobRun"])

    return launch


class _RunIds:
    """The EMR Serverless client, remembering the job runs it started (the client's error names
    none)."""

    def __init__(self, emr: Any):
        self.emr, self.started = emr, []

    def start_job_run(self, **params: Any) -> Any:
        answer = self.emr.start_job_run(**params)
        self.started.append((answer["applicationId"], answer["jobRunId"]))
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.emr, name)


__all__ = ["pipes_emr_serverless_launcher"]
