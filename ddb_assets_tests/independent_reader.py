"""A reader of DynamoDB exports written here in the tests, from EXPORT_FORMAT.md alone.

It deliberately shares no code with ``ddb_assets.exports``: it is the yardstick the project's
emulator and reader are measured against.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclass
class ReadExport:
    folder: str
    keys: dict[str, bytes]  # key relative to the export folder -> bytes
    summary: dict[str, Any]
    summary_bytes: bytes
    files: list[dict[str, Any]]
    files_bytes: bytes
    items_by_file: dict[str, list[Any]]  # dataFileS3Key -> decoded lines

    @property
    def items(self) -> list[Any]:
        return [item for lines in self.items_by_file.values() for item in lines]


def read_export(s3: Any, bucket: str, manifest_key: str) -> ReadExport:
    folder = manifest_key.rsplit("/", 1)[0]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=folder + "/")
    keys = {o["Key"][len(folder) + 1:]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listing.get("Contents", [])}
    summary_bytes = keys["manifest-summary.json"]
    summary = json.loads(summary_bytes)
    files_bytes = keys["manifest-files.json"]
    files = [json.loads(line) for line in files_bytes.decode().split("\n") if line]
    items_by_file = {}
    for entry in files:
        relative = entry["dataFileS3Key"][len(folder) + 1:]
        raw = gzip.decompress(keys[relative])
        text = raw.decode("utf-8")
        lines = text.split("\n")
        assert lines[-1] == "", "every data line ends with a newline, including the last"
        lines = lines[:-1]
        if summary["outputFormat"] == "ION":
            items_by_file[entry["dataFileS3Key"]] = lines
        else:
            items_by_file[entry["dataFileS3Key"]] = [json.loads(line) for line in lines]
    return ReadExport(folder, keys, summary, summary_bytes, files, files_bytes, items_by_file)


def plain_value(attr: dict[str, Any]) -> Any:
    """DynamoDB JSON AttributeValue -> comparable Python value (sets as frozensets, numbers as Decimal)."""
    [(kind, value)] = attr.items()
    return {
        "S": lambda v: v, "N": Decimal, "B": base64.b64decode, "BOOL": bool, "NULL": lambda v: None,
        "SS": frozenset, "NS": lambda v: frozenset(Decimal(n) for n in v),
        "BS": lambda v: frozenset(base64.b64decode(b) for b in v),
        "L": lambda v: [plain_value(x) for x in v], "M": lambda v: {k: plain_value(x) for k, x in v.items()},
    }[kind](value)


def plain_ion(value: Any) -> Any:
    """A value parsed by amazon-ion -> the same comparable form as :func:`plain_value`."""
    from amazon.ion.core import IonType

    ion_type = getattr(value, "ion_type", None)
    annotations = {a.text for a in getattr(value, "ion_annotations", ())}
    if ion_type is IonType.NULL or type(value).__name__ == "IonPyNull":
        return None
    if annotations & {"$dynamodb_SS", "$dynamodb_NS", "$dynamodb_BS"}:
        return frozenset(Decimal(v) if "$dynamodb_NS" in annotations else
                         bytes(v) if "$dynamodb_BS" in annotations else str(v) for v in value)
    if ion_type is IonType.BOOL:
        return bool(value)
    if ion_type is IonType.DECIMAL:
        return Decimal(value)
    if ion_type is IonType.STRING:
        return str(value)
    if ion_type is IonType.BLOB:
        return bytes(value)
    if ion_type is IonType.LIST:
        return [plain_ion(v) for v in value]
    if ion_type is IonType.STRUCT:
        return {str(k): plain_ion(v) for k, v in value.items()}
    raise AssertionError(f"unexpected Ion value {value!r} ({ion_type})")


# -- incremental exports (EXPORT_FORMAT.md §4) ---------------------------------------------------


@dataclass
class ReadIncrementalExport:
    folder: str  # the export's own folder: <prefix>/AWSDynamoDB/<ExportId>
    keys: dict[str, bytes]  # objects below the export folder (manifests, checksums, _started)
    summary: dict[str, Any]
    summary_bytes: bytes
    files: list[dict[str, Any]]
    files_bytes: bytes
    data: dict[str, bytes]  # dataFileS3Key -> the .gz object as stored
    lines_by_file: dict[str, list[Any]]  # dataFileS3Key -> JSON objects, or Ion text lines

    @property
    def lines(self) -> list[Any]:
        return [line for lines in self.lines_by_file.values() for line in lines]

    def changes(self) -> list["PlainChange"]:
        return [plain_change(line, self.summary["outputFormat"]) for line in self.lines]


def read_incremental_export(s3: Any, bucket: str, manifest_key: str) -> ReadIncrementalExport:
    """Read an incremental export from its manifest-summary.json key. Data files are fetched by
    their ``dataFileS3Key`` (bucket-root keys, §6.3): they live in the shared ``AWSDynamoDB/data/``
    folder, so only the manifest says which are this export's (§4.1)."""
    folder = manifest_key.rsplit("/", 1)[0]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=folder + "/")
    keys = {o["Key"][len(folder) + 1:]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listing.get("Contents", [])}
    summary_bytes = keys["manifest-summary.json"]
    summary = json.loads(summary_bytes)
    files_bytes = s3.get_object(Bucket=bucket, Key=summary["manifestFilesS3Key"])["Body"].read()
    files = [json.loads(line) for line in files_bytes.decode().split("\n") if line]
    data, lines_by_file = {}, {}
    for entry in files:
        gz = s3.get_object(Bucket=bucket, Key=entry["dataFileS3Key"])["Body"].read()
        data[entry["dataFileS3Key"]] = gz
        lines = gzip.decompress(gz).decode("utf-8").split("\n")
        assert lines[-1] == "", "every data line ends with a newline, including the last"
        lines = lines[:-1]
        lines_by_file[entry["dataFileS3Key"]] = (lines if summary["outputFormat"] == "ION"
                                                 else [json.loads(line) for line in lines])
    return ReadIncrementalExport(folder, keys, summary, summary_bytes, files, files_bytes, data, lines_by_file)


@dataclass(frozen=True)
class PlainChange:
    """One incremental line in comparable form: images as :func:`plain_value` gives them."""

    keys: dict[str, Any]
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    write_micros: int
    fields: tuple[str, ...]  # the line's top-level fields, in order


def plain_change(line: Any, output_format: str) -> PlainChange:
    """A data line of an incremental export (a JSON object, or an Ion text line) -> PlainChange.

    The shape is decided from the top-level fields only (§6.9). ``WriteTimestampMicros`` may be
    ``{"N": "..."}``, a bare string or a number (an Ion decimal); an Ion line may wrap everything in
    a top-level ``Record`` struct (§4.3).
    """
    if output_format == "ION":
        from amazon.ion import simpleion

        document = simpleion.loads(line)
        if "Record" in document and "Keys" not in document:
            document = document["Record"]
        fields = tuple(str(k) for k in document.keys())
        image = lambda name: ({str(k): plain_ion(v) for k, v in document[name].items()}  # noqa: E731
                              if name in document else None)
        stamp = document["Metadata"]["WriteTimestampMicros"]
    else:
        fields = tuple(line)
        image = lambda name: ({k: plain_value(v) for k, v in line[name].items()}  # noqa: E731
                              if name in line else None)
        stamp = line["Metadata"]["WriteTimestampMicros"]
        if isinstance(stamp, dict):
            [(kind, stamp)] = stamp.items()
            assert kind == "N", f"WriteTimestampMicros is typed {kind}, expected N"
    micros = Decimal(str(stamp))
    assert micros == micros.to_integral_value(), f"WriteTimestampMicros {stamp!r} is not a whole number"
    keys = image("Keys")
    assert keys is not None, "every incremental line has Keys"
    return PlainChange(keys, image("OldImage"), image("NewImage"), int(micros), fields)
