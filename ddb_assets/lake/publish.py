"""The table's metadata file, and atomic publication of new data.

Data files are written into fresh version folders (``year=2015/v<version>/part-0000.parquet``) that
no reader knows of. Publishing is one atomic write of ``_ddb_assets.json``, which lists the files
of every partition: readers that go through it (the query engines, the Glue catalog) see the old
table or the new one, never a mix. Only then are superseded files deleted. A run that fails or is
killed before that write publishes nothing; its orphan files are removed by the next publish.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import random
import socket
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs

from ddb_assets.exports.storage import Location, S3Options, s3_client

METADATA_FILE = "_ddb_assets.json"
LOCK_FILE = "_ddb_assets.lock"
INFLIGHT_FOLDER = "_inflight"  # one marker per conversion still writing: its files are not garbage
INFLIGHT_LEASE_SECONDS = 6 * 3600  # a marker older than this belongs to a run that died
FORMAT_VERSION = 1
SWITCH_ATTEMPTS = 8  # concurrent publishers on S3 retry their compare-and-swap this often


def new_version() -> str:
    """Sortable and unique: ``v20261126T211800123Z-1a2b3c``."""
    now = datetime.now(timezone.utc)
    return f"v{now.strftime('%Y%m%dT%H%M%S')}{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


@dataclass
class PartitionEntry:
    value: str
    folder: str
    version: str
    files: list[dict[str, Any]]  # {"path": relative to the table root, "rows": n, "bytes": n}
    export_id: str

    @property
    def rows(self) -> int:
        return sum(f["rows"] for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f["bytes"] for f in self.files)


@dataclass
class TableMetadata:
    table: str
    version: str
    published_at: str
    partition_column: str | None
    partition_attribute: str | None
    partition_type: str | None
    naming: str
    schema_b64: str  # the Arrow schema of the data files, IPC-serialized
    columns: list[dict[str, Any]]  # name, type, source attribute path, descriptor, encoding
    variants: dict[str, dict[str, int]]
    source: dict[str, Any]  # export arn, id, time, table arn, item count, format
    partitions: dict[str, PartitionEntry] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema_b64)))

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions.values())

    def files(self) -> list[str]:
        return [f["path"] for p in self.partitions.values() for f in p.files]

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["rows"] = self.rows
        doc["bytes"] = self.bytes
        return json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> "TableMetadata":
        doc = json.loads(data)
        doc.pop("rows", None)
        doc.pop("bytes", None)
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported table metadata format_version {doc.get('format_version')}")
        doc["partitions"] = {k: PartitionEntry(**v) for k, v in doc["partitions"].items()}
        return cls(**doc)


def schema_to_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def read_metadata(root: Location) -> TableMetadata | None:
    location = root.join(METADATA_FILE)
    try:
        return TableMetadata.from_json(location.read_bytes())
    except FileNotFoundError:
        return None


class PublishConflict(RuntimeError):
    """Other runs kept switching the table's metadata while this one tried to."""


def publish_next(root: Location, derive: Callable[[TableMetadata | None], TableMetadata],
                 s3: S3Options | None = None) -> tuple[TableMetadata, list[str]]:
    """Read the current metadata, derive the next with ``derive`` and switch to it, as one step
    among concurrent runs; then delete what it no longer references. Returns (metadata, deleted).

    Two runs rewriting different partitions of one table (a backfill and the automation, say)
    would otherwise both start from the same old metadata: the last to publish would drop the
    other's partitions and point them at files the other's publish had already deleted. Local
    roots hold an exclusive ``flock`` (``_ddb_assets.lock``) for the step; on S3 the switch is a
    conditional PUT (``If-Match`` the ETag read, ``If-None-Match: *`` for a new table), and a run
    that lost the race reads again and derives again.
    """
    if root.scheme == "file":
        with _local_lock(root):
            metadata = derive(read_metadata(root))
            return metadata, publish(root, metadata)
    client = s3_client(s3)
    bucket, _, key = root.join(METADATA_FILE).path.partition("/")
    for attempt in range(SWITCH_ATTEMPTS):
        try:
            current = client.get_object(Bucket=bucket, Key=key)
            previous, condition = TableMetadata.from_json(current["Body"].read()), {"IfMatch": current["ETag"]}
        except client.exceptions.NoSuchKey:
            previous, condition = None, {"IfNoneMatch": "*"}
        metadata = derive(previous)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=metadata.to_json(), **condition)
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # someone switched first: again
            continue
        return metadata, collect_garbage(root, metadata)
    raise PublishConflict(f"{root.uri}: the table's metadata kept changing; gave up after {SWITCH_ATTEMPTS} attempts")


@contextlib.contextmanager
def _local_lock(root: Location) -> Iterator[None]:
    os.makedirs(root.path, exist_ok=True)
    with open(os.path.join(root.path, LOCK_FILE), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(root: Location, metadata: TableMetadata) -> list[str]:
    """Make ``metadata`` the table (one atomic write), then delete what it no longer references.

    Returns the deleted paths (relative to the root).
    """
    root.join(METADATA_FILE).write_bytes(metadata.to_json())
    return collect_garbage(root, metadata)


def mark_inflight(root: Location, version: str) -> None:
    """Tell concurrent publishers that ``version`` is being written (its files are not orphans)."""
    marker = {"host": socket.gethostname(), "pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat()}
    root.join(INFLIGHT_FOLDER, version).write_bytes(json.dumps(marker).encode())


def clear_inflight(root: Location, version: str) -> None:
    try:
        root.fs.delete_file(root.join(INFLIGHT_FOLDER, version).path)
    except (FileNotFoundError, OSError):
        pass


def inflight_versions(root: Location) -> frozenset[str]:
    folder = root.join(INFLIGHT_FOLDER)
    try:
        entries = root.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return frozenset()
    now = datetime.now(timezone.utc).timestamp()
    live = set()
    for entry in entries:
        modified = entry.mtime.timestamp() if entry.mtime is not None else now
        if now - modified < INFLIGHT_LEASE_SECONDS and not _writer_is_dead(root, entry.path):
            live.add(entry.path.rsplit("/", 1)[-1])
    return frozenset(live)


def _writer_is_dead(root: Location, marker_path: str) -> bool:
    """A marker left by a process of this machine that no longer exists (killed, crashed)."""
    try:
        with root.fs.open_input_stream(marker_path, compression=None) as stream:
            marker = json.loads(stream.read())
    except (OSError, ValueError):
        return False
    if marker.get("host") != socket.gethostname():
        return False  # another machine's run: trust the lease
    try:
        os.kill(int(marker["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def collect_garbage(root: Location, metadata: TableMetadata, keep_versions: frozenset[str] = frozenset()) -> list[str]:
    """Delete data files the published metadata does not reference (superseded or orphaned).

    Files of conversions still in flight (a concurrent backfill, say) are kept.
    """
    keep_versions = keep_versions | inflight_versions(root)
    referenced = set(metadata.files())
    deleted = []
    try:
        entries = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True))
    except FileNotFoundError:
        return deleted
    prefix = root.path.rstrip("/") + "/"
    for entry in entries:
        if entry.type != pafs.FileType.File or not entry.path.endswith(".parquet"):
            continue
        relative = entry.path[len(prefix):]
        if relative in referenced or any(f"/{v}/" in f"/{relative}" for v in keep_versions):
            continue
        root.fs.delete_file(entry.path)
        deleted.append(relative)
    if root.scheme == "file":
        _remove_empty_dirs(root)
    return deleted


def _remove_empty_dirs(root: Location) -> None:
    import os

    for directory, _, _ in os.walk(root.path, topdown=False):
        if directory != root.path:
            try:
                os.rmdir(directory)  # succeeds only when empty
            except OSError:
                pass
