"""DynamoDB attribute values as DynamoDB itself keeps them: one text per number, checked range.

DynamoDB normalizes every number it stores (``N``, each member of ``NS``, at any depth of ``L``
and ``M``): ``"1.0"`` is stored and returned as ``"1"``, ``"1e3"`` as ``"1000"``, ``"-0.50"`` as
``"-0.5"``, ``"+007"`` as ``"7"`` ("Leading and trailing zeroes are trimmed", DynamoDB developer
guide, Data types: Number). Numbers with more than 38 significant digits, or a magnitude outside
1E-130..9.99...E+125, are refused with ValidationException. moto keeps numbers as written and
checks the range through a float only; the emulator (``local/emulator.py``) uses this module to
close both gaps, so the table, GetItem/Scan and every export hold DynamoDB's own text.

Values are DynamoDB JSON as moto's request parser hands them over (``{"N": "1.0"}``,
``{"B": b"..."}`` or its base64 text); the text form for a number is
``exports.numbers.canonical_number``, the one the lake uses.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

from ddb_assets.exports.numbers import MAX_DIGITS, canonical_number, parse_number, range_problem

# DynamoDB's ValidationException messages for numbers out of its range.
TOO_MANY_DIGITS = f"Attempting to store more than {MAX_DIGITS} significant digits in a Number"
OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"
UNDERFLOW = "Number underflow. Attempting to store a number with magnitude smaller than supported range"


def number_refusal(text: str) -> str | None:
    """DynamoDB's ValidationException message for a number text it cannot store, or None when
    it can (text moto already accepted as numeric)."""
    problem = range_problem(text)
    if problem is None:
        return None
    if "significant digits" in problem:
        return TOO_MANY_DIGITS
    return OVERFLOW if abs(parse_number(text)) >= 1 else UNDERFLOW


def first_refusal(values: Any) -> str | None:
    """The first number refusal (:func:`number_refusal`) anywhere in ``values``: an attribute
    value, a map of them (an item, a key, ExpressionAttributeValues) or a list or tuple of any of
    these; None if none."""
    if isinstance(values, dict):
        if len(values) == 1:
            (kind, value), = values.items()
            if kind == "N" and isinstance(value, str):
                return number_refusal(value)
            if kind == "NS" and isinstance(value, list):
                refusal = next((r for r in map(number_refusal, value) if r), None)
                if refusal is None and len({parse_number(text) for text in value}) < len(value):
                    # "1" and "1.0" are one number: a set holding both holds a duplicate
                    return f"One or more parameter values were invalid: Input collection [{', '.join(value)}] " \
                           "contains duplicates."
                return refusal
        return next((r for r in map(first_refusal, values.values()) if r is not None), None)
    if isinstance(values, (list, tuple)):
        return next((r for r in map(first_refusal, values) if r is not None), None)
    return None


def key_text(values: list[dict[str, Any] | None]) -> str:
    """One string per primary key, equal exactly when DynamoDB sees the same item: numbers by
    value (``"1.0"`` and ``"1"`` alike), binary by its bytes (raw or base64 text alike), strings
    as they are. ``values`` are the key attributes' values, partition key first. The text is the
    values' DynamoDB JSON in a list: ``[{"S": "a"}, {"N": "1000"}]``."""
    return json.dumps([_key_part(value) for value in values])


def _key_part(value: dict[str, Any] | None) -> dict[str, str] | None:
    if value is None:
        return None
    (kind, raw), = value.items()
    if kind == "N":
        return {kind: canonical_number(Decimal(raw) if not isinstance(raw, str) else raw)}
    if kind == "B":
        return {kind: base64.b64encode(raw).decode("ascii") if isinstance(raw, bytes) else str(raw)}
    return {kind: str(raw)}
