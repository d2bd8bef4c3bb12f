"""arrow-rs's JSON reader (through ``arro3-io``) as the fast path of ``exports.decode``, where it is exact.

It parses the export's items with less CPU than pyarrow's reader given the same explicit schema
(bench/README.md, "JSON readers"), but it differs from it in ways that matter here:

- it cannot infer a schema: it is used only with the one learned from earlier pieces;
- it silently ignores keys outside the schema (arrow-rs has a strict mode, ``arro3-io`` does not
  expose it) and keeps the last of duplicate keys;
- it takes commas as whitespace inside objects and lists (``{"a":1,}``, ``["a" "b"]`` read fine)
  and raw control characters inside strings, which pyarrow's reader refuses;
- its errors carry no line.

So a piece read by it is accepted only when the text and the table account for each other
(``_accounted``): every colon outside strings is a key the table holds, every comma outside strings
separates two members the table holds, no comma can be anywhere else, and each row is one line
(a line end inside a string is a raw control character too). Text with other raw control
characters, or with a colon or comma written as a ``\\u`` escape, is not tried; nor is text with
``\\u0000``: arrow-rs's error messages quote the value they could not read, and an error holding
that character aborts the process (arro3's C stream export panics turning it into a C string, and a
panic there cannot unwind), where any other error only sends the piece to pyarrow. Anything else
(a check that fails, any error) returns None: pyarrow's reader parses the piece, with its inference
and its errors (and the bad-line search) as before. The table returned is pyarrow's, to the bit.
"""

from __future__ import annotations

from typing import Iterable

import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from arro3.io import read_json as _arrow_rs_read_json

from ddb_assets.exports.buffers import Text, translate_view

JSON_READERS = ("arrow-rs", "pyarrow")
DEFAULT_JSON_READER = "arrow-rs"
# Rows per arrow-rs batch: measured best around 1,024 (8,192 took 1.4x the CPU, 65,536 more than
# pyarrow's reader); the batches are concatenated into one array per piece.
BATCH_ROWS = 1024

# The text is looked at through one pass that keeps only structural characters, quotes,
# backslashes, line ends and other control characters, with brackets written as braces.
_STRUCTURAL = b'{}:,"\\\n'
_CONTROL = bytes(c for c in range(32) if c != ord("\n"))
_BRACKETS_AS_BRACES = bytes.maketrans(b"[]", b"{}")
_DELETE_FROM_TEXT = bytes(c for c in range(256) if c not in _STRUCTURAL + b"[]" + _CONTROL)
_DELETE_FROM_STRINGS = bytes(c for c in range(256) if c not in b":,")
# What no valid line holds, whitespace between or not, and arrow-rs would take: a comma after an
# opening bracket, before a closing one or after another comma; two values with nothing between
# (seen with everything else deleted, these can come from inside strings too: a false alarm only
# sends the piece to pyarrow).
_NEVER_IN_A_LINE = r"\{,|,,|,\}|\}\{"  # one RE2 pass (pyarrow.compute) over what the text pass kept
# ':' or ',' written as a \u escape; or the character 0, which must never reach an error message
# of arrow-rs (the module's docstring: the process aborts).
_ESCAPE = re.compile(rb"\\u00(?:3[aA]|2[cC]|00)")


# When arrow-rs could not read a piece (it brought what the schema lacks), pyarrow's reader parsed
# it after all: the next 1, 3, 7, then 15 pieces go straight to pyarrow while misses continue, so a
# table whose pieces keep bringing new attributes pays for few vain tries. Carried in the learned
# schema's metadata, which is all a worker keeps from one piece to the next.
_MISSES, _SKIP = b"ddb_assets.arrow_rs_misses", b"ddb_assets.arrow_rs_skip"
MAX_SKIP = 15


def worth_trying(schema: pa.Schema) -> bool:
    return int((schema.metadata or {}).get(_SKIP, b"0")) == 0


def remember(learned: pa.Schema, used: pa.Schema | None, tried: bool, read: bool) -> pa.Schema:
    """``learned`` (the next piece's schema) with the record of tries updated after this piece."""
    record = (used.metadata or {}) if used is not None else {}
    misses, skip = int(record.get(_MISSES, b"0")), int(record.get(_SKIP, b"0"))
    if not tried:
        skip = max(skip - 1, 0)
    elif read:
        misses, skip = 0, 0
    else:
        misses += 1
        skip = min(2 ** misses - 1, MAX_SKIP)
    if not (misses or skip):
        return learned
    return learned.with_metadata({_MISSES: str(misses).encode(), _SKIP: str(skip).encode()})


@dataclass
class ReaderCounts:
    """Pieces parsed by each reader (a conversion's summary says which parse path ran)."""

    arrow_rs: int = 0  # read by arrow-rs, its table shown to be the one pyarrow's reader gives
    pyarrow: int = 0  # read by pyarrow's reader: by the setting, or fallen back to from arrow-rs

    def add(self, other: "ReaderCounts") -> None:
        self.arrow_rs += other.arrow_rs
        self.pyarrow += other.pyarrow

    @classmethod
    def total(cls, counts: "Iterable[ReaderCounts]") -> "ReaderCounts":
        """The sum of several files' or shards' counts."""
        summed = cls()
        for each in counts:
            summed.add(each)
        return summed

    def describe(self, setting: str, output_format: str = "DYNAMODB_JSON") -> str:
        """One line, e.g. ``arrow-rs: 38 of 40 pieces, 2 fell back to pyarrow's reader``. An ION
        export's pieces are Ion text that amazon-ion decodes into DynamoDB JSON lines first; the
        line says so, and which JSON reader then parsed those, e.g. ``ION: 4 pieces decoded by
        amazon-ion into DynamoDB JSON lines, parsed by pyarrow's reader``."""
        pieces = self.arrow_rs + self.pyarrow
        if output_format == "ION":
            by = [f"{reader} ({count})" if self.arrow_rs and self.pyarrow else reader
                  for reader, count in (("arrow-rs", self.arrow_rs), ("pyarrow's reader", self.pyarrow)) if count]
            return (f"ION: {pieces} piece{'s' * (pieces != 1)} decoded by amazon-ion into DynamoDB JSON lines"
                    + (f", parsed by {' and '.join(by)}" if by else ""))
        if setting == "pyarrow":
            return f"pyarrow (setting): {pieces} piece{'s' * (pieces != 1)}"
        return f"arrow-rs: {self.arrow_rs} of {pieces} pieces, {self.pyarrow} fell back to pyarrow's reader"


def check_reader(name: str) -> str:
    if name not in JSON_READERS:
        raise ValueError(f"unknown JSON reader {name!r}; expected one of {', '.join(JSON_READERS)}")
    return name


def read_items(text: Text, schema: pa.Schema) -> pa.Table | None:
    """``text`` (DYNAMODB_JSON lines) parsed by arrow-rs with ``schema`` (learned, with the types
    of empty lists kept: see ``reader_schema``), as pyarrow's reader would have returned it; or
    None when it cannot be shown to be that table (the caller then parses with pyarrow's reader)."""
    if not _fits(schema):
        return None
    counted = _text_counts(text)
    if counted is None:
        return None
    try:
        batches = _arrow_rs_read_json(text.view(), reader_schema(schema), batch_size=BATCH_ROWS)
        item = pa.table(batches).column("Item").combine_chunks()
    except Exception:  # noqa: BLE001 - any failure (errors carry no line): pyarrow's reader says what and where
        return None
    item = _without_absent_empty_lists(item)
    if item is None or len(item) != counted[2] or not _accounted(item, *counted[:2]):
        return None
    return pa.table({"Item": item})


# -- the schema -----------------------------------------------------------------------------------

def _fits(schema: pa.Schema) -> bool:
    """Only the shape of valid DynamoDB JSON lines: one struct ``Item`` of strings and booleans,
    no name holding the character 0 (the C data interface that hands arrow-rs the schema writes
    names as C strings: ``"a\\0"`` would come back as ``"a"``)."""
    return schema.names == ["Item"] and pa.types.is_struct(schema.field(0).type) and _plain(schema.field(0).type)


def _plain(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return all("\0" not in f.name and _plain(f.type) for f in kind)
    if pa.types.is_list(kind):
        return _plain(kind.value_type)
    return pa.types.is_string(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)


def _untyped(kind: pa.DataType) -> bool:
    """What pyarrow's inference left untyped (``null``, ``list<null>``): dropped from the schema it
    is given (decode.without_nulls), so it appends such a field after the others when it meets it."""
    return pa.types.is_null(kind) or (pa.types.is_list(kind) and _untyped(kind.value_type))


def reader_schema(schema: pa.Schema) -> pa.Schema:
    """The schema arrow-rs is given: untyped fields last in their struct, where pyarrow puts them."""
    return pa.schema([pa.field(f.name, _untyped_last(f.type)) for f in schema])


def _untyped_last(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(kind):
        fields = [pa.field(f.name, _untyped_last(f.type)) for f in kind]
        return pa.struct([f for f in fields if not _untyped(f.type)] + [f for f in fields if _untyped(f.type)])
    if pa.types.is_list(kind):
        return pa.list_(_untyped_last(kind.value_type))
    return kind


def _without_absent_empty_lists(array: pa.Array) -> pa.Array | None:
    """The array with the untyped fields that no row of this piece holds taken out, as pyarrow's
    reader (which never saw them) returns it; None when two of one struct remain (pyarrow orders
    those as it first meets them). The buffers are arrow-rs's, unsliced (offset 0)."""
    kind = array.type
    if array.offset or not (pa.types.is_list(kind) or pa.types.is_struct(kind)):
        return None if array.offset else array
    if pa.types.is_list(kind):
        children = [_without_absent_empty_lists(array.values)]
        if children[0] is None:
            return None
        if children[0] is array.values:
            return array
        kind = pa.list_(children[0].type)
    else:
        fields, children, untyped, changed = [], [], 0, False
        for index, child_field in enumerate(kind):
            child = array.field(index)
            if _untyped(child_field.type):
                if child.null_count == len(child):
                    changed = True
                    continue
                untyped += 1
            else:
                new = _without_absent_empty_lists(child)
                if new is None:
                    return None
                changed, child = changed or new is not child, new
            fields.append(pa.field(child_field.name, child.type))
            children.append(child)
        if untyped > 1:
            return None
        if not changed:
            return array
        kind = pa.struct(fields)
    own = array.buffers()[:2 if pa.types.is_list(kind) else 1]  # validity (and a list's offsets)
    return pa.Array.from_buffers(kind, len(array), own, null_count=array.null_count, children=children)


# -- accounting: the text against the table ---------------------------------------------------------

def _text_counts(text: Text) -> tuple[int, int, int] | None:
    """(colons, commas, lines) of the text, strings included; None for text not to try
    (raw control characters, escaped colons, commas or character 0, what no valid line holds)."""
    kept = text.translate(_BRACKETS_AS_BRACES, _DELETE_FROM_TEXT)
    if kept.translate(None, _STRUCTURAL):
        return None  # a raw control character (a tab, a CR): in a string pyarrow refuses it
    if _holds(kept, _NEVER_IN_A_LINE):
        return None
    if b"\\" in kept and text.find(b"\\u00") >= 0 and _ESCAPE.search(text.view()):
        return None
    # No two rows share a line (no "}{"), so as many lines as rows means none spans two lines (a
    # blank line counted here only makes them differ: the piece goes to pyarrow).
    return kept.count(b":"), kept.count(b","), kept.count(b"\n") + (not kept.endswith(b"\n"))


def _holds(data: bytes, pattern: str) -> bool:
    """Whether ``pattern`` (RE2) matches somewhere in ``data``: one pass, no copy."""
    whole = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, pa.py_buffer(
        b"\0" * 8 + len(data).to_bytes(8, "little")), pa.py_buffer(data)])
    return pc.match_substring_regex(whole, pattern)[0].as_py()


@dataclass
class _Members:
    keys: int = 0  # keys the table holds (a key whose value is null is not held: then not equal)
    commas: int = 0  # commas valid JSON has between them
    colons_in_text: int = 0  # colons and commas inside strings and names
    commas_in_text: int = 0
    strings: list[pa.Array] = field(default_factory=list)


def _accounted(item: pa.StructArray, colons: int, commas: int) -> bool:
    """Whether every colon of the text is a key of the table and every comma separates two of
    its members (so none was dropped, and no comma is missing, extra or misplaced)."""
    members = _Members(keys=len(item) - item.null_count)  # each line's key "Item"
    _count(item, members)
    for strings in members.strings:
        found = _colons_and_commas(strings)
        if found is None:
            return False
        members.colons_in_text += found[0]
        members.commas_in_text += found[1]
    return (colons == members.keys + members.colons_in_text
            and commas == members.commas + members.commas_in_text)


def _count(array: pa.Array, members: _Members) -> None:
    """``array``: values as the text holds them (nulls: absent), its parents' nulls applied."""
    kind = array.type
    if pa.types.is_struct(kind):
        children = array.flatten()
        if len(children) == 1:  # a type descriptor's wrapper, mostly: one key or none
            members.keys += len(children[0]) - children[0].null_count
        elif children:
            held = pc.cast(pc.is_valid(children[0]), pa.int32())
            for child in children[1:]:
                held = pc.add(held, pc.cast(pc.is_valid(child), pa.int32()))
            keys = pc.sum(held).as_py() or 0
            members.keys += keys
            members.commas += keys - (pc.sum(pc.greater(held, 0)).as_py() or 0)
        for child_field, child in zip(kind, children):
            in_name = child_field.name.count(":"), child_field.name.count(",")
            if in_name != (0, 0):
                valid = len(child) - child.null_count
                members.colons_in_text += in_name[0] * valid
                members.commas_in_text += in_name[1] * valid
            _count(child, members)
    elif pa.types.is_list(kind):
        lengths = pc.list_value_length(array)
        members.commas += (pc.sum(lengths).as_py() or 0) - (pc.sum(pc.greater(lengths, 0)).as_py() or 0)
        _count(pc.list_flatten(array), members)
    elif pa.types.is_string(kind):
        members.strings.append(array)


def _colons_and_commas(strings: pa.StringArray) -> tuple[int, int] | None:
    """Colons and commas in the valid values of a string array, read from its data buffer (which
    arrow-rs fills with the valid values only; None if it holds more)."""
    if len(strings) == strings.null_count:
        return 0, 0
    offsets = pa.Array.from_buffers(pa.int32(), len(strings) + 1, [None, strings.buffers()[1]], offset=strings.offset)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    if end - start != (pc.sum(pc.binary_length(strings)).as_py() or 0):
        return None
    kept = translate_view(memoryview(strings.buffers()[2])[start:end], None, _DELETE_FROM_STRINGS)
    return kept.count(b":"), kept.count(b",")
