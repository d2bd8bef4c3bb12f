"""Change sets: the one decode boundary for full and incremental exports.

Every export decodes into changes keyed by the table's primary key: an **upsert** (the item's new
image) or a **delete** (its keys), each with a write time. A full export is all upserts
(``{"Item": ...}`` lines, EXPORT_FORMAT.md §2); an incremental export's lines (§4.3) are

    {"Metadata": {"WriteTimestampMicros": {"N": "1715671204387215"}}, "Keys": {...},
     "OldImage": {...}?, "NewImage": {...}?}

with ``NewImage`` for inserts and updates, none for deletes (``Keys`` only under the NEW_IMAGE view,
``Keys`` + ``OldImage`` under NEW_AND_OLD_IMAGES). ``WriteTimestampMicros`` comes as ``{"N": …}``, a
string or a number (all accepted). Incremental Ion lines hold the same fields, at the top level or
under a ``Record`` struct (both accepted).

``incremental_to_items`` rewrites a piece of an incremental data file into item lines (the new image
of an upsert, the keys of a delete), **one line per line**, so that the item path (parse, checks,
profile, flatten) runs unchanged and its errors keep the file's line numbers; the change columns
travel beside the items. Above ``exports/`` nothing knows the line shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from ddb_assets.exports.errors import ExportFormatError

UPSERT, DELETE = 0, 1  # the operation column's values
MAX_MICROS = 253402300799_999_999  # 9999-12-31T23:59:59.999999Z


@dataclass
class ChangeColumns:
    """One value per (non-blank) line of a piece, in line order."""

    operation: pa.Array  # int8: UPSERT or DELETE
    write_micros: pa.Array  # int64: WriteTimestampMicros (microseconds since the epoch, DynamoDB's clock)
    key_names: tuple[str, ...]  # the Keys object's attribute names (the table's primary key), in line order

    @staticmethod
    def upserts(rows: int) -> "ChangeColumns":
        """A full export's piece: every item an upsert, no write time."""
        return ChangeColumns(pa.array([UPSERT] * rows, pa.int8()), pa.nulls(rows, pa.int64()), ())

    def table(self) -> pa.Table:
        return pa.table({"op": self.operation, "write_micros": self.write_micros})


def incremental_to_items(raw: bytes | memoryview, *, obj: str, ion: bool = False) -> tuple[bytes, ChangeColumns]:
    """An incremental piece -> (``{"Item": image-or-keys}`` lines, its change columns).

    Raises ExportFormatError naming ``obj`` and the line for a line that is not a change: malformed
    JSON/Ion, no ``Keys`` object, a ``NewImage`` that lacks a key attribute or disagrees with
    ``Keys``, a missing or malformed ``WriteTimestampMicros``.
    """
    out: list[bytes] = []
    operations: list[int] = []
    micros: list[int] = []
    key_names: tuple[str, ...] = ()
    for line, decoded in _lines(raw, obj, ion):
        if decoded is None:
            out.append(line)
            continue
        change, item, operation, written, key_names = decoded
        out.append(orjson.dumps({"Item": item}))
        operations.append(operation)
        micros.append(written)
    return b"\n".join(out), ChangeColumns(pa.array(operations, pa.int8()), pa.array(micros, pa.int64()), key_names)


@dataclass
class ChangeImages:
    """A piece of an incremental data file as three sets of ``{"Item": ...}`` lines, one line per
    change each, in line order (blank lines dropped): the new images (``{}`` for a delete), the old
    images (``{}`` where the line has none: inserts, and every line of the NEW_IMAGE view) and the
    keys; with the change columns and, per change, whether it carried an old image."""

    new: bytes
    old: bytes
    keys: bytes
    columns: ChangeColumns
    has_old: pa.Array  # bool


def incremental_images(raw: bytes | memoryview, *, obj: str, ion: bool = False) -> ChangeImages:
    """An incremental piece -> its changes' new images, old images and keys as item lines (for the
    change history). Raises ExportFormatError as ``incremental_to_items`` does, and for an
    ``OldImage`` whose key attributes disagree with ``Keys``."""
    new: list[bytes] = []
    old: list[bytes] = []
    keys: list[bytes] = []
    operations: list[int] = []
    micros: list[int] = []
    has_old: list[bool] = []
    key_names: tuple[str, ...] = ()
    for number, (_, decoded) in enumerate(_lines(raw, obj, ion), start=1):
        if decoded is None:
            continue
        change, item, operation, written, key_names = decoded
        old_image = change.get("OldImage")
        for name, value in change["Keys"].items():
            if old_image is not None and old_image.get(name) != value:
                raise ExportFormatError(obj, f"OldImage's key attribute {name!r} is {old_image.get(name)!r}, "
                                             f"Keys says {value!r}", line=number)
        new.append(orjson.dumps({"Item": item if operation == UPSERT else {}}))
        old.append(orjson.dumps({"Item": old_image or {}}))
        keys.append(orjson.dumps({"Item": change["Keys"]}))
        operations.append(operation)
        micros.append(written)
        has_old.append(old_image is not None)
    columns = ChangeColumns(pa.array(operations, pa.int8()), pa.array(micros, pa.int64()), key_names)
    return ChangeImages(b"\n".join(new), b"\n".join(old), b"\n".join(keys), columns, pa.array(has_old, pa.bool_()))


def _lines(raw: bytes | memoryview, obj: str, ion: bool):  # type: ignore[no-untyped-def]
    """Per line: (the line, None) for a blank one, else (line, (the change as a dict, its item,
    operation, write micros, key names)); errors name ``obj`` and the line."""
    key_names: tuple[str, ...] = ()
    for number, line in enumerate(bytes(raw).split(b"\n"), start=1):
        if not line.strip():
            yield line, None
            continue
        try:
            change = _parse_ion(line) if ion else orjson.loads(line)
        except (ValueError, orjson.JSONDecodeError) as exc:
            # An Ion error says so itself, as a full export's does (exports/ion_codec.py).
            raise ExportFormatError(obj, str(exc) if ion else f"malformed JSON ({exc})", line=number) from None
        try:
            item, operation, written, names = _decode(change)
        except ValueError as exc:
            raise ExportFormatError(obj, str(exc), line=number) from None
        if key_names and names != key_names:
            raise ExportFormatError(obj, f"Keys holds {', '.join(names)}; earlier lines hold "
                                         f"{', '.join(key_names)}", line=number)
        key_names = names
        if set(change) == {"Record"}:
            change = change["Record"]
        yield line, (change, item, operation, written, names)


def _decode(change: Any) -> tuple[dict[str, Any], int, int, tuple[str, ...]]:
    if not isinstance(change, dict):
        raise ValueError(f"expected an incremental export line (Metadata, Keys, NewImage/OldImage), "
                         f"found {type(change).__name__}")
    if set(change) == {"Record"} and isinstance(change["Record"], dict):
        change = change["Record"]  # the Ion form some readers see (EXPORT_FORMAT.md §4.3)
    unknown = set(change) - {"Metadata", "Keys", "NewImage", "OldImage"}
    if unknown:
        raise ValueError(f"expected an incremental export line; found top-level key(s) "
                         f"{', '.join(repr(k) for k in sorted(unknown))}" +
                         (" (a full export's line)" if "Item" in unknown else ""))
    keys = change.get("Keys")
    if not isinstance(keys, dict) or not keys:
        raise ValueError("'Keys' must be an object holding the item's key attributes")
    written = _write_micros(change.get("Metadata"))
    new_image = change.get("NewImage")
    for name in ("NewImage", "OldImage"):
        if name in change and not isinstance(change[name], dict):
            raise ValueError(f"'{name}' must be an object of attributes")
    if new_image is None:
        return keys, DELETE, written, tuple(keys)
    for name, value in keys.items():
        if new_image.get(name) != value:
            raise ValueError(f"NewImage's key attribute {name!r} is {new_image.get(name)!r}, Keys says {value!r}")
    return new_image, UPSERT, written, tuple(keys)


def _write_micros(metadata: Any) -> int:
    if not isinstance(metadata, dict) or "WriteTimestampMicros" not in metadata:
        raise ValueError("'Metadata.WriteTimestampMicros' is missing")
    value = metadata["WriteTimestampMicros"]
    if isinstance(value, dict) and set(value) == {"N"}:
        value = value["N"]
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18 \
            and int(value) <= MAX_MICROS:
        return int(value)  # what DynamoDB writes (a plain digit string, in range): no Decimal per line
    micros: int | None = None
    if not isinstance(value, bool) and isinstance(value, (int, str, float)) or type(value).__name__ == "Decimal":
        from decimal import Decimal, InvalidOperation

        try:
            exact = Decimal(str(value).strip())
            if exact.is_finite() and exact == exact.to_integral_value():
                micros = int(exact)
        except InvalidOperation:
            pass
    if micros is None or not 0 <= micros <= MAX_MICROS:
        raise ValueError(f"'Metadata.WriteTimestampMicros' must be microseconds since the epoch "
                         f"({{\"N\": \"...\"}}, a string or a number), found {metadata['WriteTimestampMicros']!r}")
    return micros


def _parse_ion(line: bytes) -> dict[str, Any]:
    """An incremental Ion line as the JSON form: images as DynamoDB JSON AttributeValues."""
    from collections.abc import Mapping

    from ddb_assets.exports.ion_codec import ion_value_to_attribute, load_ion_line

    document = load_ion_line(line.decode("utf-8"), frozenset({"Keys", "NewImage", "OldImage"}))
    if not isinstance(document, Mapping):
        raise ValueError("expected an Ion struct")
    if set(document) == {"Record"} and isinstance(document["Record"], Mapping):
        document = document["Record"]
    out: dict[str, Any] = {}
    for name, value in document.items():
        if name in ("Keys", "NewImage", "OldImage"):
            if not isinstance(value, Mapping):
                raise ValueError(f"'{name}' must be an Ion struct")
            out[name] = {str(k): ion_value_to_attribute(v, path=str(k)) for k, v in value.items()}
        elif name == "Metadata" and isinstance(value, Mapping):
            micros = value.get("WriteTimestampMicros")
            out[name] = {"WriteTimestampMicros": str(micros) if micros is not None else None}
        else:
            out[str(name)] = None  # an unknown field: _decode names it
    return out


__all__ = ["ChangeColumns", "ChangeImages", "DELETE", "UPSERT", "incremental_images", "incremental_to_items"]
