"""DynamoDB AttributeValues as plain JSON text: ``{"N": "42"}`` -> ``42``, ``{"SS": [...]}`` -> a list.

How maps used as dictionaries and lists of mixed types are stored (one JSON text column, see
docs/schema_rules.md). Numbers keep their exact decimal text, as JSON numbers; sets are sorted and
map keys too, so that one value always gives one text, however it was parsed.

A map or list already turned into its text (a dictionary map lifted before the parse, a value
carried as text below ``exports.decode.CARRIED_DEPTH``) comes under an internal descriptor,
``RAW_MAP`` or ``RAW_LIST``; its text goes into an enclosing value's text as it is.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

from ddb_assets.exports.numbers import JSON_NUMBER_TEXT, NUMBER_TEXT, canonical_number, range_problem

# What B and BS hold: standard padded base64 (a regex in Arrow's and RE2's syntax alike).
BASE64_TEXT = r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_SORTED = orjson.OPT_SORT_KEYS
_JSON_NUMBER = re.compile(JSON_NUMBER_TEXT)
_NUMBER = re.compile(NUMBER_TEXT)
_BASE64 = re.compile(BASE64_TEXT)
# Internal type descriptors of a map / a list carried as its plain JSON text (never in an export:
# exports.decode rejects them there).
RAW_MAP = "_Mjson"
RAW_LIST = "_Ljson"


def plain_json_text(value: Any) -> str:
    """``value`` (from ``plain_map`` or ``plain_value``) as compact JSON with sorted keys."""
    return orjson.dumps(value, option=_SORTED).decode("utf-8")


def plain_map(fields: dict[str, Any]) -> dict[str, Any]:
    """A map's attributes (name -> AttributeValue; None for absent) as plain values."""
    return {name: plain_value(wrapper) for name, wrapper in fields.items() if wrapper is not None}


def plain_value(wrapper: dict[str, Any] | None) -> Any:
    """One AttributeValue as a plain value (None where every descriptor is absent)."""
    if wrapper is None:
        return None
    for kind, value in wrapper.items():
        if value is None:
            continue
        if kind in ("S", "B", "BOOL"):
            return value  # B is base64 text already
        if kind == "N":
            return _number(value)
        if kind == "NULL":
            return None
        if kind in ("SS", "BS"):
            return sorted(value)  # sets have no order; sorted makes the text deterministic
        if kind == "NS":
            return [_number(v) for v in sorted(value, key=Decimal)]
        if kind == "M":
            return plain_map(value)
        if kind == "L":
            return [plain_value(element) for element in value]
        if kind in (RAW_MAP, RAW_LIST):
            return orjson.Fragment(value)  # plain_json_text's output already
    return None


def _number(text: str) -> orjson.Fragment | None:
    """The exact number text as a JSON number; None if it is no number. Forms JSON does not allow
    ("+5", ".5", "05") are written in their canonical form, same value."""
    if _JSON_NUMBER.fullmatch(text):
        return orjson.Fragment(text.encode("ascii"))
    if _NUMBER.fullmatch(text):
        return orjson.Fragment(canonical_number(text).encode("ascii"))
    return None


def checked_plain_map(fields: Any) -> dict[str, Any]:
    """``plain_map`` for a map nothing has checked yet (a dictionary map lifted out of the text
    before the parse): raises ValueError at the first value that is not a valid AttributeValue.
    One walk does both, as it runs for every line holding such a map."""
    if type(fields) is not dict:
        raise ValueError("M must be an object")
    return {name: _checked(wrapper) for name, wrapper in fields.items()}


def _checked(wrapper: Any) -> Any:
    if type(wrapper) is dict and len(wrapper) == 1:
        for kind, inner in wrapper.items():
            if kind == "S" and type(inner) is str:
                return inner
            if kind == "N" and type(inner) is str:
                number = _number(inner)
                if number is not None and range_problem(inner) is None:
                    return number
            elif kind == "M":
                return checked_plain_map(inner)
            elif kind == "BOOL" and type(inner) is bool:
                return inner
            elif kind == "NULL" and inner is True:
                return None
            elif kind == "L" and type(inner) is list:
                return [_checked(element) for element in inner]
            elif kind == "B" and type(inner) is str and _BASE64.fullmatch(inner):
                return inner
            elif kind in ("SS", "NS", "BS") and type(inner) is list and inner:
                return plain_value({kind: _checked_set(kind, inner)})
    raise ValueError(f"not a valid AttributeValue: {wrapper!r:.80}")


def _checked_set(kind: str, values: list[Any]) -> list[str]:
    rule = {"NS": _NUMBER, "BS": _BASE64}.get(kind)
    for value in values:
        if type(value) is not str or (rule is not None and not rule.fullmatch(value)) \
                or (kind == "NS" and range_problem(value) is not None):
            raise ValueError(f"{kind} holds {value!r:.80}")
    return values
