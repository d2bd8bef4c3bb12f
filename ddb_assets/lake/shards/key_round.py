"""The key check of a sharded conversion (lake/unique_keys.py), run on the engine: a round of its own.

With key attributes set, a full export's written files must hold each primary key once. On one
machine DuckDB groups their key columns (about 0.4 s per 300,000 items); tens of terabytes are
billions of keys, which this round spreads over the Spark application's executors instead:

- the driver writes the round ``{"keys": {"files": [URI, ...], "columns": [...], "s3": {...}}}``
  (``key_round``): the written files, their key columns, the S3 options of the shard specs
  (credentials come from the executors' environment, as the shard tasks' do);
- the application (``run_key_round``, called by lake/shards/spark_job.py's ``answer_round`` for
  the spark runner and by lake/shards/glue_job.py for glue and emr_serverless) makes a DataFrame
  of the paths, about FILES_PER_TASK files a partition and at least one partition a core;
  ``mapInArrow`` reads each file's key columns with pyarrow through
  ``ddb_assets.exports.storage.resolve`` (no Hadoop S3 connector is needed); Spark's own
  ``groupBy(keys).count()`` (a shuffle, spilled to disk past memory) keeps one key held more
  than once; its values and count go to the results document, as JSON-safe text (``encoded``);
- the driver reads that (``duplicate_found``) and raises DuplicateKey exactly as the local check
  does, before anything is committed.
"""

from __future__ import annotations

import base64
import math
from decimal import Decimal
from typing import Any, Iterator

import orjson

from ddb_assets.exports.storage import S3Options
from ddb_assets.lake.shards.rounds import RESULTS_FORMAT, results_of
from ddb_assets.lake.shards.spec import ShardFailed

# Files a reading task: a task (a Python worker's Arrow round trip) cost about 1 s of overhead on
# local[2] here, against about 5 us a key read; a written file holds about 63,000 items at scale
# (bench/README.md), so 32 files make a task of about 10 s, its overhead under a tenth of it.
FILES_PER_TASK = 32


def key_round(files: list[str], columns: list[str], s3: S3Options | None) -> dict[str, Any]:
    """The round document of a key check of ``files`` (URIs of Parquet files) on their key
    ``columns`` (names, in the key attributes' order), read with ``s3``'s endpoint, region and
    attempts (never its keys: those reach the executors by their environment)."""
    options = {"endpoint_url": s3.endpoint_url if s3 else None, "region": s3.region if s3 else None,
               "max_attempts": s3.max_attempts if s3 else None}
    return {"keys": {"files": list(files), "columns": list(columns), "s3": options}}


def encoded(value: Any) -> list[Any]:
    """A key value as JSON-safe text, its type kept: ``["string", "a"]``, ``["decimal", "1.50"]``
    (a DynamoDB number: its scale kept), ``["int", 7]``, ``["binary", base64]``, ``["null", None]``."""
    if value is None:
        return ["null", None]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ["binary", base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, Decimal):
        return ["decimal", str(value)]
    if isinstance(value, bool):
        raise TypeError(f"a key value is string, number or binary, not {value!r}")
    if isinstance(value, int):
        return ["int", value]
    if isinstance(value, str):
        return ["string", value]
    raise TypeError(f"a key value is string, number or binary, not {type(value).__name__}")


def decoded(pair: list[Any]) -> Any:
    """The key value ``encoded`` gave (str, Decimal, int, bytes or None)."""
    kind, value = pair
    return {"null": lambda v: None, "binary": lambda v: base64.b64decode(v), "decimal": Decimal,
            "int": int, "string": str}[kind](value)


def duplicate_found(data: bytes, obj: str, log: str = "") -> tuple[list[Any], int] | None:
    """The answer to a key round: its results document ``data`` (read from ``obj``) -> (the
    values of a key held more than once, how many items hold it), or None when each key is
    there once. Raises ShardFailed, one line: a document of another version, or a check that
    failed after Spark's retries (its error, and ``log``, where the engine's log is)."""
    document = results_of(data, obj)
    failed = document.get("failed")
    if failed:
        raise ShardFailed(f"{failed['where']} failed after Spark's retries: {failed['kind']}: {failed['message']}"
                          f"{' (' + log + ')' if log else ''}")
    answer = document.get("keys")
    if not isinstance(answer, dict):
        raise ShardFailed(f"{obj}: the job answered a key check with shard results: is the job's script the one "
                          f"`ddb-assets shard package` uploads?")
    duplicate = answer.get("duplicate")
    if duplicate is None:
        return None
    return [decoded(pair) for pair in duplicate["values"]], int(duplicate["count"])


def run_key_round(spark: Any, request: dict[str, Any]) -> dict[str, Any]:
    """On the Spark application's driver: the results document of the key round ``request``
    (``key_round``'s ``keys``): ``{"format", "keys": {"files": n, "duplicate": None or {"values":
    [encoded, ...], "count": n}}}``, or a ``failed_document`` when a file could not be read
    after Spark's retries."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from ddb_assets.lake.shards.rounds import failed_document
    from ddb_assets.lake.shards.spark_job import failure_of

    files, columns = request["files"], request["columns"]
    s3 = S3Options(**request.get("s3") or {}).with_environment()
    if not files:
        return {"format": RESULTS_FORMAT, "keys": {"files": 0, "duplicate": None}}
    try:
        schema = _key_schema(files[0], columns, s3)
        context = spark.sparkContext
        partitions = min(len(files), max(context.defaultParallelism, math.ceil(len(files) / FILES_PER_TASK)))
        paths = spark.createDataFrame(context.parallelize([(uri,) for uri in files], partitions), "path string")
        keys = paths.mapInArrow(lambda batches: _read_keys(batches, columns, s3), from_arrow_schema(schema))
        names = [field.name for field in schema]
        # As many groups as readers: each then holds a reader's share of the keys (a few million);
        # Spark's default 200 made the grouping of 1,000,000 keys twice as slow on local[2].
        shuffle = spark.conf.get("spark.sql.shuffle.partitions")
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
        try:
            found = keys.groupBy(*names).count().where(F.col("count") > 1).limit(1).collect()
        finally:
            spark.conf.set("spark.sql.shuffle.partitions", shuffle)
    except Exception as error:  # noqa: BLE001 - reported through the results document
        return failed_document(failure_of(error, "the key check"))
    duplicate = None
    if found:
        row = found[0]
        duplicate = {"values": [encoded(row[name]) for name in names], "count": int(row["count"])}
    return {"format": RESULTS_FORMAT, "keys": {"files": len(files), "duplicate": duplicate}}


def _key_schema(uri: str, columns: list[str], s3: S3Options) -> Any:
    """The key columns' Arrow schema (named k0, k1, ...: a column's own name may hold dots or
    backticks, which Spark reads as paths), from ``uri``'s footer: every file of a round is
    written with one plan."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ddb_assets.exports.storage import resolve

    location = resolve(uri, s3)
    footer = pq.read_schema(location.path, filesystem=location.fs)
    return pa.schema([pa.field(f"k{index}", footer.field(name).type) for index, name in enumerate(columns)])


def _read_keys(batches: Iterator[Any], columns: list[str], s3: S3Options) -> Iterator[Any]:
    """mapInArrow's function, on an executor: batches of ``path`` -> each file's key columns,
    renamed k0, k1, ... A file that cannot be read raises, marked with its URI, for Spark to retry."""
    import pyarrow.parquet as pq

    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.shards.spark_job import MARK

    for batch in batches:
        for uri in batch.column(0).to_pylist():
            try:
                location = resolve(uri, s3)
                table = pq.read_table(location.path, columns=columns, filesystem=location.fs)
            except Exception as error:  # noqa: BLE001 - raised again, for Spark to retry, with what to report
                failure = {"where": f"the key check of {uri}", "kind": type(error).__name__,
                           "message": " ".join(str(error).split())}
                raise RuntimeError(MARK + orjson.dumps(failure).decode() + MARK) from error
            yield from table.rename_columns([f"k{index}" for index in range(len(columns))]).to_batches()


__all__ = ["FILES_PER_TASK", "decoded", "duplicate_found", "encoded", "key_round", "run_key_round"]
