"""Where an export holds the items of one primary key: the data files and lines a DuplicateKey names.

The key check (lake/unique_keys.py) finds a key held twice in the Parquet files a conversion
wrote, where the export's lines are no longer known. On that failure path only, the export's data
files are read again, in manifest order, to name the first items holding the key: each file is
decompressed a piece at a time (exports.buffers, as a conversion reads it: memory follows the
piece size), each piece searched for a literal fragment of the key's values (a ``find`` in C over
the bytes, no parse), and only the lines holding a fragment of every value are parsed (DYNAMODB_JSON
or ION) and compared attribute by attribute. The search stops as soon as ``wanted`` items are found.

A line that writes the key's characters as escapes (``\\u0041`` for ``A``, an Ion ``0x10`` for
``16``) is not found: the caller then names fewer items, never a wrong one.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator, Sequence

import orjson

from ddb_assets.exports.buffers import ByteArena, Text, gunzip_pieces
from ddb_assets.exports.numbers import EXACT, parse_number
from ddb_assets.exports.reader import DataFile

# Printable ASCII that JSON and Ion strings (and Ion symbols, and base64) write as it is: neither a
# quote, a slash (JSON may write \/) nor a backslash. Anything else may be written as an escape.
_LITERAL = re.compile(rb"[ !#-&(-.0-\[\]-~]+")
PIECE_BYTES = 8 << 20  # decompressed bytes searched at a time


@dataclass(frozen=True)
class KeyValue:
    """One attribute of a primary key: its name, its type descriptor (``S``, ``N`` or ``B``) and
    its value as the lake holds it (``str`` for S, and for N in a text column; ``int`` or
    ``Decimal`` for N; ``bytes`` for B)."""

    attribute: str
    descriptor: str
    value: Any


def lines_holding_key(files: Sequence[DataFile], key: Sequence[KeyValue], *, wanted: int = 2,
                      piece_bytes: int = PIECE_BYTES) -> list[tuple[str, int]]:
    """The first ``wanted`` items (fewer if the files hold fewer) of ``files`` whose attributes
    hold every value of ``key``, as (the file as errors name it, its 1-based line number), in
    the files' order. Reads the files again (error path only); raises what reading them raises
    (MissingObject, UnreadableObject, ChecksumMismatch, ExportFormatError)."""
    tests = [alternatives for alternatives in map(_fragments, key) if alternatives]
    # The most telling single fragment is searched for; the others are checked on its lines.
    anchor = max((alternatives[0] for alternatives in tests if len(alternatives) == 1), key=len, default=None)
    found: list[tuple[str, int]] = []
    arena = ByteArena()
    for data_file in files:
        ion = data_file.output_format == "ION"
        stream = data_file.stream_verified()
        try:
            lines_before = 0
            for text, _ in gunzip_pieces(stream, arena, obj=data_file.name, piece_bytes=piece_bytes):
                counted, number = 0, lines_before
                for start, end in _candidate_lines(text, anchor):
                    line = text[start:end]
                    if all(any(fragment in line for fragment in alternatives) for alternatives in tests) \
                            and _holds(line, key, ion):
                        number += text.count(b"\n", counted, start)
                        counted = start
                        found.append((data_file.name, number + 1))
                        if len(found) >= wanted:
                            return found
                lines_before += text.count(b"\n")
        finally:
            stream.close()
    return found


def _candidate_lines(text: Text, anchor: bytes | None) -> Iterator[tuple[int, int]]:
    """(start, end) of the lines of ``text`` holding ``anchor`` (every line when None), in order."""
    size = len(text)
    if anchor is None:
        start = 0
        while start < size:
            end = text.find(b"\n", start)
            end = size if end < 0 else end
            yield start, end
            start = end + 1
        return
    at = text.find(anchor)
    while at >= 0:
        start = text.rfind(b"\n", 0, at) + 1
        end = text.find(b"\n", at)
        end = size if end < 0 else end
        yield start, end
        at = text.find(anchor, end + 1)


def _fragments(key: KeyValue) -> tuple[bytes, ...]:
    """Byte strings one of which any line holding ``key``'s value contains, however it writes
    it (empty: no cheap test, the lines are parsed)."""
    value = key.value
    if key.descriptor == "S" and isinstance(value, str):
        runs = _LITERAL.findall(value.encode("utf-8"))
        return (max(runs, key=len),) if runs else ()
    if key.descriptor == "B" and isinstance(value, (bytes, bytearray)):
        text = base64.b64encode(bytes(value))
        # Past the last whole group a hand-made encoding may differ (padding, unused bits).
        text = text if len(value) % 3 == 0 else text[:-4]
        return (text,) if text else ()
    if key.descriptor == "N":
        # Any notation of a number (1200, 1.2E3, 12d2, 1200.00) holds its significant digits
        # with at most one point in between: the first half or the second is unbroken.
        digits = "".join(map(str, _decimal(value).normalize(EXACT).as_tuple().digits)).encode()
        half = len(digits) // 2
        return (digits[:half], digits[half:]) if half else (digits,)
    return ()


def _holds(line: bytes, key: Sequence[KeyValue], ion: bool) -> bool:
    try:
        if ion:
            from ddb_assets.exports.ion_codec import parse_ion_line  # amazon-ion: ION exports only

            item = parse_ion_line(line)
        else:
            item = orjson.loads(line).get("Item")
    except Exception:  # noqa: BLE001 - a line that does not parse holds no item (the conversion said so)
        return False
    return isinstance(item, dict) and all(_same(item.get(k.attribute), k) for k in key)


def _same(attribute: Any, key: KeyValue) -> bool:
    """Whether a DynamoDB JSON AttributeValue holds ``key``'s value (numbers by value: 1.50 is 1.5)."""
    if not isinstance(attribute, dict) or set(attribute) != {key.descriptor}:
        return False
    text = attribute[key.descriptor]
    if not isinstance(text, str):
        return False
    try:
        if key.descriptor == "N":
            return parse_number(text) == _decimal(key.value)
        if key.descriptor == "B":
            return base64.b64decode(text, validate=True) == bytes(key.value)
    except (ValueError, binascii.Error):
        return False
    return text == key.value


def _decimal(value: Any) -> Decimal:
    return parse_number(value) if isinstance(value, str) else Decimal(value)


__all__ = ["KeyValue", "PIECE_BYTES", "lines_holding_key"]
