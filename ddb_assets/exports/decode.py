"""Decompressed data files -> Arrow: parse every line, and check that each is a well-formed item.

(Decompression is in ``exports.buffers``.) DYNAMODB_JSON goes through pyarrow's C++ JSON reader
with one block per piece of a file, so each piece is typed in one pass and no Python runs per row;
or, by default, through arrow-rs's reader when the schema learned from earlier pieces covers the
piece and its table can be shown to be the one pyarrow's would give (``exports.json_reader``).
Type descriptors determine JSON types (``N`` is always a string, ``BOOL`` a bool, ...), so
inference is exact: numbers stay strings here.
The result is the raw wrapper shape, ``Item: struct<attr: struct<S, N, ...>>``, validated
vectorially. When pyarrow rejects a file, a line-by-line Python check finds the first bad line and
says what is wrong with it. ION lines are decoded with amazon-ion into the same JSON form first.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ddb_assets.exports.buffers import Text
from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.json_reader import (
    DEFAULT_JSON_READER,
    ReaderCounts,
    check_reader,
    read_items,
    remember,
    worth_trying,
)
from ddb_assets.exports.numbers import NUMBER_TEXT, PLAIN_IN_RANGE, PLAIN_NUMBER_TEXT, range_problem
from ddb_assets.exports.plain_json import (BASE64_TEXT, RAW_LIST, RAW_MAP, checked_plain_map, plain_json_text,
                                           plain_value)

SCALAR_DESCRIPTORS = {"S": "string", "N": "string", "B": "string", "BOOL": "bool", "NULL": "bool"}
SET_DESCRIPTORS = ("SS", "NS", "BS")
DESCRIPTORS = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
# A map used as a dictionary (many distinct keys), at the top level or inside other maps, is
# carried as its plain JSON text (exports.plain_json, as it will be written) under this internal
# descriptor: pyarrow's reader would otherwise build one struct field per key and append to every
# one of them for every row (an export with 4,000 such keys parses 40x slower, 100x when the map is
# nested). Such maps are lifted out of the text before the parse and attached afterwards.
# (RAW_MAP is defined in exports.plain_json, with RAW_LIST: see carry_deep_values.)
# What N/NS and B/BS values may hold (exports.numbers, exports.plain_json: why a regex).
_TEXT_RULES = {"N": ("a number", NUMBER_TEXT), "B": ("base64", BASE64_TEXT)}
_PYTHON_RULES = {kind: re.compile(pattern) for kind, (_, pattern) in _TEXT_RULES.items()}
MAP_DEPTH = 8  # how deep in maps of maps dictionary maps are looked for
# Attribute path length (a top-level attribute is 1, a list element one more than its list) from
# which maps and lists are carried as their JSON text (carry_deep_values). One more than the
# deepest column there can be (lake.schema.SchemaOptions: max_depth <= 16), so no plan changes.
CARRIED_DEPTH = 17
# DynamoDB refuses items whose maps and lists nest deeper ("Nesting Levels have exceeded supported
# limits"): a map or list at a greater path length is refused, with its line and attribute path.
MAX_NESTING = 32
MAX_KEYS_SAMPLED = 4096  # past this a map is a dictionary whatever the threshold: stop descending
# An attribute path through maps: ("stats", "daily") is the map under key "daily" of map "stats".
MapPath = tuple[str, ...]


def parse_items(raw: bytes | Text, *, output_format: str, obj: str, known: pa.Schema | None = None,
                dictionary_maps: frozenset[MapPath] = frozenset(),
                json_reader: str = DEFAULT_JSON_READER,
                counts: ReaderCounts | None = None) -> tuple[pa.Table, pa.Schema | None]:
    """Decompressed data file -> (table with one struct column ``Item``, schema to pass next time).

    pyarrow's JSON reader infers ISO-8601-looking strings as timestamps, which would change text.
    So every string position is pinned to ``string`` by an explicit schema: the one learned from
    earlier files (``known``) covers most attributes at no extra cost; when this file brings new
    attributes that were inferred as timestamps, it is parsed once more with them pinned.
    With ``json_reader="arrow-rs"`` (the default) a piece that the learned schema covers is parsed
    by arrow-rs instead, into the same table with less CPU (exports.json_reader: when that cannot
    be shown, pyarrow's reader parses it as before). ``counts``, if given, is told which one did.
    Dictionary maps are taken out of ``raw`` in place (it is copied first if it is ``bytes``).
    """
    check_reader(json_reader)
    text = Text.of(raw)
    if output_format == "ION":
        text = Text.of(ion_to_json_lines(text, obj=obj))
    else:
        check_utf8(text, obj=obj)
    if text.is_blank():
        return pa.table({"Item": pa.array([], pa.struct([]))}), known
    lifted: list[str] = []
    originals: list[tuple[int, bytes]] = []
    if dictionary_maps:
        text = text.writable()
        lifted, originals = _lift_dictionary_maps(text, dictionary_maps, obj)
    try:
        return _parse_lines(text, obj, known, dictionary_maps, lifted, json_reader, counts)
    except ExportFormatError:
        # The error was located on the rewritten text: look again on the lines as they were read.
        if originals:
            _report_first_bad_line(text, originals, obj)
        raise


def _parse_lines(text: Text, obj: str, known: pa.Schema | None, dictionary_maps: frozenset[MapPath],
                 lifted: list[str], json_reader: str,
                 counts: ReaderCounts | None) -> tuple[pa.Table, pa.Schema | None]:
    _check_first_line(text, obj)
    if known is None:
        known = _schema_from_sample(text)
    tried = json_reader == "arrow-rs" and known is not None and worth_trying(known)
    table = read_items(text, known) if tried else None
    read = table is not None
    if table is None:
        table = _read_json(text, obj, without_nulls(known) if known is not None else None)
    if counts is not None:
        counts.add(ReaderCounts(arrow_rs=1) if read else ReaderCounts(pyarrow=1))
    pinned = pin_strings(table.schema)
    if not pinned.equals(table.schema):
        table = _read_json(text, obj, pinned)
    if table.column_names != ["Item"]:
        extra = [name for name in table.column_names if name != "Item"]
        _raise_at_first_row_with(text, obj, lambda doc: any(k in doc for k in extra),
                                 f"expected {{\"Item\": ...}} lines (a full export); found top-level key(s) "
                                 f"{', '.join(repr(e) for e in extra)}")
    item = table.column("Item").combine_chunks()
    if not pa.types.is_struct(item.type):
        raise ExportFormatError(obj, "'Item' must be an object of attributes", line=1)
    if item.null_count:
        _raise_at_first_row_with(text, obj, lambda doc: not isinstance(doc.get("Item"), dict),
                                 "every line needs an 'Item' object")
    if lifted:
        item = _attach_lifted(item, dictionary_maps, lifted, obj)
    for index, field in enumerate(item.type):
        _check_wrapper(item.field(index), field.name, text, obj,
                       lifted=frozenset(p[1:] for p in dictionary_maps if p[0] == field.name))
    return pa.table({"Item": item}), remember(learned_schema(known, pinned), known, tried, read)


def _check_first_line(text: Text, obj: str) -> None:
    """pyarrow's reader crashes the process (pyarrow 26: a segmentation fault) when the first row
    of its input is a JSON ``null``: such a first line is reported here, before any reader."""
    for line in _leading_lines(text):
        if line.lstrip().startswith(b"null"):
            find_first_bad_line(text, obj=obj)
            raise ExportFormatError(obj, "expected a {\"Item\": ...} line of a full export, found null")
        return


def learned_schema(known: pa.Schema | None, parsed: pa.Schema) -> pa.Schema:
    """The schema to parse the next piece with, after one parsed as ``parsed``: ``known`` with
    what this piece brought. What inference could not type (empty lists) is kept after the other
    fields of its struct: ``without_nulls`` takes it out for pyarrow's reader (which infers it
    afresh), arrow-rs's is given it (it cannot infer)."""
    typed = without_nulls(merge_schemas(without_nulls(known) if known is not None else None, parsed))
    everything = merge_schemas(known, parsed)
    return pa.schema([pa.field(f.name, _with_untyped(f.type, everything.field(f.name).type)) for f in typed])


def _with_untyped(typed: pa.DataType, everything: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(typed) and pa.types.is_struct(everything):
        kept = [pa.field(f.name, _with_untyped(f.type, everything.field(f.name).type)) for f in typed]
        untyped = [f for f in everything if typed.get_field_index(f.name) < 0 and _drop_nulls(f.type) is None]
        return pa.struct(kept + untyped)
    if pa.types.is_list(typed) and pa.types.is_list(everything):
        return pa.list_(_with_untyped(typed.value_type, everything.value_type))
    return typed


def _schema_from_sample(raw: Text, sample_bytes: int = 1 << 20) -> pa.Schema | None:
    """Learn (and pin) the schema from the file's first megabyte, so that the whole file is parsed
    once with it instead of twice (inferred, then re-parsed with timestamps pinned to strings)."""
    if len(raw) <= 2 * sample_bytes:
        return None  # small file: a second parse costs little
    end = raw.find(b"\n", sample_bytes)
    if end < 0:
        return None
    try:
        sample = pajson.read_json(pa.BufferReader(raw[:end + 1]),
                                  read_options=pajson.ReadOptions(use_threads=False, block_size=end + 2))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # the full parse reports the problem with its line number
    if _deepest_nesting(sample.schema) > MAX_NESTING:
        return None  # likewise
    return learned_schema(None, pin_strings(sample.schema))


def _read_json(raw: Text, obj: str, schema: pa.Schema | None) -> pa.Table:
    # The reader copies every value into its own arrays, so the table does not point into ``raw``
    # (whose arena the next file overwrites).
    try:
        table = pajson.read_json(
            pa.BufferReader(raw.buffer()),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(raw) + 1),
            parse_options=pajson.ParseOptions(newlines_in_values=False, explicit_schema=schema,
                                              unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        find_first_bad_line(raw, obj=obj)
        raise ExportFormatError(obj, f"cannot parse DynamoDB JSON ({exc})") from None
    # Checked first: every later step walks the types recursively, and the reader takes any depth.
    if _deepest_nesting(table.schema) > MAX_NESTING:
        find_first_bad_line(raw, obj=obj)
        raise ExportFormatError(obj, f"maps and lists nest deeper than DynamoDB's {MAX_NESTING} levels")
    return table


def _deepest_nesting(schema: pa.Schema) -> int:
    """The greatest attribute path length of a map or list in parsed lines (0: none), counted up
    to one past ``MAX_NESTING``: from the types alone, as the reader unites every line's."""
    index = schema.get_field_index("Item")
    if index < 0 or not pa.types.is_struct(schema.field(index).type):
        return 0  # not items: the checks after the parse say what is wrong
    return _deepest_in_attributes(schema.field(index).type, 1)


def _deepest_in_attributes(attributes: pa.DataType, depth: int) -> int:
    return max((_deepest_in_wrapper(field.type, depth) for field in attributes), default=0)


def _deepest_in_wrapper(wrapper: pa.DataType, depth: int) -> int:
    if not pa.types.is_struct(wrapper):
        return 0
    deepest = 0
    for field in wrapper:
        if field.name == "M" and pa.types.is_struct(field.type):
            below = _deepest_in_attributes(field.type, depth + 1) if depth <= MAX_NESTING else 0
        elif field.name == "L" and pa.types.is_list(field.type):
            below = _deepest_in_wrapper(field.type.value_type, depth + 1) if depth <= MAX_NESTING else 0
        else:
            continue
        deepest = max(deepest, depth, below)
    return deepest


def without_nulls(schema: pa.Schema) -> pa.Schema:
    """Drop what inference could not type (empty lists: ``list<null>``) from a schema to be reused.

    Pinned as ``null`` it would reject the same attribute with elements in a later file; left
    out, it is inferred afresh there.
    """
    fields = [(f.name, _drop_nulls(f.type)) for f in schema]
    return pa.schema([pa.field(name, kind) for name, kind in fields if kind is not None])


def _drop_nulls(kind: pa.DataType) -> pa.DataType | None:
    if pa.types.is_null(kind):
        return None
    if pa.types.is_struct(kind):
        children = [(f.name, _drop_nulls(f.type)) for f in kind]
        return pa.struct([pa.field(n, t) for n, t in children if t is not None])
    if pa.types.is_list(kind):
        value = _drop_nulls(kind.value_type)
        return pa.list_(value) if value is not None else None
    return kind


def pin_strings(schema: pa.Schema) -> pa.Schema:
    """The schema with every timestamp/date that inference produced turned back into ``string``."""
    return pa.schema([pa.field(f.name, _pin(f.type)) for f in schema])


def _pin(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _pin(f.type)) for f in kind])
    if pa.types.is_list(kind):
        return pa.list_(_pin(kind.value_type))
    return kind


def merge_schemas(first: pa.Schema | None, second: pa.Schema) -> pa.Schema:
    """Union of two learned schemas, recursively through structs (first one wins on conflicts)."""
    if first is None:
        return second
    return pa.schema([pa.field(name, kind) for name, kind in
                      _merge_fields(list(zip(first.names, first.types)), list(zip(second.names, second.types)))])


def _merge_fields(first: list[tuple[str, pa.DataType]],
                  second: list[tuple[str, pa.DataType]]) -> list[tuple[str, pa.DataType]]:
    merged = dict(first)
    for name, kind in second:
        if name not in merged:
            merged[name] = kind
        else:
            merged[name] = _merge_types(merged[name], kind)
    return list(merged.items())


def _merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        return pa.struct([pa.field(n, t) for n, t in _merge_fields([(f.name, f.type) for f in a],
                                                                   [(f.name, f.type) for f in b])])
    if pa.types.is_list(a) and pa.types.is_list(b):
        if pa.types.is_null(a.value_type):
            return b
        if pa.types.is_null(b.value_type):
            return a
        return pa.list_(_merge_types(a.value_type, b.value_type))
    if pa.types.is_null(a):
        return b
    return a


def _leading_lines(raw: bytes | Text) -> Iterator[bytes]:
    """Non-blank lines from the start, without splitting the whole buffer."""
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end
        line = raw[start:end]
        if line.strip():
            yield line
        start = end + 1


def first_item_names(raw: bytes | Text) -> tuple[str, ...]:
    """Attribute names of the first item, in line order (the table's keys come first)."""
    for line in _leading_lines(raw):
        try:
            item = orjson.loads(line).get("Item")
        except (orjson.JSONDecodeError, AttributeError):
            return ()
        return tuple(item) if isinstance(item, dict) else ()
    return ()


def detect_dictionary_maps(raw: bytes | Text, threshold: int, sample_lines: int = 5000) -> frozenset[MapPath]:
    """Paths of the maps (top level, or inside maps) that show more than ``threshold`` distinct keys
    in a sample of lines. Nothing below a dictionary map is looked at: it is carried as text."""
    keys: dict[MapPath, set[str]] = {}
    for count, line in enumerate(_leading_lines(raw)):
        if count >= sample_lines:
            break
        try:
            item = orjson.loads(line).get("Item")
        except (orjson.JSONDecodeError, AttributeError):
            continue  # the real parse reports it, with its line
        if isinstance(item, dict):
            _collect_map_keys(item, (), keys)
    found: set[MapPath] = set()
    for path in sorted(keys, key=len):
        if len(keys[path]) > threshold and not any(path[:n] in found for n in range(1, len(path))):
            found.add(path)
    return frozenset(found)


def _collect_map_keys(attributes: dict[str, Any], parent: MapPath, keys: dict[MapPath, set[str]]) -> None:
    for name, value in attributes.items():
        if isinstance(value, dict) and isinstance(value.get("M"), dict):
            path = parent + (name,)
            seen = keys.setdefault(path, set())
            seen.update(value["M"])
            if len(path) < MAP_DEPTH and len(seen) <= MAX_KEYS_SAMPLED:
                _collect_map_keys(value["M"], path, keys)


def _lift_dictionary_maps(raw: Text, paths: frozenset[MapPath],
                          obj: str) -> tuple[list[str], list[tuple[int, bytes]]]:
    """Take such maps out of the text, in place, before the parse; return their texts and the
    original lines rewritten (with their offsets), to put back if the file turns out bad.

    Only the lines that hold one are touched: each is re-serialized with the map replaced by a
    marker ``{"_Mjson": "<k>"}`` (k indexes the returned list) and padded with spaces to its old
    length (JSON allows trailing spaces), so no byte moves and the rest of the file is neither
    copied nor parsed twice; after the parse ``_attach_lifted`` swaps each marker for its text.
    A map too small for its marker is left where it is: the parser takes it as a plain map.
    """
    needles = {orjson.dumps(path[-1]) + b':{"M":' for path in paths}
    starts = set()
    for needle in needles:
        position = raw.find(needle)
        while position >= 0:
            starts.add(raw.rfind(b"\n", 0, position) + 1)
            position = raw.find(needle, position + len(needle))
    texts: list[str] = []
    originals: list[tuple[int, bytes]] = []
    ordered = sorted(paths)
    for start in sorted(starts):
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end
        line = raw[start:end]
        try:
            doc = orjson.loads(line)
            item = doc["Item"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            _report_first_bad_line(raw, originals, obj)
            continue  # not reached: the line is bad and find_first_bad_line says why
        if not isinstance(item, dict):
            continue  # the parse reports it
        taken: list[str] = []
        for path in ordered:
            attributes = _map_attributes(item, path[:-1])
            value = attributes.get(path[-1]) if attributes is not None else None
            if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("M"), dict):
                # The parse never sees a lifted map: it is checked here (descriptors, JSON types,
                # numbers, base64) while it becomes the plain JSON text it will be written as.
                try:
                    taken.append(plain_json_text(checked_plain_map(value["M"])))
                except ValueError as exc:
                    _report_first_bad_line(raw, originals, obj)
                    raise ExportFormatError(obj, f"attribute {'.'.join(path)!r}: {exc}",
                                            line=bytes(raw.view()[:start]).count(b"\n") + 1) from None
                attributes[path[-1]] = {RAW_MAP: str(len(texts) + len(taken) - 1)}  # type: ignore[index]
        if taken:
            shorter = orjson.dumps(doc)
            if len(shorter) <= len(line):
                raw.overwrite(start, shorter + b" " * (len(line) - len(shorter)))
                texts.extend(taken)
                originals.append((start, line))
    return texts, originals


def _report_first_bad_line(raw: Text, originals: list[tuple[int, bytes]], obj: str) -> None:
    """Raise for the first bad line of the text as it was read: the lines lifted so far are put
    back first, so that the line reported is never one of our markers."""
    for offset, original in originals:
        raw.overwrite(offset, original)
    find_first_bad_line(raw, obj=obj)


def _map_attributes(item: dict[str, Any], path: MapPath) -> dict[str, Any] | None:
    """The attributes of the map at ``path`` in an item (the item's own for ``()``), if it is one."""
    attributes: Any = item
    for name in path:
        value = attributes.get(name)
        if not (isinstance(value, dict) and len(value) == 1 and isinstance(value.get("M"), dict)):
            return None
        attributes = value["M"]
    return attributes


def _attach_lifted(item: pa.StructArray, paths: frozenset[MapPath], texts: list[str], obj: str) -> pa.StructArray:
    """Swap each ``{"_Mjson": "<k>"}`` marker for the k-th lifted map text."""
    table = pa.array(texts, pa.string())
    seen = 0
    try:
        for path in sorted(paths):
            item, found = _swap_markers(item, path, table)
            seen += found
    except (pa.ArrowInvalid, IndexError):
        seen = -1  # not one of our markers
    if seen != len(texts):  # a marker that is not ours: the input itself used the internal name
        raise ExportFormatError(obj, f"unknown type descriptor {RAW_MAP!r}; expected one of {', '.join(DESCRIPTORS)}")
    return item


def _swap_markers(attributes: pa.StructArray, path: MapPath, table: pa.Array) -> tuple[pa.StructArray, int]:
    """``attributes`` (the items, or the attributes of a map) with the markers at ``path`` replaced
    by their texts; and how many there were."""
    index = attributes.type.get_field_index(path[0])
    if index < 0:
        return attributes, 0
    children = attributes.flatten()
    wrapper = children[index]
    inner = wrapper.type.get_field_index(RAW_MAP if len(path) == 1 else "M")
    if inner < 0:
        return attributes, 0
    parts = wrapper.flatten()
    if len(path) == 1:
        markers = parts[inner]
        found = len(markers) - markers.null_count
        parts[inner] = table.take(pc.cast(markers, pa.int32()))
    else:
        parts[inner], found = _swap_markers(parts[inner], path[1:], table)
    children[index] = pa.StructArray.from_arrays(parts, fields=list(wrapper.type), mask=wrapper.is_null())
    return pa.StructArray.from_arrays(children, fields=list(attributes.type), mask=attributes.is_null()), found


# -- deep values -------------------------------------------------------------------------------

def carry_deep_values(item: pa.StructArray) -> pa.StructArray:
    """Parsed items with every map and list at attribute path length ``CARRIED_DEPTH`` or more
    replaced by its plain JSON text (as the lake writes it), under ``RAW_MAP`` / ``RAW_LIST``.

    DynamoDB nests maps and lists up to 32 levels, two Arrow levels each (the type-descriptor
    wrapper and its value), and Arrow IPC (the scratch files between the two stages) refuses
    more than 64 ("Max recursion depth reached"). No column is deeper than 16 levels, and what
    lies below one is written as JSON text anyway: carried as that text from the start, the
    items stay about 36 Arrow levels deep at most. When nothing reaches that depth (the common
    case) only the type is looked at, and ``item`` is returned as it is.
    """
    if not _any_reaches(item.type, 1):
        return item
    return _carry_attributes(item, 1)


def _reaches(wrapper: pa.DataType, depth: int) -> bool:
    """Whether a wrapper type at path length ``depth`` holds a map or list at ``CARRIED_DEPTH``
    or deeper (where it has to be carried)."""
    if not pa.types.is_struct(wrapper):
        return False
    for field in wrapper:
        if field.name == "M" and pa.types.is_struct(field.type):
            if depth >= CARRIED_DEPTH or _any_reaches(field.type, depth + 1):
                return True
        elif field.name == "L" and pa.types.is_list(field.type):
            if depth >= CARRIED_DEPTH or _reaches(field.type.value_type, depth + 1):
                return True
    return False


def _any_reaches(attributes: pa.DataType, depth: int) -> bool:
    return any(_reaches(field.type, depth) for field in attributes)


def _carry_attributes(attributes: pa.StructArray, depth: int) -> pa.StructArray:
    """A struct of attributes (the items, or an M value) whose fields are at path length ``depth``."""
    children = [_carry_wrapper(child, depth) if _reaches(field.type, depth) else child
                for field, child in zip(attributes.type, attributes.flatten())]
    return pa.StructArray.from_arrays(children, names=[f.name for f in attributes.type],
                                      mask=attributes.is_null() if attributes.null_count else None)


def _carry_wrapper(wrapper: pa.StructArray, depth: int) -> pa.StructArray:
    names, children = [], []
    for field, child in zip(wrapper.type, wrapper.flatten()):
        name = field.name
        if name in ("M", "L") and depth >= CARRIED_DEPTH:
            texts = [None if value is None else plain_json_text(plain_value({name: value}))
                     for value in child.to_pylist()]
            name, child = (RAW_MAP if name == "M" else RAW_LIST), pa.array(texts, pa.string())
        elif name == "M" and pa.types.is_struct(child.type) and _any_reaches(child.type, depth + 1):
            child = _carry_attributes(child, depth + 1)
        elif name == "L" and pa.types.is_list(child.type) and _reaches(child.type.value_type, depth + 1):
            child = pa.ListArray.from_arrays(child.offsets, _carry_wrapper(child.values, depth + 1),
                                             mask=child.is_null() if child.null_count else None)
        names.append(name)
        children.append(child)
    return pa.StructArray.from_arrays(children, names=names, mask=wrapper.is_null() if wrapper.null_count else None)


def ion_to_json_lines(raw: bytes | Text, *, obj: str) -> bytes:
    """ION lines -> the same items as DYNAMODB_JSON lines; errors name ``obj`` and the line."""
    from ddb_assets.exports.ion_codec import parse_ion_line  # amazon-ion: imported by ION exports only

    check_utf8(raw, obj=obj, ion=True)
    out: list[bytes] = []
    for number, line in _numbered_lines(raw):
        # Blank lines stay blank lines: a later error found in the JSON text (a missing key
        # attribute, a duplicate key) then names the Ion file's own line.
        out.extend([b""] * (number - len(out) - 1))
        try:
            out.append(orjson.dumps({"Item": parse_ion_line(line)}))
        except (ValueError, orjson.JSONEncodeError) as exc:
            raise ExportFormatError(obj, str(exc), line=number) from None
    return b"\n".join(out) + b"\n" if out else b""


# -- UTF-8 -------------------------------------------------------------------------------------

def check_utf8(raw: bytes | Text, *, obj: str, ion: bool = False) -> None:
    """Raise an ExportFormatError for the first line holding bytes that are not UTF-8.

    pyarrow's JSON reader copies such bytes into string columns unchecked (and replaces them in
    attribute names), so they would be published and fail every later read. The whole text is
    validated as one Arrow string: one C pass (~6 GB/s on ASCII), the same check any Arrow reader
    of the lake makes. Outside strings JSON and Ion text is ASCII, so this is the check of every
    string value and attribute name. Only when it fails is the line found (and its attribute).
    """
    text = Text.of(raw)
    if not len(text):
        return
    try:
        pa.LargeStringArray.from_buffers(1, _length_offsets(len(text)), text.buffer()).validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    for number, line in _numbered_lines(text):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExportFormatError(obj, _utf8_problem(line, exc, ion), line=number) from None
    raise ExportFormatError(obj, "not valid UTF-8")  # not reached: a bad byte is on some line


def _length_offsets(size: int) -> pa.Buffer:
    """The offsets of one large_string of ``size`` bytes: int64 0 and size."""
    return pa.py_buffer(b"\0" * 8 + size.to_bytes(8, "little", signed=True))


def _utf8_problem(line: bytes, error: UnicodeDecodeError, ion: bool) -> str:
    """What is wrong, and where: the first bad byte, its column and, when the rest of the line
    parses, the attribute holding it."""
    where = f"byte 0x{line[error.start]:02x} at column {error.start + 1}"
    text = line.decode("utf-8", "surrogateescape")  # each bad byte becomes one lone surrogate
    marker = next(c for c in ("\ufffd", "\U0010fffd", "\U000ffffd", "\ue000") if c not in text)
    marked = re.sub("[\udc80-\udcff]+", marker, text)
    try:
        if ion:
            from ddb_assets.exports.ion_codec import parse_ion_line

            item = parse_ion_line(marked.encode())
        else:
            item = orjson.loads(marked).get("Item")
    except (ValueError, AttributeError):
        item = None  # not even that much parses: the byte is all there is to say
    found = _path_holding(item, "", marker) if isinstance(item, dict) else None
    if found is None:
        return f"invalid UTF-8 ({where})"
    path, in_name = found
    if in_name:
        return f"invalid UTF-8 in the name of attribute {path.replace(marker, chr(0xFFFD))!r} ({where})"
    return f"invalid UTF-8 in attribute {path!r} ({where})"


def _path_holding(attributes: dict[str, Any], parent: str, marker: str) -> tuple[str, bool] | None:
    """The attribute path (``a.b``, ``a[]``) whose name or value holds ``marker``, and which."""
    for name, value in attributes.items():
        path = f"{parent}.{name}" if parent else name
        if marker in name:
            return path, True
        found = _value_holding(value, path, marker)
        if found is not None:
            return found
    return None


def _value_holding(value: Any, path: str, marker: str) -> tuple[str, bool] | None:
    if isinstance(value, str):
        return (path, False) if marker in value else None
    if isinstance(value, list):
        return next((f for f in (_value_holding(v, path, marker) for v in value) if f is not None), None)
    if isinstance(value, dict):
        for kind, inner in value.items():
            if marker in kind:
                return path, False
            if kind == "M" and isinstance(inner, dict):
                found = _path_holding(inner, path, marker)
            elif kind == "L" and isinstance(inner, list):
                found = _value_holding(inner, f"{path}[]", marker)
            else:
                found = _value_holding(inner, path, marker)
            if found is not None:
                return found
    return None


# -- vectorized validation -------------------------------------------------------------------


def _check_wrapper(array: pa.Array, path: str, raw: Text, obj: str,
                   lifted: frozenset[MapPath] = frozenset()) -> None:
    """``array`` holds AttributeValues (``{"S": ...}`` structs) for ``path``; nulls mean absent.
    ``lifted``: the dictionary maps lifted at or below this attribute, as paths relative to it
    (``()``: this one), where the internal descriptor is ours."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_struct(array.type):
        _fail_path(raw, obj, path, f"attribute {path!r} must be a type-descriptor object like {{\"S\": \"...\"}}")
    names = [field.name for field in array.type]
    unknown = [name for name in names if name not in DESCRIPTORS and not (() in lifted and name == RAW_MAP)]
    if unknown:
        _fail_path(raw, obj, path, f"attribute {path!r} has unknown type descriptor {unknown[0]!r}; expected one "
                                   f"of {', '.join(DESCRIPTORS)}")
    children = array.flatten()
    if names:
        counts = _valid_counts(children)
        wrong = pc.and_(pc.is_valid(array), pc.not_equal(counts, 1))
        if pc.any(wrong).as_py():
            _fail_path(raw, obj, path, f"attribute {path!r} must have exactly one type descriptor")
    elif len(array) - array.null_count:
        _fail_path(raw, obj, path, f"attribute {path!r} has no type descriptor")
    for name, child in zip(names, children):
        kind = child.type
        if name in SCALAR_DESCRIPTORS:
            expected = pa.string() if SCALAR_DESCRIPTORS[name] == "string" else pa.bool_()
            if kind != expected and not pa.types.is_null(kind):
                _fail_path(raw, obj, path, f"attribute {path!r}: {name} must be a JSON "
                                           f"{'string' if expected == pa.string() else 'boolean'}")
            if name == "NULL" and pc.any(pc.invert(child)).as_py():
                _fail_path(raw, obj, path, f"attribute {path!r}: NULL must be true")
            if name in _TEXT_RULES and pa.types.is_string(kind):
                _check_texts(child, name, path, raw, obj)
        elif name in SET_DESCRIPTORS:
            if not (pa.types.is_list(kind) and (pa.types.is_string(kind.value_type))) or pc.list_flatten(child).null_count:
                _fail_path(raw, obj, path, f"attribute {path!r}: {name} must be a non-empty list of strings")
            if pc.any(pc.equal(pc.list_value_length(child), 0)).as_py():
                _fail_path(raw, obj, path, f"attribute {path!r}: {name} sets cannot be empty")
            if name[0] in _TEXT_RULES:
                _check_texts(pc.list_flatten(child), name, path, raw, obj)
        elif name == "M":
            if not pa.types.is_struct(kind):
                _fail_path(raw, obj, path, f"attribute {path!r}: M must be an object")
            for index, field in enumerate(kind):
                _check_wrapper(child.field(index), f"{path}.{field.name}", raw, obj,
                               lifted=frozenset(p[1:] for p in lifted if p and p[0] == field.name))
        elif name == "L":
            if not pa.types.is_list(kind):
                _fail_path(raw, obj, path, f"attribute {path!r}: L must be a list")
            if pc.list_flatten(child).null_count:  # a null element: not an AttributeValue
                _fail_path(raw, obj, path, f"attribute {path!r}[] must be an object with exactly one type descriptor")
            if not pa.types.is_null(kind.value_type):
                _check_wrapper(pc.list_flatten(child), f"{path}[]", raw, obj)


def _check_texts(values: pa.Array, descriptor: str, path: str, raw: Text, obj: str) -> None:
    what, pattern = _TEXT_RULES[descriptor[0]]
    if descriptor[0] == "N":
        _check_numbers(values, descriptor, path, raw, obj)
        return
    bad = pc.invert(pc.match_substring_regex(values, f"^{pattern}$"))
    if pc.any(bad).as_py():
        found = values.filter(bad)[0].as_py()
        _fail_path(raw, obj, path, f"attribute {path!r}: {descriptor} must hold {what}, found {found!r}")


def _check_numbers(values: pa.Array, descriptor: str, path: str, raw: Text, obj: str) -> None:
    """Every N/NS text a number DynamoDB can hold. One regex pass as cheap as the syntax check
    alone: a short number without an exponent is in range (numbers.PLAIN_IN_RANGE); only the
    others (rare) are looked at one by one, for their syntax and their range."""
    plain = pc.match_substring_regex(values, f"^{PLAIN_NUMBER_TEXT}$")
    suspect = pc.or_(pc.invert(plain), pc.greater(pc.binary_length(values), PLAIN_IN_RANGE))
    if not pc.any(suspect).as_py():
        return
    for text in values.filter(suspect).to_pylist():
        if not _PYTHON_RULES["N"].fullmatch(text):
            _fail_path(raw, obj, path, f"attribute {path!r}: {descriptor} must hold a number, found {text!r}")
        problem = range_problem(text)
        if problem:
            _fail_path(raw, obj, path, f"attribute {path!r}: {descriptor} {text!r:.60} {problem}")


def _valid_counts(children: list[pa.Array]) -> pa.Array:
    total = pc.cast(pc.is_valid(children[0]), pa.int8())
    for child in children[1:]:
        total = pc.add(total, pc.cast(pc.is_valid(child), pa.int8()))
    return total


# -- key attributes ------------------------------------------------------------------------------

KEY_DESCRIPTORS = ("S", "N", "B")  # a DynamoDB key attribute is a string, a number or a binary


def check_key_attributes(items: pa.Array | pa.ChunkedArray, raw: bytes | Text, key_attributes: tuple[str, ...], *,
                         obj: str) -> None:
    """Every item (a row of ``items``, parsed from the lines of ``raw``) holds each of the table's
    key attributes as S, N or B, as DynamoDB requires of every item it stores. Raises an
    ExportFormatError naming ``obj``, the line and the attribute. Per piece a null count and a
    look at the types: no cost per row."""
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    if not len(items):
        return
    keys = ", ".join(key_attributes)
    for name in key_attributes:
        index = items.type.get_field_index(name)
        if index < 0:
            raise ExportFormatError(obj, f"the item lacks the key attribute {name!r} (the table's key: {keys})",
                                    line=_line_of_row(raw, 0))
        wrapper = items.field(index)
        if wrapper.null_count:
            row = pc.index(wrapper.is_null(), True).as_py()
            raise ExportFormatError(obj, f"the item lacks the key attribute {name!r} (the table's key: {keys})",
                                    line=_line_of_row(raw, row))
        for field, child in zip(wrapper.type, wrapper.flatten()):
            if field.name not in KEY_DESCRIPTORS and child.null_count < len(child):
                row = pc.index(child.is_valid(), True).as_py()
                raise ExportFormatError(obj, f"key attribute {name!r} is {field.name}; a key attribute is S, N or B",
                                        line=_line_of_row(raw, row))


def _line_of_row(raw: bytes | Text, row: int) -> int | None:
    """The line number of the ``row``-th item (0-based) of ``raw``: blank lines hold none."""
    for seen, (number, _) in enumerate(_numbered_lines(raw)):
        if seen == row:
            return number
    return None


# -- finding the line at fault (error path only) -----------------------------------------------


def _numbered_lines(raw: bytes | Text) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(bytes(raw).split(b"\n"), start=1):
        if line.strip():
            yield number, line


def find_first_bad_line(raw: bytes | Text, *, obj: str) -> None:
    """Raise an ExportFormatError for the first line that is not a valid full-export item line."""
    for number, line in _numbered_lines(raw):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ExportFormatError(obj, f"malformed JSON ({exc})", line=number) from None
        problem = line_problem(doc)
        if problem:
            raise ExportFormatError(obj, problem, line=number)


def line_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or set(doc) != {"Item"}:
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        return f"expected a {{\"Item\": ...}} line of a full export, found {keys}"
    if not isinstance(doc["Item"], dict):
        return "'Item' must be an object of attributes"
    for name, value in doc["Item"].items():
        problem = _attribute_problem(value, name, 1)
        if problem:
            return problem
    return None


def _attribute_problem(value: Any, path: str, depth: int) -> str | None:
    """What is wrong with an AttributeValue at attribute path length ``depth`` (None: nothing)."""
    if not isinstance(value, dict) or len(value) != 1:
        return f"attribute {path!r} must be an object with exactly one type descriptor"
    [(kind, inner)] = value.items()
    if kind not in DESCRIPTORS:
        return f"attribute {path!r} has unknown type descriptor {kind!r}; expected one of {', '.join(DESCRIPTORS)}"
    if kind in ("S", "N", "B") and not isinstance(inner, str):
        return f"attribute {path!r}: {kind} must be a JSON string"
    if kind in ("BOOL", "NULL") and not isinstance(inner, bool):
        return f"attribute {path!r}: {kind} must be a JSON boolean"
    if kind == "NULL" and inner is not True:
        return f"attribute {path!r}: NULL must be true"
    if kind in SET_DESCRIPTORS and (not isinstance(inner, list) or not inner
                                    or not all(isinstance(v, str) for v in inner)):
        return f"attribute {path!r}: {kind} must be a non-empty list of strings"
    if kind in ("N", "NS", "B", "BS"):
        rule = _PYTHON_RULES[kind[0]]
        for text in (inner if kind in SET_DESCRIPTORS else [inner]):
            if not rule.fullmatch(text):
                return f"attribute {path!r}: {kind} must hold {_TEXT_RULES[kind[0]][0]}, found {text!r}"
            problem = range_problem(text) if kind[0] == "N" else None
            if problem:
                return f"attribute {path!r}: {kind} {text!r:.60} {problem}"
    if kind in ("M", "L") and depth > MAX_NESTING:
        return f"attribute {path!r}: maps and lists nest deeper than DynamoDB's {MAX_NESTING} levels"
    if kind == "M":
        if not isinstance(inner, dict):
            return f"attribute {path!r}: M must be an object"
        for name, child in inner.items():
            problem = _attribute_problem(child, f"{path}.{name}", depth + 1)
            if problem:
                return problem
    if kind == "L":
        if not isinstance(inner, list):
            return f"attribute {path!r}: L must be a list"
        for child in inner:
            problem = _attribute_problem(child, f"{path}[]", depth + 1)
            if problem:
                return problem
    return None


def _raise_at_first_row_with(raw: Text, obj: str, predicate: Any, message: str) -> None:
    for number, line in _numbered_lines(raw):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if predicate(doc if isinstance(doc, dict) else {}):
            raise ExportFormatError(obj, message, line=number)
    raise ExportFormatError(obj, message)


def _fail_path(raw: Text, obj: str, path: str, message: str) -> None:
    find_first_bad_line(raw, obj=obj)  # usually pinpoints the line with the same finding
    raise ExportFormatError(obj, message)
