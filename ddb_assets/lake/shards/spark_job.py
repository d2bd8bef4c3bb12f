"""The Spark application of the spark runner (lake/shards/spark.py), run by spark-submit:

    spark-submit --master MASTER .../ddb_assets/lake/shards/spark_job.py STAGING_URI

It serves the rounds the runner writes to STAGING_URI (local or s3://), in order: ``round-N.json``
lists shard spec URIs; the specs are read here, on the driver, and each becomes one Spark task
(one partition of one element) running on an executor (lake/shards/rounds.py's ``run_task``): it
writes its result document beside its spec and returns a small record naming it. The collected
records go to ``round-N.results.json``; a task that kept failing after Spark's retries is written
there instead, with its shard and error, and the application goes on to the next round. A round
``{"keys": ...}`` is a key check of the files written (lake/shards/key_round.py), answered in
``round-N.results.json`` too. A round ``{"stop": true}`` ends it, and so does the end of the
process that started spark-submit (this script ends with its parent, and waits for a round at
most IDLE_SECONDS).
"""

from __future__ import annotations

import re
import sys
import time

import orjson

# A task's failure reaches the driver as text (Spark's exception, the executor's traceback in it):
# the shard and error are carried between these marks so the driver can report them exactly.
MARK = "@@ddb-assets-shard-failure@@"
POLL_SECONDS = 0.2
IDLE_SECONDS = 6 * 3600  # a round is planned in seconds; a runner gone this long is not coming back


def run_task(element: tuple[int, str, bytes]) -> dict:
    """One shard, on an executor: (shard number, spec URI, spec document) -> the record of its
    result, which it wrote beside the spec (lake/shards/rounds.py)."""
    from pyspark import TaskContext

    from ddb_assets.lake.shards import rounds

    shard, uri, document = element
    context = TaskContext.get()
    attempt = context.attemptNumber() if context is not None else 0
    try:
        return rounds.run_task(uri, document, attempt)
    except Exception as error:  # noqa: BLE001 - raised again, for Spark to retry, with what to report
        failure = {"where": f"shard {shard + 1} (attempt {attempt})", "kind": type(error).__name__,
                   "message": str(error), "spec": uri}
        raise RuntimeError(MARK + orjson.dumps(failure).decode() + MARK) from error


def run_round(context, uris: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """The results document of one round of specs (``uris``): one Spark task a spec; what
    reaches this driver is a small record a task (lake/shards/rounds.py), never a result."""
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.shards.io_pool import in_parallel
    from ddb_assets.lake.shards.rounds import failed_document, results_document

    documents = in_parallel(lambda uri: resolve(uri).read_bytes(), uris)
    elements = [(number, uri, document) for number, (uri, document) in enumerate(zip(uris, documents))]
    try:
        return results_document(context.parallelize(elements, len(elements)).map(run_task).collect())
    except Exception as error:  # noqa: BLE001 - a job that failed: reported through the results file
        return failed_document(failure_of(error, "the Spark job"))


def failure_of(error: BaseException, where: str) -> dict:
    """A failed Spark job's error as a results document's ``failed``: the task's own (between the
    marks, as the task raised it), else ``where`` and the first line of Spark's."""
    found = re.search(re.escape(MARK) + "(.*?)" + re.escape(MARK), str(error), re.S)
    if found:
        return orjson.loads(found.group(1))
    return {"where": where, "kind": type(error).__name__, "message": (str(error).strip().splitlines() or [""])[0]}


def answer_round(spark, document: dict) -> dict:  # type: ignore[no-untyped-def]
    """The results document of the round ``document`` (shard specs, or a key check), for the
    spark runner's application and the glue and emr_serverless job runs alike. A round of
    neither kind (a driver of another version) is answered as a failed one, naming its fields."""
    from ddb_assets.lake.shards.key_round import run_key_round
    from ddb_assets.lake.shards.rounds import failed_document

    if "keys" in document:
        return run_key_round(spark, document["keys"])
    if "specs" in document:
        return run_round(spark.sparkContext, document["specs"])
    return failed_document({"where": "the round", "kind": "UnknownRound",
                            "message": f"a round of {', '.join(sorted(document)) or 'nothing'}: this job runs "
                                       f"shard specs and key checks (upload this package with `ddb-assets shard "
                                       f"package`)"})


def main(argv: list[str]) -> int:
    from pyspark.sql import SparkSession

    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.lifetime import die_with_parent

    die_with_parent(None)  # spark-submit's JVM started this driver: it ends with it
    staging = resolve(argv[1])
    spark = SparkSession.builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    number, waited_since = 0, time.monotonic()
    try:
        while time.monotonic() - waited_since < IDLE_SECONDS:
            request = staging.join(f"round-{number}.json")
            if not request.exists():
                time.sleep(POLL_SECONDS)
                continue
            document = orjson.loads(request.read_bytes())
            if document.get("stop"):
                return 0
            answer = answer_round(spark, document)
            partial = staging.join(f"round-{number}.results.json.partial")
            partial.write_bytes(orjson.dumps(answer))
            staging.fs.move(partial.path, staging.join(f"round-{number}.results.json").path)
            number, waited_since = number + 1, time.monotonic()
        return 1
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
