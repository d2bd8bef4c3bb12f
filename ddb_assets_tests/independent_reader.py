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
