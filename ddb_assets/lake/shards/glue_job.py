"""ddb-assets-glue-job/1: the script of the AWS Glue Spark job the glue runner starts
(lake/shards/glue.py), and the entry point of the emr_serverless runner's job runs
(lake/shards/emr_serverless.py). ``ddb-assets shard package`` uploads it, with the package it
imports (the wheel for Glue's ``--additional-python-modules``, the zip for EMR Serverless's
``spark.submit.pyFiles``). Glue runs it as

    glue_job.py --JOB_ID ... --JOB_RUN_ID ... --ddb_assets_round s3://STAGING/RUN/round-N.json [...]

and EMR Serverless as ``glue_job.py --ddb_assets_round s3://...`` (its entryPointArguments).

The round file lists shard spec URIs; each spec becomes one Spark task on an executor
(lake/shards/spark_job.py's ``run_round``) that writes its result beside its spec, and the
collected records naming those results go beside the round file, ``round-N.results.json``
(lake/shards/rounds.py). A round file of a key check (lake/shards/key_round.py) is run by the
same function as the spark runner's (``answer_round``), its answer written there too. Started by dagster-aws's
PipesGlueClient (``--dagster-pipes-context`` among the arguments), it reports each shard's
outcome to the Dagster run through Pipes (dagster-pipes, S3 context and messages). Started by
PipesEMRServerlessClient (``DAGSTER_PIPES_CONTEXT`` in the driver's environment, from
``spark.emr-serverless.driverEnv``), it opens Pipes with dagster-pipes' defaults: the context
from that variable, the messages on stdout, which EMR Serverless ships to CloudWatch Logs, where
the client reads them.

The first line is the mark the local world looks for to run this job with spark-submit.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from typing import Any

ROUND_ARGUMENT = "--ddb_assets_round"
PIPES_ARGUMENT = "--dagster-pipes-context"
PIPES_VARIABLE = "DAGSTER_PIPES_CONTEXT"


def argument(argv: list[str], name: str) -> str | None:
    """The value after ``name`` in ``--key value`` arguments (Glue's, or EMR Serverless's
    entryPointArguments); None when absent."""
    for index, value in enumerate(argv[:-1]):
        if value == name:
            return argv[index + 1]
    return None


def _pipes(argv: list[str], stack: ExitStack) -> Any:
    if argument(argv, PIPES_ARGUMENT) is None:
        if PIPES_VARIABLE in os.environ:  # EMR Serverless: the environment, stdout (CloudWatch)
            from dagster_pipes import open_dagster_pipes

            return stack.enter_context(open_dagster_pipes())
        return None
    import boto3
    from dagster_pipes import (PipesCliArgsParamsLoader, PipesS3ContextLoader, PipesS3MessageWriter,
                               open_dagster_pipes)

    s3 = boto3.client("s3")
    return stack.enter_context(open_dagster_pipes(params_loader=PipesCliArgsParamsLoader(),
                                                  context_loader=PipesS3ContextLoader(s3),
                                                  message_writer=PipesS3MessageWriter(s3)))


def _asked(document: dict[str, Any], round_uri: str) -> str:
    if "keys" in document:
        return f"key check of {len(document['keys']['files'])} files from {round_uri}"
    return f"{len(document.get('specs', []))} shard tasks from {round_uri}"


def _report(pipes: Any, answer: dict[str, Any]) -> None:
    """The round's outcome, to the Dagster run."""
    if answer.get("failed"):
        failed = answer["failed"]
        pipes.log.error(f"{failed['where']}: {failed['kind']}: {failed['message']}")
    elif "keys" in answer:
        found = answer["keys"]["duplicate"]
        pipes.log.info(f"key check of {answer['keys']['files']} files: "
                       f"{'a key held ' + str(found['count']) + ' times' if found else 'each key once'}")
    else:
        rows = sum(record["rows"] for record in answer["results"])
        items = sum(record["items"] for record in answer["results"])
        pipes.log.info(f"{len(answer['results'])} shards done: {items:,} items read, {rows:,} rows written")
        pipes.report_custom_message({"shards": len(answer["results"]), "items": items, "rows": rows})


def main(argv: list[str]) -> int:
    import orjson
    from pyspark.sql import SparkSession

    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.shards.spark_job import answer_round

    round_uri = argument(argv, ROUND_ARGUMENT)
    if round_uri is None:
        print(f"glue_job.py: no {ROUND_ARGUMENT} argument: this job is started by the glue or emr_serverless "
              f"runner (ddb-assets convert --runner glue|emr_serverless)", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        pipes = _pipes(argv, stack)
        request = resolve(round_uri)
        document = orjson.loads(request.read_bytes())  # before Spark starts: a wrong round fails fast
        spark = SparkSession.builder.getOrCreate()
        try:
            if pipes is not None:
                pipes.log.info(_asked(document, round_uri))
            answer = answer_round(spark, document)
            results = request.parent().join(request.name[:-len(".json")] + ".results.json")
            results.write_bytes(orjson.dumps(answer))
            if pipes is not None:
                _report(pipes, answer)
        finally:
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
