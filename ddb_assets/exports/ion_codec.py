"""DynamoDB items in Amazon Ion text, as full ION exports hold them (EXPORT_FORMAT.md §3).

Each data line is ``$ion_1_0 {Item:{...}}``. Numbers are Ion decimals (``4.``, ``12d2``), binary
values are blobs and sets are lists annotated ``$dynamodb_SS``/``$dynamodb_NS``/``$dynamodb_BS``.
Both directions go through the ``amazon-ion`` package; items are exchanged in the DynamoDB JSON
AttributeValue form (``{"N": "4"}``) so that the rest of the code sees one representation.
"""

from __future__ import annotations

import base64
import io
import re
import threading
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Iterator

from amazon.ion import simpleion, writer_text
from amazon.ion.core import IonType
from collections.abc import Mapping

from amazon.ion.simple_types import IonPyBytes, IonPyList, IonPyNull

from ddb_assets.exports.numbers import canonical_number, parse_number

SET_ANNOTATIONS = {"SS": "$dynamodb_SS", "NS": "$dynamodb_NS", "BS": "$dynamodb_BS"}
_SET_OF_ANNOTATION = {annotation: kind for kind, annotation in SET_ANNOTATIONS.items()}


def item_to_ion_line(item: dict[str, Any]) -> bytes:
    """One export line: ``$ion_1_0 {Item:{...}}`` followed by a newline."""
    value = {"Item": {name: _to_ion(attr) for name, attr in item.items()}}
    out = io.BytesIO()
    with _aws_decimal_style():
        simpleion.dump_python(value, out, binary=False)
    return out.getvalue() + b"\n"


def change_to_ion_line(write_timestamp_micros: int, images: dict[str, dict[str, Any]]) -> bytes:
    """One incremental-export line in Ion, ``$ion_1_0 {Metadata:{WriteTimestampMicros:1715671204387215.},
    Keys:{...},OldImage:{...},NewImage:{...}}`` plus a newline. ``images`` maps ``Keys``/``OldImage``/
    ``NewImage`` (in that order, each optional) to DynamoDB JSON attribute maps.

    The shape follows the AWS docs as reported (a top-level struct, the timestamp an Ion decimal);
    no real incremental ION file has been seen (EXPORT_FORMAT.md §4.3), so readers accept others.
    """
    value: dict[str, Any] = {"Metadata": {"WriteTimestampMicros": Decimal(write_timestamp_micros)}}
    value.update((part, {name: _to_ion(attr) for name, attr in image.items()}) for part, image in images.items())
    out = io.BytesIO()
    with _aws_decimal_style():
        simpleion.dump_python(value, out, binary=False)
    return out.getvalue() + b"\n"


def ion_value_to_attribute(value: Any, *, path: str) -> dict[str, Any]:
    """Turn a parsed Ion value back into a DynamoDB AttributeValue (JSON form)."""
    ion_type = getattr(value, "ion_type", None)
    annotations = [a.text for a in getattr(value, "ion_annotations", ())]
    if value is None or ion_type is IonType.NULL or isinstance(value, IonPyNull):
        return {"NULL": True}  # any typed null (null.string, ...) is still DynamoDB's NULL
    set_kind = next((_SET_OF_ANNOTATION[a] for a in annotations if a in _SET_OF_ANNOTATION), None)
    if set_kind is not None:
        if set_kind == "SS":
            return {"SS": [str(v) for v in value]}
        if set_kind == "NS":
            return {"NS": [_number_text(v, path) for v in value]}
        return {"BS": [base64.b64encode(bytes(v)).decode("ascii") for v in value]}
    if isinstance(value, bool) or ion_type is IonType.BOOL:
        return {"BOOL": bool(value)}
    if ion_type in (IonType.STRING, IonType.SYMBOL) or (ion_type is None and isinstance(value, str)):
        return {"S": str(value)}
    if ion_type in (IonType.DECIMAL, IonType.INT) or isinstance(value, (Decimal, int)):
        return {"N": _number_text(value, path)}
    if ion_type in (IonType.BLOB, IonType.CLOB) or isinstance(value, (bytes, bytearray)):
        return {"B": base64.b64encode(bytes(value)).decode("ascii")}
    if ion_type is IonType.STRUCT or isinstance(value, Mapping):
        return {"M": {str(k): ion_value_to_attribute(v, path=f"{path}.{k}") for k, v in value.items()}}
    if ion_type in (IonType.LIST, IonType.SEXP) or isinstance(value, list):
        return {"L": [ion_value_to_attribute(v, path=f"{path}[{i}]") for i, v in enumerate(value)]}
    raise ValueError(f"attribute {path!r}: Ion {ion_type.name if ion_type else type(value).__name__} "
                     "has no DynamoDB equivalent")


def parse_ion_line(line: bytes) -> dict[str, Any]:
    """Parse one ``$ion_1_0 {Item:{...}}`` line into a DynamoDB JSON item. Raises ValueError."""
    document = load_ion_line(line.decode("utf-8"), frozenset({"Item"}))
    if not isinstance(document, Mapping) or "Item" not in document:
        raise ValueError("expected an Ion struct with an 'Item' field")
    item = document["Item"]
    if not isinstance(item, Mapping):
        raise ValueError("'Item' must be an Ion struct")
    return {str(name): ion_value_to_attribute(value, path=str(name)) for name, value in item.items()}


def load_ion_line(text: str, images: frozenset[str]) -> Any:
    """One Ion line's value. Raises ValueError ``not valid Ion text (...)``, naming the attribute
    being read (``attribute 'price': ...``) when the error is inside one of ``images`` (the
    fields holding items: ``Item``; ``NewImage``, ``OldImage``, ``Keys``, also inside ``Record``)."""
    try:
        return simpleion.loads(text)
    except Exception:  # amazon-ion raises a mix of IonException, ValueError and others
        # The C extension rejects some valid escapes (e.g. "\U0001d800" as "invalid UTF-8");
        # the pure-Python parser is slower but right, so it has the last word.
        try:
            return simpleion.load_python(io.StringIO(text))
        except Exception as exc:
            found = re.search(r"at position (\d+)", str(exc))  # the pure-Python parser says where
            path = _attribute_at(text[:int(found[1])], images) if found else None
            raise ValueError((f"attribute {path!r}: " if path else "") + f"not valid Ion text ({exc})") from None


# An Ion text token, as far as finding field names needs: strings and quoted symbols (a field
# name when ':' follows), identifiers, '::' (annotations), ':', brackets, any other character.
_TOKEN = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_$][\w$]*|::|[{}\[\]():]|\S""", re.S)


def _attribute_at(text: str, images: frozenset[str]) -> str | None:
    """The attribute path (``a.b``, ``a[]``) whose value ``text`` (a line up to an error) ends
    in, or None when that is outside the fields ``images`` names. Read on errors only."""
    open_: list[list[Any]] = []  # per open container: [is a struct, its current field name]
    previous = ""
    for token in _TOKEN.findall(text):
        if token == "{":
            open_.append([True, None])
        elif token in "[(" and len(token) == 1:
            open_.append([False, None])
        elif token in ("}", "]", ")") and open_:
            open_.pop()
        elif token == ":" and open_ and open_[-1][0] and previous not in ("", ":", "::", ",", "{"):
            open_[-1][1] = previous[1:-1] if previous[:1] in "\"'" else previous
        previous = token
    names = ["[]" if not is_struct else name for is_struct, name in open_]
    if names[:1] == ["Record"]:
        names = names[1:]
    if len(names) < 2 or names[0] not in images or names[1] is None or None in names:
        return None
    path = names[1]
    for name in names[2:]:
        path += name if name == "[]" else f".{name}"
    return path


def _number_text(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise ValueError(f"attribute {path!r}: expected an Ion decimal, found {value!r}")
    return canonical_number(Decimal(value))


def _to_ion(attr: dict[str, Any]) -> Any:
    [(kind, raw)] = attr.items()
    if kind == "S":
        return raw
    if kind == "N":
        return parse_number(raw)
    if kind == "B":
        return IonPyBytes.from_value(IonType.BLOB, base64.b64decode(raw))
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return {name: _to_ion(value) for name, value in raw.items()}
    if kind == "L":
        return [_to_ion(value) for value in raw]
    if kind in SET_ANNOTATIONS:
        element = {"SS": lambda s: s, "NS": parse_number,
                   "BS": lambda b: IonPyBytes.from_value(IonType.BLOB, base64.b64decode(b))}[kind]
        return IonPyList.from_value(IonType.LIST, [element(v) for v in raw], annotations=(SET_ANNOTATIONS[kind],))
    raise ValueError(f"unknown DynamoDB type descriptor {kind!r}")


_STYLE_LOCK = threading.Lock()


@contextmanager
def _aws_decimal_style() -> Iterator[None]:
    """Write integral decimals the way DynamoDB does (``4.``), not amazon-ion's default (``4d0``).

    amazon-ion has no option for this, so its text writer's decimal entry is swapped for the
    duration of one write; the lock keeps concurrent writers in this process consistent.
    """
    table = writer_text._SERIALIZE_SCALAR_JUMP_TABLE
    with _STYLE_LOCK:
        original = table[IonType.DECIMAL]
        table[IonType.DECIMAL] = _serialize_aws_decimal
        try:
            yield
        finally:
            table[IonType.DECIMAL] = original


def _aws_decimal_text(value: Decimal) -> str:
    _, _, exponent = value.as_tuple()
    if exponent == 0:
        return f"{value}."  # 4 -> "4."
    return str(value).replace("E", "d").replace("e", "d")


_serialize_aws_decimal = writer_text._serialize_scalar_from_string_representation_factory(
    "decimal", Decimal, str_func=_aws_decimal_text
)
