"""The glue runner inside a Dagster run: each Glue job run is started and followed by dagster-aws's
``PipesGlueClient``, so the job's Pipes messages (its shard counts, its errors) and the job run's id
and console URL reach the run's logs and metadata. Context and messages pass through the staging
bucket (``PipesS3ContextInjector``, ``PipesS3MessageReader``); the job's script opens Pipes with
the matching loader and writer (lake/shards/glue_job.py)."""

from __future__ import annotations

from typing import Any

import boto3
import dagster as dg

from ddb_assets.exports.storage import S3Options, s3_client

MESSAGE_INTERVAL_SECONDS = 2.0


def pipes_glue_launcher(context: dg.AssetExecutionContext | dg.OpExecutionContext, staging: str,
                        s3: S3Options | None = None) -> Any:
    """A ``glue_launcher`` for RunnerOptions (lake/shards/glue.py's GlueLauncher): StartJobRun's
    params in, the finished ``JobRun`` out. ``staging``: the runner's ``s3://bucket/prefix``; its
    bucket carries the Pipes context and messages. ``s3``: the endpoint and keys (the local world's)."""
    from dagster_aws.pipes import PipesGlueClient, PipesS3ContextInjector, PipesS3MessageReader

    bucket = staging[len("s3://"):].split("/", 1)[0]
    settings = (s3 or S3Options()).with_environment()
    objects = s3_client(settings)
    keys = ({"aws_access_key_id": settings.access_key, "aws_secret_access_key": settings.secret_key}
            if settings.access_key and settings.secret_key else {})
    glue = boto3.client("glue", region_name=settings.region, endpoint_url=settings.endpoint_url, **keys)
    recording = _RunIds(glue)
    client = PipesGlueClient(context_injector=PipesS3ContextInjector(bucket=bucket, client=objects),
                             message_reader=PipesS3MessageReader(bucket=bucket, client=objects,
                                                                 interval=MESSAGE_INTERVAL_SECONDS),
                             client=recording)  # type: ignore[arg-type]

    def launch(params: dict[str, Any]) -> dict[str, Any]:
        before = len(recording.started)
        try:
            client.run(context=context, start_job_run_params=params)
        except RuntimeError:
            if len(recording.started) == before:
                raise
            # PipesGlueClient raises for any state but SUCCEEDED; the engine reports Glue's own answer.
        return dict(glue.get_job_run(JobName=params["JobName"], RunId=recording.started[-1])["JobRun"])

    return launch


class _RunIds:
    """The Glue client, remembering the ids of the job runs it started (PipesGlueClient's error
    names the run only in its text)."""

    def __init__(self, glue: Any):
        self.glue, self.started = glue, []

    def start_job_run(self, **params: Any) -> Any:
        answer = self.glue.start_job_run(**params)
        self.started.append(answer["JobRunId"])
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.glue, name)


__all__ = ["pipes_glue_launcher"]
