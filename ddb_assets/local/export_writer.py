"""Write a full DynamoDB export exactly as AWS lays it out (EXPORT_FORMAT.md §1-3).

Used by the emulator (into its S3) and by the benchmark (straight into a folder). Items stream
through: each data file is gzip-compressed as its lines arrive, so the export's size costs disk,
not memory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import orjson

from ddb_assets.exports.checksums import md5_base64, single_part_etag
from ddb_assets.exports.ion_codec import item_to_ion_line
from ddb_assets.exports.manifest import (
    FULL_EXPORT_VERSION,
    ManifestFile,
    ManifestSummary,
    render_manifest_files,
)


class ObjectSink(Protocol):
    """Where export objects go: an S3 bucket or a local folder standing in for one."""

    def put(self, key: str, data: bytes) -> None: ...


class FolderSink:
    """Writes object keys as paths below a folder (the bucket root)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@dataclass(frozen=True)
class ExportRequest:
    """Everything about one export that ends up in its manifests."""

    export_arn: str
    table_arn: str
    table_id: str
    bucket: str
    prefix: str | None
    output_format: str  # DYNAMODB_JSON | ION
    start_time: datetime
    export_time: datetime
    key_attributes: tuple[str, ...]  # partition key first, then sort key
    data_files: int = 4  # how many hash ranges ("partitions") the table is split into
    sse_algorithm: str = "AES256"

    @property
    def export_id(self) -> str:
        return self.export_arn.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        base = f"{self.prefix}/AWSDynamoDB" if self.prefix else "AWSDynamoDB"
        return f"{base}/{self.export_id}"

    @property
    def summary_key(self) -> str:
        return f"{self.folder}/manifest-summary.json"


def iso_millis(moment: datetime) -> str:
    """``2024-05-14T08:15:42.517Z``: UTC with milliseconds, as every export timestamp is written."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def data_file_name() -> str:
    """26 characters of lowercase base32, like ``55xtplpft7v4seh2kvj72ceuvw``."""
    return base64.b32encode(os.urandom(16)).decode("ascii").rstrip("=").lower()


class _GzipFile:
    """One data file, compressed incrementally while its checksum is computed on the same bytes."""

    def __init__(self) -> None:
        # wbits=31: a gzip container; Python writes no file name, and OS byte 0xff like newer exports.
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        self._chunks: list[bytes] = []
        self.item_count = 0

    def add(self, line: bytes) -> None:
        self.item_count += 1
        chunk = self._compressor.compress(line)
        if chunk:
            self._chunks.append(chunk)

    def finish(self) -> bytes:
        self._chunks.append(self._compressor.flush())
        return b"".join(self._chunks)


def write_export(
    request: ExportRequest,
    items: Iterable[dict[str, Any]],
    sink: ObjectSink,
    *,
    end_time: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> ManifestSummary:
    """Write ``_started``, the data files, both manifests and their ``.md5`` files. Returns the summary."""
    sink.put(f"{request.folder}/_started", b"")
    encode = item_to_ion_line if request.output_format == "ION" else _json_line
    suffix = ".ion.gz" if request.output_format == "ION" else ".json.gz"
    files = [_GzipFile() for _ in range(request.data_files)]
    billed = 0
    for item in items:
        ordered = _keys_first(item, request.key_attributes)
        line = encode(ordered)
        billed += len(line)
        files[_hash_range(ordered, request.key_attributes[0], request.data_files)].add(line)

    entries = []
    for data_file in files:
        data = data_file.finish()
        key = f"{request.folder}/data/{data_file_name()}{suffix}"
        sink.put(key, data)
        entries.append(ManifestFile(
            item_count=data_file.item_count,
            md5_checksum=md5_base64(data),
            etag=single_part_etag(data),
            data_file_s3_key=key,
        ))
    manifest_files = render_manifest_files(entries)
    files_key = f"{request.folder}/manifest-files.json"
    sink.put(files_key, manifest_files)
    sink.put(f"{request.folder}/manifest-files.md5", md5_base64(manifest_files).encode("ascii"))

    summary = ManifestSummary(
        version=FULL_EXPORT_VERSION,
        export_arn=request.export_arn,
        start_time=iso_millis(request.start_time),
        end_time=iso_millis(end_time()),
        table_arn=request.table_arn,
        table_id=request.table_id,
        export_time=iso_millis(request.export_time),
        s3_bucket=request.bucket,
        s3_prefix=request.prefix,
        s3_sse_algorithm=request.sse_algorithm,
        s3_sse_kms_key_id=None,
        manifest_files_s3_key=files_key,
        # AWS reports table storage here, often 0 for small tables; we report the item bytes written.
        billed_size_bytes=billed,
        item_count=sum(entry.item_count for entry in entries),
        output_format=request.output_format,
    )
    summary_bytes = summary.to_json_bytes()
    sink.put(request.summary_key, summary_bytes)
    sink.put(f"{request.folder}/manifest-summary.md5", md5_base64(summary_bytes).encode("ascii"))
    return summary


def _json_line(item: dict[str, Any]) -> bytes:
    return orjson.dumps({"Item": item}) + b"\n"


def _keys_first(item: dict[str, Any], key_attributes: tuple[str, ...]) -> dict[str, Any]:
    # Real exports put the table's key attributes first; the rest follow in no fixed order.
    ordered = {name: item[name] for name in key_attributes if name in item}
    ordered.update((name, value) for name, value in item.items() if name not in ordered)
    return ordered


def _hash_range(item: dict[str, Any], partition_key: str, ranges: int) -> int:
    # Items are spread over files by a hash of their partition key, as DynamoDB's partitions are.
    digest = hashlib.md5(orjson.dumps(item.get(partition_key))).digest()
    return int.from_bytes(digest[:4], "big") % ranges
