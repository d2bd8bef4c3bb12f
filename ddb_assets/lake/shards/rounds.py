"""The results of a round of shard tasks on Spark (the spark runner's application, the glue and
emr_serverless job runs), from the task on an executor to the driver that commits them.

A task writes its whole result document (lake/shards/spec.py: the files written with their
statistics, about 2.3 KB a file) beside its spec in the staging folder, under a name of its own
attempt (``round-N/shard-00007.json`` -> ``round-N/shard-00007.attempt-0.result.json``: a retry
never overwrites another attempt's), and hands Spark only a **record**: its shard, attempt, the
result's URI and the counts the progress line needs. Spark's ``collect()`` gathers the records
into ``round-N.results.json``, so what passes through Spark's driver grows by about 200 bytes a
shard, not by the files written (a 50 TB export writes about 760,000 files: 1.7 GB of results,
past ``spark.driver.maxResultSize``). The driver (lake/shards/driver.py) writes the specs and
reads the result documents side by side (lake/shards/io_pool.py): one request each on S3.

A round may also be a key check (lake/shards/key_round.py): its results document holds the
duplicate key found, if any, instead of records.

The results document carries a version: a driver and a job of different versions (a package not
uploaded again after an upgrade) fail on it with one line saying so. A task that kept failing
after Spark's retries is written there instead (``failed``: its shard and error); bad input is a
result like any other, with its ``error`` (object and line). The result files are removed with
the staging folder.
"""

from __future__ import annotations

from typing import Any

import orjson

from ddb_assets.exports.storage import Location, S3Options, resolve
from ddb_assets.lake.shards.io_pool import in_parallel
from ddb_assets.lake.shards.spec import ShardFailed, ShardResult, ShardSpec

# 2: the results are records naming each task's own result document, not the documents themselves.
# 3: a round may be a key check (``{"keys": ...}``), answered with the duplicate key found.
RESULTS_FORMAT = "ddb_assets.shard-results/3"


def write_specs(folder: Location, number: int, specs: list[ShardSpec]) -> list[str]:
    """Write round ``number``'s ``specs`` under ``folder`` (``round-<number>/shard-00007.json``),
    side by side; their URIs, in the order of ``specs``. Raises the storage's OSError."""
    round_folder = folder.join(f"round-{number}")
    if round_folder.scheme == "file":
        round_folder.fs.create_dir(round_folder.path, recursive=True)

    def write(spec: ShardSpec) -> str:
        location = round_folder.join(f"shard-{spec.shard:05d}.json")
        location.write_bytes(spec.to_json())
        return location.uri

    return in_parallel(write, specs)


def attempt_result_uri(spec_uri: str, attempt: int) -> str:
    """Where attempt ``attempt`` (0 first) of the shard whose spec is at ``spec_uri`` writes its
    result: beside the spec, ``<spec name less .json>.attempt-<attempt>.result.json``."""
    base = spec_uri[:-len(".json")] if spec_uri.endswith(".json") else spec_uri
    return f"{base}.attempt-{attempt}.result.json"


def run_task(spec_uri: str, document: bytes, attempt: int) -> dict[str, Any]:
    """One shard task, on an executor: the spec ``document`` (read from ``spec_uri``) run as
    attempt ``attempt``, its result written beside the spec (``attempt_result_uri``); returns
    the record of it: ``shard``, ``attempt``, ``result`` (the URI), ``items`` read, ``rows`` and
    ``files`` written, ``error`` (the kind of bad input that stopped it, else None). Raises what
    ``run_shard`` raises but bad input, and storage errors writing the result: for the engine to
    retry the task."""
    from dataclasses import replace

    from ddb_assets.lake.shards.worker import run_shard_checked

    spec = replace(ShardSpec.from_json(document, obj=spec_uri), attempt=attempt)
    result = run_shard_checked(spec)
    uri = attempt_result_uri(spec_uri, attempt)
    resolve(uri, spec.s3.with_environment()).write_bytes(result.to_json())
    return {"shard": result.shard, "attempt": result.attempt, "result": uri,
            "items": sum(read.items for read in result.reads), "rows": sum(w.rows for w in result.written),
            "files": len(result.written), "error": None if result.error is None else result.error.kind}


def results_document(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``round-N.results.json`` of a round whose tasks all ended: their records, by shard."""
    return {"format": RESULTS_FORMAT, "results": sorted(records, key=lambda r: r["shard"])}


def failed_document(failure: dict[str, Any]) -> dict[str, Any]:
    """``round-N.results.json`` of a round a task of which kept failing: ``failure`` gives
    ``where`` (the shard and attempt), ``kind`` and ``message`` of its error, and its ``spec``."""
    return {"format": RESULTS_FORMAT, "failed": failure}


def round_results(data: bytes, obj: str, s3: S3Options | None = None, log: str = "") -> list[ShardResult]:
    """The results of a round: the results document ``data`` (read from ``obj``), then each
    shard's result document it names, read side by side, in shard order (with ``s3``, the
    staging folder's options). Raises ShardFailed, one line: a document of another version
    (naming both), a shard that failed after the engine's retries (its error, its spec, and
    ``log``, where the engine's own log is, if given), a result that cannot be read (its URI)."""
    document = results_of(data, obj)
    failed = document.get("failed")
    if failed:
        raise ShardFailed(f"{failed['where']} failed after Spark's retries: {failed['kind']}: "
                          f"{failed['message']} (its spec: {failed.get('spec', '')}; run it alone with "
                          f"`ddb-assets shard run --spec URI`{'; ' + log if log else ''})")

    def read(record: dict[str, Any]) -> ShardResult:
        uri = record["result"]
        try:
            return ShardResult.from_json(resolve(uri, s3).read_bytes(), obj=uri)
        except FileNotFoundError:
            raise ShardFailed(f"{uri}: shard {record['shard'] + 1}'s result is missing") from None
        except (OSError, ValueError) as exc:  # UnreadableObject (an OSError) and from_json's name the object
            raise ShardFailed(" ".join(str(exc).split())) from None

    return in_parallel(read, document["results"])


def results_of(data: bytes, obj: str) -> dict[str, Any]:
    """The results document ``data`` (read from ``obj``) of any round, its version checked.
    Raises ShardFailed, one line: not JSON, or a document of another version (naming both)."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ShardFailed(f"{obj}: cannot read the shard results ({exc})") from None
    found = document.get("format") if isinstance(document, dict) else None
    if found != RESULTS_FORMAT:
        raise ShardFailed(f"{obj}: the shard results are format {found or 'unknown'}, this ddb-assets reads "
                          f"{RESULTS_FORMAT}: the job ran another version of the package (upload this one "
                          f"with `ddb-assets shard package`)")
    return document


__all__ = ["RESULTS_FORMAT", "attempt_result_uri", "failed_document", "results_document", "results_of",
           "round_results", "run_task", "write_specs"]
