"""A query result (an Arrow table) as text: ``table``, ``vertical``, ``csv`` or ``json``.

Every Arrow type prints in every format, with one rendering of each value:

- numbers exactly: decimals with all their digits and scale (``1.50``, never ``0E-10`` or a float);
  in ``json`` decimals are strings (``"1.50"``), as no JSON reader is obliged to keep 38 digits;
  floats by their shortest round-trip text, ``NaN``/``Infinity``/``-Infinity`` as strings in JSON;
- binary as base64 (standard alphabet, padded);
- dates, times and timestamps as ISO-8601 (``2025-11-30T00:09:00Z``; a zone as its offset; a
  timestamp's fraction of a second with as many digits as its unit: ``00:09:00.017480Z``),
  intervals and durations as ISO-8601 durations (``P1M3DT4H``);
- lists, sets, structs and maps as JSON text in ``table``, ``vertical`` and ``csv`` cells
  (``[104, 7]``, ``{"s": "abc"}``), as JSON values in ``json``;
- NULL as an empty cell in ``csv``, ``null`` in ``json``, ``NULL`` in ``table``/``vertical``.

``table`` and ``vertical`` never hard-wrap: each row or column is one line whatever its length
(control characters in a value are escaped, ``\\n``). Whether the grid fits is the caller's
question (``render``'s ``width``): a terminal's width, or None for output piped or captured.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator, TextIO

import pyarrow as pa

FORMATS = ("table", "vertical", "csv", "json")


class _Number(str):
    """Text emitted bare into JSON text (a decimal's exact digits)."""


@dataclass(frozen=True)
class _Nanos:
    """A nanosecond timestamp, time or duration, which Python's datetime cannot hold."""

    kind: pa.DataType
    value: int


# -- Arrow values as Python values -------------------------------------------------------------------


def _needs_walk(kind: pa.DataType) -> bool:
    """Does ``to_pylist`` fail (nanoseconds) or lose the type (half floats) somewhere in ``kind``?"""
    if pa.types.is_dictionary(kind):
        return _needs_walk(kind.value_type)
    if pa.types.is_timestamp(kind) or pa.types.is_time64(kind) or pa.types.is_duration(kind):
        return kind.unit == "ns"
    if pa.types.is_float16(kind):
        return True
    return any(_needs_walk(kind.field(i).type) for i in range(kind.num_fields))


def python_values(array: pa.Array | pa.ChunkedArray) -> list[Any]:
    """The values of ``array`` as Python objects (``to_pylist``), with nanosecond temporal values
    as ``_Nanos`` instead of failing, at any depth."""
    if isinstance(array, pa.ChunkedArray):
        return [value for chunk in array.chunks for value in python_values(chunk)]
    kind = array.type
    if not _needs_walk(kind):
        return array.to_pylist()
    nulls = array.is_null().to_pylist()
    if pa.types.is_float16(kind):
        return [None if n else float(v) for n, v in zip(nulls, array.cast(pa.float32()).to_pylist())]
    if pa.types.is_timestamp(kind) or pa.types.is_time64(kind) or pa.types.is_duration(kind):
        raw = array.view(pa.int64()).to_pylist()
        return [None if n else _Nanos(kind, v) for n, v in zip(nulls, raw)]
    if pa.types.is_dictionary(kind):
        return python_values(array.dictionary_decode())
    if pa.types.is_fixed_size_list(kind):
        values, size = python_values(array.values), kind.list_size
        start = array.offset
        return [None if n else values[(start + i) * size:(start + i + 1) * size] for i, n in enumerate(nulls)]
    if pa.types.is_map(kind):
        keys, items, offsets = python_values(array.keys), python_values(array.items), array.offsets.to_pylist()
        return [None if n else list(zip(keys[offsets[i]:offsets[i + 1]], items[offsets[i]:offsets[i + 1]]))
                for i, n in enumerate(nulls)]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        values, offsets = python_values(array.values), array.offsets.to_pylist()
        return [None if n else values[offsets[i]:offsets[i + 1]] for i, n in enumerate(nulls)]
    if pa.types.is_struct(kind):
        children = [python_values(child) for child in array.flatten()]
        names = [kind.field(i).name for i in range(kind.num_fields)]
        return [None if n else {name: child[i] for name, child in zip(names, children)} for i, n in enumerate(nulls)]
    # Anything else holding nanoseconds (unions, list views): the values DuckDB never produces.
    return [None if n else array[i].as_py() for i, n in enumerate(nulls)]  # pragma: no cover


# -- one value as text or as a JSON value ------------------------------------------------------------


def _float_text(value: float, kind: pa.DataType) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if pa.types.is_float32(kind) or pa.types.is_float16(kind):
        # The shortest text that reads back as the same float32 (1.1, not 1.100000023841858).
        for digits in range(1, 10):
            text = f"{value:.{digits}g}"
            if struct.unpack("f", struct.pack("f", float(text)))[0] == value:
                return text
    return repr(value)


def _decimal_text(value: Decimal) -> str:
    # format(..., "f"): str() writes Decimal("0.0000000000") as 0E-10 and 1E+5 as such.
    return format(value, "f")


def _iso_duration(months: int, days: int, nanoseconds: int) -> str:
    """ISO-8601 duration (``P1Y2M3DT4H5M6.5S``); all parts negative: a leading ``-``; mixed signs
    (SQL intervals allow them): each part carries its own."""
    if months <= 0 and days <= 0 and nanoseconds <= 0 and (months, days, nanoseconds) != (0, 0, 0):
        return "-" + _iso_duration(-months, -days, -nanoseconds)
    years, months = int(months / 12), months - 12 * int(months / 12)
    date_part = "".join(f"{n}{unit}" for n, unit in ((years, "Y"), (months, "M"), (days, "D")) if n)
    sign, nanoseconds = ("-", -nanoseconds) if nanoseconds < 0 else ("", nanoseconds)
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    clock = "".join(f"{sign}{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if seconds or nanos:
        clock += f"{sign}{seconds}" + (f".{nanos:09d}".rstrip("0") if nanos else "") + "S"
    text = "P" + date_part + ("T" + clock if clock else "")
    return text if text != "P" else "PT0S"


# Digits of a timestamp's fraction of a second, by the column's unit: every value of a column
# that has a fraction prints the same number of them (``…:27.017480Z``, never ``…:27.01748Z``).
_FRACTION_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _timestamp_text(moment: datetime, nanos: int | None = None, unit: str = "us") -> str:
    text = moment.replace(tzinfo=None, microsecond=0).isoformat()
    fraction = f"{nanos:09d}" if nanos is not None else f"{moment.microsecond:06d}000"
    if fraction.strip("0"):  # a whole second has no fraction
        text += "." + fraction[:max(_FRACTION_DIGITS.get(unit, 9), len(fraction.rstrip("0")))]
    offset = moment.utcoffset()
    if offset is None:
        return text
    if offset == timedelta(0):
        return text + "Z"
    return text + moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]


def _clock_text(clock: time, nanos: int) -> str:
    """``12:00:00``, ``12:00:00.25``: the fraction only as long as it needs to be."""
    return clock.isoformat() + (f".{nanos:09d}".rstrip("0") if nanos else "")


def _nanos_text(value: _Nanos) -> str:
    kind = value.kind
    if pa.types.is_duration(kind):
        return _iso_duration(0, 0, value.value)
    seconds, nanos = divmod(value.value, 1_000_000_000)
    if pa.types.is_time64(kind):
        return _clock_text(time((seconds // 3600) % 24, (seconds // 60) % 60, seconds % 60), nanos)
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    if kind.tz is not None:
        moment = moment.astimezone(_zone(kind.tz))
        return _timestamp_text(moment, nanos, "ns")
    return _timestamp_text(moment.replace(tzinfo=None), nanos, "ns")


def _zone(name: str) -> Any:
    if name in ("UTC", "Etc/UTC", "Z"):
        return timezone.utc
    if name[:1] in "+-":
        hours, _, minutes = name[1:].partition(":")
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(delta if name[0] == "+" else -delta)
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _scalar_text(value: Any, kind: pa.DataType) -> str | None:
    """Text of a value that is not nested, or None if it is nested."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value, kind)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return _timestamp_text(value, unit=kind.unit if pa.types.is_timestamp(kind) else "us")
    if isinstance(value, time):
        return _clock_text(value.replace(microsecond=0), value.microsecond * 1000)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _iso_duration(0, value.days, (value.seconds * 1_000_000 + value.microseconds) * 1000)
    if isinstance(value, _Nanos):
        return _nanos_text(value)
    if isinstance(value, pa.MonthDayNano):
        return _iso_duration(value.months, value.days, value.nanoseconds)
    return None


def _child_type(kind: pa.DataType, key: Any = None) -> pa.DataType:
    """The Arrow type of a nested value's parts (for float32 and nanosecond rendering)."""
    if pa.types.is_struct(kind):
        index = kind.get_field_index(key) if key is not None else -1
        return kind.field(index).type if index >= 0 else pa.null()
    if pa.types.is_map(kind):
        return kind.item_type
    if hasattr(kind, "value_type"):
        return kind.value_type
    return pa.null()


def json_value(value: Any, kind: pa.DataType, *, exact_as_string: bool) -> Any:
    """``value`` (of Arrow type ``kind``) as a JSON-ready value: dicts, lists, str, int, bool,
    None, and ``_Number`` for decimals and finite floats (digits kept as they are).

    ``exact_as_string`` (the ``json`` format): decimals become strings, so no reader rounds them;
    NaN and the infinities are strings in every case (JSON has no such numbers)."""
    if value is None:
        return None
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        text = _float_text(value, kind)
        return text if text in ("NaN", "Infinity", "-Infinity") else _Number(text)
    if isinstance(value, Decimal):
        text = _decimal_text(value)
        return text if exact_as_string else _Number(text)
    if isinstance(value, pa.MonthDayNano):  # a tuple, but one value
        return _scalar_text(value, kind)
    if isinstance(value, dict):
        return {str(k): json_value(v, _child_type(kind, k), exact_as_string=exact_as_string) for k, v in value.items()}
    if pa.types.is_map(kind) and isinstance(value, list):
        key_type = kind.key_type
        return {_text(k, key_type): json_value(v, kind.item_type, exact_as_string=exact_as_string) for k, v in value}
    if isinstance(value, (list, tuple)):
        child = _child_type(kind)
        return [json_value(v, child, exact_as_string=exact_as_string) for v in value]
    text = _scalar_text(value, kind)
    return text if text is not None else str(value)


# json.dumps escapes every control character below U+0020 but leaves NEL and the Unicode line and
# paragraph separators raw: valid JSON, yet line splitters that follow Unicode (Python's
# str.splitlines, many editors and log tools) would break a JSON Lines row in two.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_LINE_BREAKS)


def dump_json(value: Any, *, spaced: bool) -> str:
    """JSON text of a ``json_value``; ``spaced`` puts a space after ``,`` and ``:`` (for reading)."""
    comma, colon = (", ", ": ") if spaced else (",", ":")
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        return "{" + comma.join(_json_string(k) + colon + dump_json(v, spaced=spaced)
                                for k, v in value.items()) + "}"
    return "[" + comma.join(dump_json(v, spaced=spaced) for v in value) + "]"


def _text(value: Any, kind: pa.DataType) -> str:
    """One value as cell text (``table``, ``vertical``, ``csv``); None stays the caller's business."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    text = _scalar_text(value, kind)
    if text is not None:
        return text
    if isinstance(value, (dict, list, tuple)):
        return dump_json(json_value(value, kind, exact_as_string=False), spaced=True)
    return str(value)


def cell_texts(array: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """Every value of a column as its text (None for NULL)."""
    kind = array.type
    return [None if v is None else _text(v, kind) for v in python_values(array)]


# -- whole results -----------------------------------------------------------------------------------


def _csv_quoted(kind: pa.DataType) -> bool:
    """Is a cell of this type text (quoted in CSV), rather than a number, boolean or time (bare)?"""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    bare = (pa.types.is_null(kind) or pa.types.is_boolean(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_temporal(kind)
            or pa.types.is_interval(kind))
    return not bare


def _csv_vectorized(column: pa.ChunkedArray) -> bool:
    """Can Arrow's cast to string write this column exactly as ``_text`` would (the fast path)?"""
    kind = column.type
    if pa.types.is_float64(kind):
        import pyarrow.compute as pc

        # Arrow writes nan and inf; the text of every format is NaN and Infinity.
        return pc.all(pc.fill_null(pc.is_finite(column), True)).as_py() is not False
    if pa.types.is_dictionary(kind):
        return pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    return (pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_string(kind)
            or pa.types.is_large_string(kind))


def _csv_cells(column: pa.ChunkedArray) -> pa.Array:
    """Each value of ``column`` as its CSV field: text quoted (``"a""b"``), the rest bare, NULL empty."""
    import pyarrow.compute as pc

    if pa.types.is_null(column.type):
        return pa.array([""] * len(column), pa.string())
    if _csv_vectorized(column):
        text = pc.cast(column, pa.string())
    else:
        text = pa.chunked_array([pa.array(cell_texts(column), pa.string())])
    if _csv_quoted(column.type):
        text = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.fill_null(text, "")


def write_csv(table: pa.Table, out: TextIO, *, batch_rows: int = 65_536) -> None:
    """A header line of the column names, then one line per row (RFC 4180, ``\n`` line ends).

    Text (strings, binary as base64, nested values as JSON text) and names are quoted; numbers,
    booleans and times are bare, in the text every format uses; NULL is an empty field (and the
    empty string ``""``). Runs column by column in Arrow where the type allows."""
    import pyarrow.compute as pc

    if not table.num_columns:
        return
    out.write(",".join('"' + name.replace('"', '""') + '"' for name in table.column_names) + "\n")
    for start in range(0, table.num_rows, batch_rows):
        part = table.slice(start, batch_rows)
        cells = [_csv_cells(column) for column in part.columns]
        lines = pc.binary_join_element_wise(*cells, ",") if len(cells) > 1 else cells[0]
        out.write("".join(line + "\n" for line in lines.to_pylist()))


def json_names(names: list[str]) -> list[str]:
    """Column names as JSON keys: a name repeated (``SELECT * FROM a JOIN b``) gets ``_1``, ``_2``
    as DuckDB names them, so no column silently overwrites another. Names differing only in case
    are distinct keys already."""
    taken, out = set(), []
    for name in names:
        if name in taken:
            suffix = 1
            while f"{name}_{suffix}" in taken or f"{name}_{suffix}" in names:
                suffix += 1
            name = f"{name}_{suffix}"
        taken.add(name)
        out.append(name)
    return out


def write_json_lines(table: pa.Table, out: TextIO) -> None:
    """One JSON object per row (JSON Lines), keys in column order (see ``json_names``)."""
    names = json_names(table.column_names)
    for batch in table.to_batches(max_chunksize=10_000):
        columns = [python_values(column) for column in batch.columns]
        kinds = [column.type for column in batch.columns]
        for row in range(batch.num_rows):
            obj = {name: json_value(values[row], kind, exact_as_string=True)
                   for name, values, kind in zip(names, columns, kinds)}
            out.write(dump_json(obj, spaced=True) + "\n")


# Control characters (Unicode Cc: C0, DEL, C1) and the Unicode line and paragraph separators
# would break a line or move the cursor.
_ESCAPES = {**{i: f"\\x{i:02x}" for i in [*range(32), *range(0x7F, 0xA0)]}, ord("\n"): "\\n",
            ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _display(text: str | None) -> str:
    return "NULL" if text is None else text.translate(_ESCAPES)


def _width(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


@dataclass
class _Grid:
    names: list[str]
    cells: list[list[str]]  # per column, display text of each row shown
    numeric: list[bool]
    rows: int  # rows in the result (may be more than shown)
    widths: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, table: pa.Table, limit: int | None) -> "_Grid":
        shown = table.slice(0, limit) if limit is not None else table
        cells = [[_display(t) for t in cell_texts(column)] for column in shown.columns]
        names = [_display(name) for name in table.column_names]
        widths = [max([_width(n)] + [_width(c) for c in column]) for n, column in zip(names, cells)]
        return cls(names, cells, [_is_numeric(c.type) for c in table.columns], table.num_rows, widths)

    @property
    def shown(self) -> int:
        return len(self.cells[0]) if self.cells else 0

    def table_width(self) -> int:
        return sum(self.widths) + 3 * len(self.widths) + 1


def _boxes(unicode: bool) -> dict[str, str]:
    if unicode:
        return dict(h="─", v="│", tl="┌", tm="┬", tr="┐", ml="├", mm="┼", mr="┤", bl="└", bm="┴", br="┘")
    return dict(h="-", v="|", tl="+", tm="+", tr="+", ml="+", mm="+", mr="+", bl="+", bm="+", br="+")


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill


def table_lines(grid: _Grid, *, unicode: bool = True) -> Iterator[str]:
    """A boxed grid: a header row, then one line per row shown."""
    b = _boxes(unicode)

    def rule(left: str, middle: str, right: str) -> str:
        return left + middle.join(b["h"] * (w + 2) for w in grid.widths) + right

    yield rule(b["tl"], b["tm"], b["tr"])
    yield b["v"] + b["v"].join(f" {_pad(n, w, False)} " for n, w in zip(grid.names, grid.widths)) + b["v"]
    yield rule(b["ml"], b["mm"], b["mr"])
    for row in range(grid.shown):
        yield b["v"] + b["v"].join(f" {_pad(column[row], w, numeric)} "
                                   for column, w, numeric in zip(grid.cells, grid.widths, grid.numeric)) + b["v"]
    yield rule(b["bl"], b["bm"], b["br"])


def vertical_lines(grid: _Grid, width: int | None = None) -> Iterator[str]:
    """One block per row, one ``name | value`` line per column (psql's ``\\x``, DuckDB's line mode)."""
    label = max((_width(n) for n in grid.names), default=0)
    values = max((_width(cell) for column in grid.cells for cell in column), default=0)
    for row in range(grid.shown):
        header = f"-[ RECORD {row + 1} ]"
        rule = max(label + 1 - len(header), 0)
        tail = max(min(values + 1, (width or 80) - label - 2), 1)  # a rule, not a measure: short
        yield header + "-" * rule + "+" + "-" * tail
        for name, column in zip(grid.names, grid.cells):
            yield f"{_pad(name, label, False)} | {column[row]}"


@dataclass
class Rendered:
    """Text for stdout, and notes for stderr (``note: ...``, one line each)."""

    text: str
    notes: list[str] = field(default_factory=list)


def render(table: pa.Table, fmt: str, *, width: int | None = None, limit: int | None = None,
           unicode: bool = True) -> Rendered:
    """``table`` in ``fmt`` (one of ``FORMATS``).

    ``width``: the terminal's columns, or None when the output is piped or captured (then nothing
    depends on a width). A ``table`` wider than ``width`` is shown ``vertical`` instead, with a note.
    ``limit``: rows shown at most in ``table``/``vertical`` (a note says how many there were);
    ``csv`` and ``json`` always print every row. Raises ValueError for an unknown ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = io.StringIO()
    if fmt == "csv":
        write_csv(table, out)
        return Rendered(out.getvalue())
    if fmt == "json":
        write_json_lines(table, out)
        return Rendered(out.getvalue())
    notes = []
    if not table.num_columns:
        return Rendered("")
    grid = _Grid.of(table, limit)
    if fmt == "table" and width is not None and grid.table_width() > width:
        fmt = "vertical"
        notes.append(f"note: {grid.table_width()} columns wide, terminal {width}: shown vertically "
                     f"(| less -S for the table)")
    lines = list(table_lines(grid, unicode=unicode) if fmt == "table" else vertical_lines(grid, width))
    if fmt == "vertical" and not grid.rows:
        lines.append("(0 rows)")
    if grid.rows > grid.shown:
        lines.append(f"({grid.rows:,} rows, first {grid.shown:,} shown; --limit shows more)")
    return Rendered("".join(line + "\n" for line in lines), notes)


__all__ = ["FORMATS", "Rendered", "cell_texts", "dump_json", "json_names", "json_value", "python_values", "render",
           "write_csv", "write_json_lines"]
