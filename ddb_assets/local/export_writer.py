"""Write a DynamoDB export exactly as AWS lays it out: full (EXPORT_FORMAT.md §1-3) or
incremental (§4).

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
from ddb_assets.exports.ion_codec import change_to_ion_line, item_to_ion_line
from ddb_assets.exports.manifest import (
    FULL_EXPORT_VERSION,
    INCREMENTAL_EXPORT_VERSION,
    OUTPUT_VIEWS,
    ManifestFile,
    ManifestSummary,
    render_manifest_files,
)
from ddb_assets.local.history import Change


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


# AWS bills an incremental export for at least 10 MB: an empty one reports BilledSizeBytes
# 10000000 [secondary: a probe of the live API, ack-api-quirks DDB-EXPORT-019; also AWS pricing].
INCREMENTAL_MINIMUM_BILLED_BYTES = 10_000_000


@dataclass(frozen=True)
class IncrementalWindow:
    """What makes an export incremental: the window ``[export_from_time, export_to_time)`` and
    the view (``NEW_AND_OLD_IMAGES`` | ``NEW_IMAGE``)."""

    export_from_time: datetime
    export_to_time: datetime
    view: str = "NEW_AND_OLD_IMAGES"

    def __post_init__(self) -> None:
        if self.view not in OUTPUT_VIEWS:
            raise ValueError(f"view {self.view!r} is not one of {', '.join(OUTPUT_VIEWS)}")


@dataclass(frozen=True)
class ExportRequest:
    """Everything about one export that ends up in its manifests. ``incremental`` is None for a
    full export; ``export_time`` is not written for an incremental one."""

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
    incremental: IncrementalWindow | None = None

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

    @property
    def data_folder(self) -> str:
        """Where the data files go: the export's own ``data/``, or for an incremental export the
        prefix's shared ``AWSDynamoDB/data/`` (EXPORT_FORMAT.md §4.1)."""
        if self.incremental is None:
            return f"{self.folder}/data"
        return f"{self.prefix}/AWSDynamoDB/data" if self.prefix else "AWSDynamoDB/data"


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
    """Write a full export: ``_started``, the data files (``{"Item":...}`` or ``$ion_1_0 {Item:...}``
    lines), both manifests and their ``.md5`` files. Returns the summary."""
    if request.incremental is not None:
        raise ValueError("an incremental request is written by write_incremental_export")
    encode = item_to_ion_line if request.output_format == "ION" else _json_line
    partition_key = request.key_attributes[0]

    def lines() -> Iterable[tuple[Any, bytes]]:
        for item in items:
            ordered = _keys_first(item, request.key_attributes)
            yield ordered.get(partition_key), encode(ordered)

    return _write(request, lines(), sink, end_time)


def write_incremental_export(
    request: ExportRequest,
    changes: Iterable[Change],
    sink: ObjectSink,
    *,
    end_time: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> ManifestSummary:
    """Write an incremental export (``request.incremental`` set): one line per change, shaped by
    the view (:func:`change_line`), data files in the prefix's shared ``AWSDynamoDB/data/``, the
    manifests (summary version 2023-08-01) in the export's own folder. Returns the summary, whose
    ``item_count`` counts lines (deletes included)."""
    window = request.incremental
    if window is None:
        raise ValueError("a full request is written by write_export")
    partition_key = request.key_attributes[0]

    def lines() -> Iterable[tuple[Any, bytes]]:
        for change in changes:
            image = change.new if change.new is not None else change.old
            assert image is not None, "a key absent at both ends of the window is no change"
            yield image.get(partition_key), change_line(change, request.key_attributes, window.view,
                                                        request.output_format)

    return _write(request, lines(), sink, end_time)


def change_line(change: Change, key_attributes: tuple[str, ...], view: str, output_format: str) -> bytes:
    """One incremental-export line (EXPORT_FORMAT.md §4.3), newline included.

    ``Metadata.WriteTimestampMicros`` (``{"N": "<micros>"}``; an Ion decimal in ION) is the key's
    last write in the window. Then ``Keys`` and, by change and view: an insert has ``NewImage``;
    an update ``NewImage``, plus ``OldImage`` (the state before the window) under
    NEW_AND_OLD_IMAGES; a delete has ``OldImage`` under NEW_AND_OLD_IMAGES and nothing more under
    NEW_IMAGE. Field order Metadata, Keys, OldImage, NewImage, as in the one real-looking sample.
    """
    image = change.new if change.new is not None else change.old
    assert image is not None, "a key absent at both ends of the window is no change"
    images: dict[str, dict[str, Any]] = {"Keys": {name: image[name] for name in key_attributes}}
    if change.old is not None and view == "NEW_AND_OLD_IMAGES":
        images["OldImage"] = _keys_first(change.old, key_attributes)
    if change.new is not None:
        images["NewImage"] = _keys_first(change.new, key_attributes)
    micros = round(change.last_write_at * 1_000_000)
    if output_format == "ION":
        return change_to_ion_line(micros, images)
    return orjson.dumps({"Metadata": {"WriteTimestampMicros": {"N": str(micros)}}, **images}) + b"\n"


def _write(request: ExportRequest, lines: Iterable[tuple[Any, bytes]], sink: ObjectSink,
           end_time: Callable[[], datetime]) -> ManifestSummary:
    """The layout both kinds share: ``lines`` are (partition key value, encoded line) pairs."""
    # Whether AWS writes _started for incremental exports is unconfirmed (EXPORT_FORMAT.md §4.1);
    # it is the bucket-writable check, which an incremental export needs as much as a full one.
    sink.put(f"{request.folder}/_started", b"")
    suffix = ".ion.gz" if request.output_format == "ION" else ".json.gz"
    files = [_GzipFile() for _ in range(request.data_files)]
    billed = 0
    for partition_value, line in lines:
        billed += len(line)
        files[_hash_range(partition_value, request.data_files)].add(line)

    entries = []
    for data_file in files:
        data = data_file.finish()
        key = f"{request.data_folder}/{data_file_name()}{suffix}"
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

    window = request.incremental
    summary = ManifestSummary(
        version=FULL_EXPORT_VERSION if window is None else INCREMENTAL_EXPORT_VERSION,
        export_arn=request.export_arn,
        start_time=iso_millis(request.start_time),
        end_time=iso_millis(end_time()),
        table_arn=request.table_arn,
        table_id=request.table_id,
        export_time=iso_millis(request.export_time) if window is None else None,
        s3_bucket=request.bucket,
        s3_prefix=request.prefix,
        s3_sse_algorithm=request.sse_algorithm,
        s3_sse_kms_key_id=None,
        manifest_files_s3_key=files_key,
        # AWS reports table storage here, often 0 for small tables; we report the item bytes written.
        billed_size_bytes=billed if window is None else max(billed, INCREMENTAL_MINIMUM_BILLED_BYTES),
        item_count=sum(entry.item_count for entry in entries),
        output_format=request.output_format,
        export_type="FULL_EXPORT" if window is None else "INCREMENTAL_EXPORT",
        export_from_time=iso_millis(window.export_from_time) if window else None,
        export_to_time=iso_millis(window.export_to_time) if window else None,
        output_view=window.view if window else None,
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


def _hash_range(partition_value: Any, ranges: int) -> int:
    # Items are spread over files by a hash of their partition key, as DynamoDB's partitions are.
    digest = hashlib.md5(orjson.dumps(partition_value)).digest()
    return int.from_bytes(digest[:4], "big") % ranges
