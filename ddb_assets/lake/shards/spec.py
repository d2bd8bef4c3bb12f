"""Shard tasks as JSON documents: what one worker needs to read (and write) its share of an export,
and what it hands back to the one committer.

A **spec** names the export (its folder, output format, type), the data files of the shard with
what the manifest says about each (md5, item count, etag; the listed size when known), and, for a
writing shard, the table's planned schema (the Iceberg schema and the column mapping, as the table
stores them: ``TableSchema.from_iceberg`` reads them back), the partition transform and its source
column, the Parquet codec, the table's ``write.metadata.metrics.*`` properties (which column
statistics to compute), the table's data folder, the run id and the attempt. A spec without a
schema only reads, checks and profiles its files (the profile pass of a conversion whose profile
is not known yet).

A **result** lists the files written with their Iceberg column statistics, computed by the shard
from each file's footer (lake/file_stats.py: the committer reads neither files nor footers; 2.3 KB
a file of the benchmark's 32 columns, where the base64 footer was 17.5 KB), the rows per partition,
the profile of every item read, the bytes read and the time taken; or the bad-input error that
stopped the shard.

Both formats carry a version: a driver and executors of different versions (a wheel not uploaded
again after an upgrade) fail on the first spec or result with "not a shard spec/result (format ...)".

Specs carry no credentials: workers take them from their own environment (instance role, the
executor's variables).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import orjson

from ddb_assets.exports import errors as export_errors
from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.json_reader import DEFAULT_JSON_READER, ReaderCounts
from ddb_assets.exports.manifest import ManifestFile
from ddb_assets.exports.reader import DataFile
from ddb_assets.exports.storage import S3Options, resolve
from ddb_assets.lake.partitioning import PartitionBy
from ddb_assets.lake.profile import Profile, profile_from_json, profile_to_json
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.writer import FileTarget, WrittenFile

# 2: the target carries the table's metrics properties, and results carry statistics, not footers.
SPEC_FORMAT = "ddb_assets.shard/2"
RESULT_FORMAT = "ddb_assets.shard-result/2"


class ShardFailed(RuntimeError):
    """A shard task failed for a reason other than bad input (after the engine's retries)."""


@dataclass(frozen=True)
class ShardFile:
    """One data file of a shard: its place in manifest-files.json (``index``: it orders the table's
    columns, see Profile.first_line), the key the manifest names, where it is read from, and what
    the manifest says about it. ``bytes``: its size as listed (None when not listed)."""

    index: int
    key: str
    uri: str
    md5: str
    etag: str
    items: int
    bytes: int | None = None

    @classmethod
    def of(cls, index: int, data_file: DataFile, size: int | None = None) -> "ShardFile":
        m = data_file.manifest
        return cls(index, m.data_file_s3_key, data_file.location.uri, m.md5_checksum, m.etag, m.item_count, size)

    def data_file(self, output_format: str, s3: S3Options | None) -> DataFile:
        return DataFile(resolve(self.uri, s3), ManifestFile(self.items, self.md5, self.etag, self.key), output_format)


@dataclass(frozen=True)
class ShardSpec:
    """One shard task (see the module docstring). ``shard`` counts from 0 of ``shards``; ``attempt``
    (0 first) goes into the written files' names with ``run``, so retries never collide."""

    shard: int
    shards: int
    run: str
    export_id: str
    export_type: str
    output_format: str
    source: str  # the export folder's URI
    files: tuple[ShardFile, ...]
    partition_by: str | None = None  # read shards: profile the partition attribute's values
    dictionary_keys: int = 64
    piece_bytes: int = 32 << 20
    json_reader: str = DEFAULT_JSON_READER  # ConvertOptions.json_reader
    key_attributes: tuple[str, ...] = ()  # ConvertOptions.key_attributes
    # writing shards only (None: read, check and profile, write nothing)
    schema: TableSchema | None = None
    active: frozenset[int] = frozenset()
    target: FileTarget | None = None  # ``run`` in it is the run id; the attempt is added when run
    only_partitions: frozenset[str] | None = None
    buffer_bytes: int = 64 << 20
    attempt: int = 0
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_max_attempts: int | None = None

    @property
    def writes(self) -> bool:
        return self.schema is not None

    @property
    def s3(self) -> S3Options:
        return S3Options(endpoint_url=self.s3_endpoint_url, region=self.s3_region, max_attempts=self.s3_max_attempts)

    @property
    def items(self) -> int:
        return sum(f.items for f in self.files)

    def attempt_target(self) -> FileTarget:
        """The file target of this attempt: ``<run>-<attempt>`` names its files."""
        assert self.target is not None
        return replace(self.target, run=f"{self.target.run}-{self.attempt}")

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "format": SPEC_FORMAT, "shard": self.shard, "shards": self.shards, "run": self.run,
            "attempt": self.attempt, "export_id": self.export_id, "export_type": self.export_type,
            "output_format": self.output_format, "source": self.source,
            "files": [f.__dict__ for f in self.files], "partition_by": self.partition_by,
            "dictionary_keys": self.dictionary_keys, "piece_bytes": self.piece_bytes,
            "json_reader": self.json_reader, "buffer_bytes": self.buffer_bytes,
            "key_attributes": list(self.key_attributes),
            "only_partitions": sorted(self.only_partitions) if self.only_partitions is not None else None,
            "s3": {"endpoint_url": self.s3_endpoint_url, "region": self.s3_region,
                   "max_attempts": self.s3_max_attempts},
            "schema": schema_to_json(self.schema) if self.schema is not None else None,
            "active": sorted(self.active),
            "target": None if self.target is None else {
                "data": self.target.data, "run": self.target.run, "compression": self.target.compression,
                "partition": self.target.partition.text if self.target.partition else None,
                "source_column": self.target.source_column, "metrics": dict(self.target.metrics)},
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes, *, obj: str) -> "ShardSpec":
        """A spec from ``to_json``'s output; ValueError naming ``obj`` otherwise."""
        try:
            d = orjson.loads(data)
            if not isinstance(d, dict) or d.get("format") != SPEC_FORMAT:
                raise ValueError(f"not a shard spec (format {SPEC_FORMAT})")
            target = d["target"]
            only = d["only_partitions"]
            return cls(
                shard=d["shard"], shards=d["shards"], run=d["run"], attempt=d["attempt"], export_id=d["export_id"],
                export_type=d["export_type"], output_format=d["output_format"], source=d["source"],
                files=tuple(ShardFile(**f) for f in d["files"]), partition_by=d["partition_by"],
                dictionary_keys=d["dictionary_keys"], piece_bytes=d["piece_bytes"], buffer_bytes=d["buffer_bytes"],
                json_reader=d["json_reader"], key_attributes=tuple(d.get("key_attributes") or ()),
                only_partitions=frozenset(only) if only is not None else None,
                s3_endpoint_url=d["s3"]["endpoint_url"], s3_region=d["s3"]["region"],
                s3_max_attempts=d["s3"]["max_attempts"],
                schema=schema_from_json(d["schema"]) if d["schema"] is not None else None,
                active=frozenset(d["active"]),
                target=None if target is None else FileTarget(
                    target["data"], target["run"], PartitionBy.parse(target["partition"]), target["source_column"],
                    target["compression"], tuple(sorted(target["metrics"].items()))))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{obj}: cannot read the shard spec ({exc})") from None


def schema_to_json(schema: TableSchema) -> dict[str, Any]:
    """The planned schema as the table stores it: the Iceberg schema and the table properties
    holding the column mapping, options and partitioning."""
    return {"iceberg": orjson.loads(schema.iceberg_schema().model_dump_json()), "properties": schema.properties(),
            "last_column_id": schema.last_column_id}


def schema_from_json(document: dict[str, Any]) -> TableSchema:
    from pyiceberg.schema import Schema

    iceberg = Schema.model_validate_json(orjson.dumps(document["iceberg"]))
    return TableSchema.from_iceberg(iceberg, document["properties"], document["last_column_id"])


@dataclass(frozen=True)
class FileRead:
    """What reading one data file found: its items and bytes (gzip and decompressed), and how many
    of its pieces each JSON reader parsed."""

    index: int
    key: str
    items: int
    compressed: int
    uncompressed: int
    arrow_rs: int = 0
    pyarrow: int = 0

    @property
    def readers(self) -> ReaderCounts:
        return ReaderCounts(arrow_rs=self.arrow_rs, pyarrow=self.pyarrow)


@dataclass
class ShardError:
    """Why a shard stopped: bad input (an ExportFormatError, rebuilt with its object and line by
    ``exception()``) or another failure, as its type and message."""

    kind: str
    message: str
    obj: str | None = None
    problem: str | None = None
    line: int | None = None

    @classmethod
    def of(cls, error: BaseException) -> "ShardError":
        if isinstance(error, ExportFormatError):
            return cls(type(error).__name__, str(error), error.obj, error.problem, error.line)
        return cls(type(error).__name__, str(error))

    def exception(self, spec_text: str) -> Exception:
        """The error to raise in the driver: the same ExportFormatError class for bad input (so
        callers report it as they report a local run's), else ShardFailed naming the shard."""
        kind = getattr(export_errors, self.kind, None)
        if self.obj is not None and isinstance(kind, type) and issubclass(kind, ExportFormatError):
            return kind(self.obj, self.problem or self.message, line=self.line)
        return ShardFailed(f"{spec_text} failed: {self.kind}: {self.message}")


@dataclass
class ShardResult:
    """What one shard attempt did (see the module docstring). ``error`` is set when bad input
    stopped it: then ``written`` is empty (its writer removed what it had written)."""

    shard: int
    attempt: int
    run: str
    written: list[WrittenFile] = field(default_factory=list)
    reads: list[FileRead] = field(default_factory=list)
    profile: Profile = field(default_factory=Profile)
    seconds: float = 0.0
    host: str = ""
    error: ShardError | None = None

    @property
    def partitions(self) -> dict[str, int]:
        """Rows written per partition name."""
        out: dict[str, int] = {}
        for w in self.written:
            out[w.partition] = out.get(w.partition, 0) + w.rows
        return dict(sorted(out.items()))

    def to_json(self) -> bytes:
        document = {
            "format": RESULT_FORMAT, "shard": self.shard, "attempt": self.attempt, "run": self.run,
            "seconds": self.seconds, "host": self.host, "finished": time.time(),
            "written": [written_to_json(w) for w in self.written],
            "partitions": self.partitions,
            "reads": [r.__dict__ for r in self.reads],
            "profile": orjson.loads(profile_to_json(self.profile, "")),
            "error": None if self.error is None else self.error.__dict__,
        }
        return orjson.dumps(document)

    @classmethod
    def from_json(cls, data: bytes, *, obj: str) -> "ShardResult":
        try:
            d = orjson.loads(data)
            if not isinstance(d, dict) or d.get("format") != RESULT_FORMAT:
                raise ValueError(f"not a shard result (format {RESULT_FORMAT})")
            _, profile = profile_from_json(orjson.dumps(d["profile"]), obj=obj)
            return cls(
                shard=d["shard"], attempt=d["attempt"], run=d["run"], seconds=d["seconds"], host=d["host"],
                written=[written_from_json(w) for w in d["written"]],
                reads=[FileRead(**r) for r in d["reads"]], profile=profile,
                error=ShardError(**d["error"]) if d["error"] is not None else None)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{obj}: cannot read the shard result ({exc})") from None


def written_to_json(written: WrittenFile) -> dict[str, Any]:
    """A written file as JSON, with its column statistics: what a shard result or a staged
    conversion holds."""
    return {"partition": written.partition, "key": _key_to_json(written.key), "path": written.path,
            "rows": written.rows, "bytes": written.bytes, "statistics": written.statistics}


def written_from_json(document: dict[str, Any]) -> WrittenFile:
    """``written_to_json``'s output read back. A document of an older version holds a footer
    instead: its ``statistics`` are None (lake/staging.py reports such a record stale)."""
    return WrittenFile(document["partition"], _key_from_json(document["key"]), document["path"], document["rows"],
                       document["bytes"], document.get("statistics"))


# A partition key is Iceberg's internal value: an int (time and bucket transforms, integer identity),
# or the identity value itself (text, a decimal, bytes, a boolean); JSON keeps the kind apart.
def _key_to_json(key: Any) -> Any:
    if key is None or isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return key
    if isinstance(key, bool):
        return {"bool": key}
    if isinstance(key, Decimal):
        return {"decimal": str(key)}
    if isinstance(key, bytes):
        return {"base64": base64.b64encode(key).decode("ascii")}
    raise TypeError(f"partition key {key!r} of type {type(key).__name__} has no JSON form")


def _key_from_json(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "bool" in value:
        return bool(value["bool"])
    if "decimal" in value:
        return Decimal(value["decimal"])
    return base64.b64decode(value["base64"])


__all__ = ["FileRead", "ShardError", "ShardFailed", "ShardFile", "ShardResult", "ShardSpec", "schema_from_json",
           "schema_to_json", "written_from_json", "written_to_json"]
