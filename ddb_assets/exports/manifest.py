"""The two export manifests: ``manifest-summary.json`` and ``manifest-files.json``.

Parsing is tolerant where AWS varies (unknown keys, ``null`` prefix, absent ``exportType``) and
strict where a wrong value would corrupt the lake (counts, keys, checksums). Rendering reproduces
the exact bytes AWS writes: key order, compact separators and newlines (EXPORT_FORMAT.md §1.1-1.2,
§4.2 for incremental exports).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ddb_assets.exports.errors import ExportFormatError

FULL_EXPORT_VERSION = "2020-06-30"
INCREMENTAL_EXPORT_VERSION = "2023-08-01"
OUTPUT_FORMATS = ("DYNAMODB_JSON", "ION")

EXPORT_TYPES = ("FULL_EXPORT", "INCREMENTAL_EXPORT")
OUTPUT_VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE")

# Key order of a real full-export summary, as observed byte for byte.
_SUMMARY_KEYS = (
    "version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportTime",
    "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId", "manifestFilesS3Key",
    "billedSizeBytes", "itemCount", "outputFormat",
)
# Key order of an incremental summary, per the AWS docs' example (EXPORT_FORMAT.md §4.2; no real
# file seen). A stray ``exportTime`` (one emulator writes it) goes where full exports have it.
_INCREMENTAL_SUMMARY_KEYS = (
    "version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportTime",
    "exportFromTime", "exportToTime", "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId",
    "manifestFilesS3Key", "billedSizeBytes", "itemCount", "outputFormat", "outputView", "exportType",
)


@dataclass(frozen=True)
class ManifestSummary:
    """``manifest-summary.json``: what was exported, when, where, and how many items.

    Full exports (``version`` 2020-06-30) have ``export_time``; incremental ones (2023-08-01,
    ``export_type == "INCREMENTAL_EXPORT"``) have ``export_from_time`` (inclusive) and
    ``export_to_time`` (exclusive) instead, and ``output_view`` (``NEW_AND_OLD_IMAGES`` |
    ``NEW_IMAGE``; None if the file omits it). Times are the file's strings, ISO-8601 UTC with
    milliseconds (``2024-05-14T08:15:42.517Z``). For an incremental export ``item_count`` counts
    change lines, deletes included.
    """

    version: str
    export_arn: str
    start_time: str
    end_time: str
    table_arn: str
    table_id: str
    export_time: str | None
    s3_bucket: str
    s3_prefix: str | None
    s3_sse_algorithm: str
    s3_sse_kms_key_id: str | None
    manifest_files_s3_key: str
    billed_size_bytes: int
    item_count: int
    output_format: str
    export_type: str = "FULL_EXPORT"
    extra: dict[str, Any] = field(default_factory=dict)
    export_from_time: str | None = None
    export_to_time: str | None = None
    output_view: str | None = None

    @property
    def export_id(self) -> str:
        return self.export_arn.rsplit("/", 1)[-1]

    @property
    def data_suffix(self) -> str:
        return ".ion.gz" if self.output_format == "ION" else ".json.gz"

    @property
    def incremental(self) -> bool:
        """An incremental export: its data files sit in the prefix's shared ``AWSDynamoDB/data/``."""
        return self.export_type == "INCREMENTAL_EXPORT"

    def to_json_bytes(self) -> bytes:
        """The summary exactly as AWS writes it: one compact line, no trailing newline."""
        values = {
            "version": self.version, "exportArn": self.export_arn, "startTime": self.start_time,
            "endTime": self.end_time, "tableArn": self.table_arn, "tableId": self.table_id,
            "exportTime": self.export_time, "s3Bucket": self.s3_bucket, "s3Prefix": self.s3_prefix,
            "s3SseAlgorithm": self.s3_sse_algorithm, "s3SseKmsKeyId": self.s3_sse_kms_key_id,
            "manifestFilesS3Key": self.manifest_files_s3_key, "billedSizeBytes": self.billed_size_bytes,
            "itemCount": self.item_count, "outputFormat": self.output_format,
        }
        if self.incremental:
            values.update(exportFromTime=self.export_from_time, exportToTime=self.export_to_time,
                          outputView=self.output_view, exportType=self.export_type)
            # exportTime and outputView only when present: AWS writes no exportTime here, and a
            # summary read without outputView is rendered back without it.
            ordered = {key: values[key] for key in _INCREMENTAL_SUMMARY_KEYS
                       if not (key in ("exportTime", "outputView") and values[key] is None)}
        else:
            ordered = {key: values[key] for key in _SUMMARY_KEYS}
        ordered.update(self.extra)
        return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, *, obj: str) -> "ManifestSummary":
        """Parse ``manifest-summary.json`` (full or incremental). Raises ExportFormatError naming
        ``obj`` for invalid JSON, a missing or mistyped required field, an unknown version,
        outputFormat, exportType or outputView, or a version that contradicts the exportType."""
        doc = _load_json_object(data, obj=obj)
        version = _require(doc, "version", str, obj)
        if version not in (FULL_EXPORT_VERSION, INCREMENTAL_EXPORT_VERSION):
            raise ExportFormatError(obj, f"unknown manifest version {version!r}; expected {FULL_EXPORT_VERSION!r} "
                                         f"(full export) or {INCREMENTAL_EXPORT_VERSION!r} (incremental export)")
        incremental = version == INCREMENTAL_EXPORT_VERSION
        # Full summaries usually have no exportType (EXPORT_FORMAT.md §1.1); the version decides.
        export_type = doc.get("exportType")
        if export_type is None:
            export_type = "INCREMENTAL_EXPORT" if incremental else "FULL_EXPORT"
        if export_type not in EXPORT_TYPES:
            raise ExportFormatError(obj, f"exportType {export_type!r} is not one of {', '.join(EXPORT_TYPES)}")
        if (export_type == "INCREMENTAL_EXPORT") != incremental:
            raise ExportFormatError(obj, f"exportType {export_type} contradicts version {version} "
                                         f"({INCREMENTAL_EXPORT_VERSION} is incremental, {FULL_EXPORT_VERSION} full)")
        output_format = _require(doc, "outputFormat", str, obj)
        if output_format not in OUTPUT_FORMATS:
            raise ExportFormatError(obj, f"outputFormat {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        output_view = None
        if incremental:
            output_view = doc.get("outputView")
            if output_view is not None and output_view not in OUTPUT_VIEWS:
                raise ExportFormatError(obj, f"outputView {output_view!r} is not one of {', '.join(OUTPUT_VIEWS)}")
        known = set(_INCREMENTAL_SUMMARY_KEYS if incremental else _SUMMARY_KEYS) | {"exportType"}
        return cls(
            version=version,
            export_arn=_require(doc, "exportArn", str, obj),
            start_time=_require(doc, "startTime", str, obj),
            end_time=_require(doc, "endTime", str, obj),
            table_arn=_require(doc, "tableArn", str, obj),
            table_id=str(doc.get("tableId") or ""),
            export_time=doc.get("exportTime"),
            s3_bucket=_require(doc, "s3Bucket", str, obj),
            s3_prefix=doc.get("s3Prefix"),
            s3_sse_algorithm=str(doc.get("s3SseAlgorithm") or "AES256"),
            s3_sse_kms_key_id=doc.get("s3SseKmsKeyId"),
            manifest_files_s3_key=_require(doc, "manifestFilesS3Key", str, obj),
            billed_size_bytes=int(doc.get("billedSizeBytes") or 0),
            item_count=_require(doc, "itemCount", int, obj),
            output_format=output_format,
            export_type=export_type,
            extra={k: v for k, v in doc.items() if k not in known},
            export_from_time=_require(doc, "exportFromTime", str, obj) if incremental else None,
            export_to_time=_require(doc, "exportToTime", str, obj) if incremental else None,
            output_view=output_view,
        )


@dataclass(frozen=True)
class ManifestFile:
    """One line of ``manifest-files.json``: a data file, its item count and checksums."""

    item_count: int
    md5_checksum: str
    etag: str
    data_file_s3_key: str
    line: int | None = field(default=None, compare=False)  # 1-based, in the manifest it was read from

    @property
    def name(self) -> str:
        return self.data_file_s3_key.rsplit("/", 1)[-1]

    def to_json_line(self) -> bytes:
        line = {"itemCount": self.item_count, "md5Checksum": self.md5_checksum, "etag": self.etag,
                "dataFileS3Key": self.data_file_s3_key}
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def render_manifest_files(files: list[ManifestFile]) -> bytes:
    """JSON Lines, every line ending in ``\\n`` including the last."""
    return b"".join(f.to_json_line() for f in files)


def parse_manifest_files(data: bytes, *, obj: str) -> list[ManifestFile]:
    files = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue  # blank lines (and the final newline) carry nothing
        doc = _load_json_object(raw, obj=obj, line=number)
        files.append(ManifestFile(
            item_count=_require(doc, "itemCount", int, obj, number),
            md5_checksum=_require(doc, "md5Checksum", str, obj, number),
            etag=str(doc.get("etag") or ""),
            data_file_s3_key=_require(doc, "dataFileS3Key", str, obj, number),
            line=number,
        ))
    return files


def _load_json_object(data: bytes, *, obj: str, line: int | None = None) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExportFormatError(obj, f"not valid JSON ({exc})", line=line) from None
    if not isinstance(doc, dict):
        raise ExportFormatError(obj, f"expected a JSON object, found {type(doc).__name__}", line=line)
    return doc


def _require(doc: dict[str, Any], key: str, kind: type, obj: str, line: int | None = None) -> Any:
    if key not in doc or doc[key] is None:
        raise ExportFormatError(obj, f"required field {key!r} is missing", line=line)
    value = doc[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ExportFormatError(obj, f"field {key!r} must be an integer, found {value!r}", line=line)
    if kind is str and not isinstance(value, str):
        raise ExportFormatError(obj, f"field {key!r} must be a string, found {value!r}", line=line)
    return value
