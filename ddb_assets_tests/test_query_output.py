"""Query results as text (ddb_assets/query/output.py): every type in every format, exactly.

Table-driven over the types a lake (and DuckDB SQL over it) produces, a round-trip property over
random nested Arrow tables, the terminal-width rule, and the query command end to end on the
cases of ddb_assets_tests/cases/.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import pty
import subprocess
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from ddb_assets.query.duckdb_engine import DuckDBEngine
from ddb_assets.query.output import json_names, render
from ddb_assets_tests.cli_helpers import ddb_assets_command, run_cli

SET_COLUMNS = Path(__file__).parent / "cases" / "set-columns" / "AWSDynamoDB" / "01764461340000-c5c5bc6c"


def _result(expression: str) -> pa.Table:
    engine = DuckDBEngine()
    try:
        return engine.query(f"SELECT {expression} AS v").table
    finally:
        engine.close()


# (case, DuckDB expression, cell text in table/vertical, CSV field, JSON value as text)
TYPES = [
    ("string", "'a\"b'", 'a"b', '"a""b"', '"a\\"b"'),
    ("string with a line break", "'a' || chr(10) || 'b'", "a\\nb", '"a\nb"', '"a\\nb"'),
    ("empty string", "''", "", '""', '""'),
    ("long", "9223372036854775807::BIGINT", "9223372036854775807", "9223372036854775807", "9223372036854775807"),
    ("decimal of 38 digits", "'12345678901234567890123456789012345678'::DECIMAL(38,0)",
     "12345678901234567890123456789012345678", "12345678901234567890123456789012345678",
     '"12345678901234567890123456789012345678"'),
    ("decimal of 38 fraction digits", "'-0.12345678901234567890123456789012345678'::DECIMAL(38,38)",
     "-0.12345678901234567890123456789012345678", "-0.12345678901234567890123456789012345678",
     '"-0.12345678901234567890123456789012345678"'),
    ("decimal zero keeps its scale", "0::DECIMAL(38,10)", "0.0000000000", "0.0000000000", '"0.0000000000"'),
    ("small decimal, no exponent", "'0.0000001'::DECIMAL(10,7)", "0.0000001", "0.0000001", '"0.0000001"'),
    ("boolean", "true", "true", "true", "true"),
    ("binary as base64", "'\\xFF\\x00'::BLOB", "/wA=", '"/wA="', '"/wA="'),
    ("number set (list of long)", "[104, 7]", "[104, 7]", '"[104, 7]"', "[104, 7]"),
    ("decimal set", "[1.50, 2.25]::DECIMAL(4,2)[]", "[1.50, 2.25]", '"[1.50, 2.25]"', '["1.50", "2.25"]'),
    ("string set", "['Carbon Monoxide', 'Ozone']", '["Carbon Monoxide", "Ozone"]',
     '"[""Carbon Monoxide"", ""Ozone""]"', '["Carbon Monoxide", "Ozone"]'),
    ("binary set", "['\\x00\\x01\\x02'::BLOB, '\\xFF'::BLOB]", '["AAEC", "/w=="]', '"[""AAEC"", ""/w==""]"',
     '["AAEC", "/w=="]'),
    ("list with a null", "[NULL, 1]", "[null, 1]", '"[null, 1]"', "[null, 1]"),
    ("nested struct (the raw export)", "{'customer_id': {'s': 'c1'}, 'n': {'ns': ['1', '2']}}",
     '{"customer_id": {"s": "c1"}, "n": {"ns": ["1", "2"]}}',
     '"{""customer_id"": {""s"": ""c1""}, ""n"": {""ns"": [""1"", ""2""]}}"',
     '{"customer_id": {"s": "c1"}, "n": {"ns": ["1", "2"]}}'),
    ("timestamptz", "TIMESTAMPTZ '2025-11-30 00:09:00+00'", "2025-11-30T00:09:00Z", "2025-11-30T00:09:00Z",
     '"2025-11-30T00:09:00Z"'),
    ("timestamptz with a fraction", "TIMESTAMPTZ '2025-11-30 00:09:00.123456+00'", "2025-11-30T00:09:00.123456Z",
     "2025-11-30T00:09:00.123456Z", '"2025-11-30T00:09:00.123456Z"'),
    ("timestamp in nanoseconds", "TIMESTAMP_NS '2025-01-01 00:00:00.123456789'", "2025-01-01T00:00:00.123456789",
     "2025-01-01T00:00:00.123456789", '"2025-01-01T00:00:00.123456789"'),
    # A fraction has its unit's digits, trailing zeros included: a column's values line up.
    ("timestamptz, a fraction with trailing zeros", "TIMESTAMPTZ '2025-11-30 16:02:27.01748+00'",
     "2025-11-30T16:02:27.017480Z", "2025-11-30T16:02:27.017480Z", '"2025-11-30T16:02:27.017480Z"'),
    ("timestamp in milliseconds", "TIMESTAMP_MS '2025-11-30 16:02:27.5'", "2025-11-30T16:02:27.500",
     "2025-11-30T16:02:27.500", '"2025-11-30T16:02:27.500"'),
    ("timestamp in nanoseconds, trailing zeros", "TIMESTAMP_NS '2025-01-01 00:00:00.1'",
     "2025-01-01T00:00:00.100000000", "2025-01-01T00:00:00.100000000", '"2025-01-01T00:00:00.100000000"'),
    ("timestamp list", "[TIMESTAMP '2025-01-01 00:00:00.25']", '["2025-01-01T00:00:00.250000"]',
     '"[""2025-01-01T00:00:00.250000""]"', '["2025-01-01T00:00:00.250000"]'),
    ("date", "DATE '2025-01-01'", "2025-01-01", "2025-01-01", '"2025-01-01"'),
    ("time", "TIME '12:00:00.25'", "12:00:00.25", "12:00:00.25", '"12:00:00.25"'),
    ("interval", "INTERVAL '1 year 2 months 3 days 4 hours'", "P1Y2M3DT4H", "P1Y2M3DT4H", '"P1Y2M3DT4H"'),
    ("null-only column", "NULL", "NULL", "", "null"),
    ("double", "0.1::DOUBLE", "0.1", "0.1", "0.1"),
    ("double NaN", "'nan'::DOUBLE", "NaN", "NaN", '"NaN"'),
    ("double infinity", "'-inf'::DOUBLE", "-Infinity", "-Infinity", '"-Infinity"'),
    ("float", "1.1::FLOAT", "1.1", "1.1", "1.1"),
    ("map", "MAP {'a': 1}", '{"a": 1}', '"{""a"": 1}"', '{"a": 1}'),
]


@pytest.mark.fast
@pytest.mark.parametrize("case, expression, text, csv_field, json_text", TYPES, ids=[t[0] for t in TYPES])
def test_every_type_prints_exactly_in_every_format(case: str, expression: str, text: str, csv_field: str,
                                                   json_text: str) -> None:
    table = _result(expression)
    assert render(table, "csv").text == f'"v"\n{csv_field}\n'
    assert render(table, "json").text == '{"v": ' + json_text + "}\n"
    assert render(table, "vertical").text.splitlines()[1:] == [f"v | {text}"]
    width = max(1, len(text))
    assert render(table, "table").text.splitlines()[3] == f"│ {text:{'>' if _right(table) else '<'}{width}} │"


def _right(table: pa.Table) -> bool:
    kind = table.schema.field(0).type
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


@pytest.mark.fast
def test_a_repeated_column_name_never_overwrites_another_in_json() -> None:
    table = _result("1 AS a, 2 AS a, 3 AS A, 4")  # "AS v" names the last
    assert json_names(["a", "a", "A", "a_1", "a"]) == ["a", "a_2", "A", "a_1", "a_3"]
    assert json.loads(render(table, "json").text) == {"a": 1, "a_1": 2, "A": 3, "v": 4}


@pytest.mark.fast
def test_a_result_without_columns_prints_nothing() -> None:
    for fmt in ("table", "vertical", "csv", "json"):
        assert render(pa.table({}), fmt).text == ""


# -- the terminal's width ---------------------------------------------------------------------------

WIDE = pa.table({f"column_{i:02d}": [f"value {i:02d}"] * 3 for i in range(12)})  # 12 x (9 + 3) + 1 = 145 wide


@pytest.mark.fast
def test_a_table_wider_than_the_terminal_is_shown_vertically_and_says_so_in_one_line() -> None:
    rendered = render(WIDE, "table", width=80)
    assert rendered.notes == ["note: 145 columns wide, terminal 80: shown vertically (| less -S for the table)"]
    lines = rendered.text.splitlines()
    assert lines[:2] == ["-[ RECORD 1 ]+---------", "column_00 | value 00"]
    assert len(lines) == 3 * 13 and all(len(line) <= 80 for line in lines)


@pytest.mark.fast
def test_without_a_terminal_the_table_is_whole_one_line_per_row() -> None:
    rendered = render(WIDE, "table", width=None)
    lines = rendered.text.splitlines()
    assert rendered.notes == [] and len(lines) == 3 + 3 + 1
    assert {len(line) for line in lines} == {145}
    assert render(WIDE, "table", width=145).notes == []  # fits exactly: the grid


@pytest.mark.fast
def test_limit_applies_to_the_grid_and_vertical_only() -> None:
    table = pa.table({"n": list(range(5))})
    assert render(table, "table", limit=2).text.splitlines()[-1] == "(5 rows, first 2 shown; --limit shows more)"
    assert render(table, "vertical", limit=2).text.count("-[ RECORD") == 2
    assert render(table, "csv", limit=2).text.count("\n") == 6
    assert render(table, "json", limit=2).text.count("\n") == 5
    assert render(table.slice(0, 0), "vertical").text == "(0 rows)\n"


@pytest.mark.fast
def test_wide_characters_and_control_characters_keep_the_grid_aligned() -> None:
    table = pa.table({"s": ["é✓", "日本語", "tab\there"]})
    lines = render(table, "table").text.splitlines()
    assert len({cell_len(line) for line in lines}) == 1
    assert "tab\\there" in lines[5]


# -- the round trip: what json and csv print reads back as the values ---------------------------------


@st.composite
def _arrow_types(draw: st.DrawFn, depth: int = 0) -> pa.DataType:
    scalars = [pa.int64(), pa.string(), pa.binary(), pa.bool_(), pa.float64(), pa.date32(),
               pa.timestamp("us", tz="UTC"), pa.null()]
    choice = draw(st.integers(0, len(scalars) + (2 if depth < 2 else -1)))
    if choice < len(scalars):
        return scalars[choice]
    if choice == len(scalars):
        precision = draw(st.integers(1, 38))
        return pa.decimal128(precision, draw(st.integers(0, precision)))
    if choice == len(scalars) + 1:
        return pa.list_(draw(_arrow_types(depth + 1)))
    names = draw(st.lists(st.sampled_from(["s", "n", "Name", "name", "b"]), min_size=1, max_size=3, unique=True))
    return pa.struct([(name, draw(_arrow_types(depth + 1))) for name in names])


def _values(kind: pa.DataType) -> st.SearchStrategy[Any]:
    if pa.types.is_null(kind):
        return st.none()
    if pa.types.is_int64(kind):
        return st.integers(-(2 ** 63), 2 ** 63 - 1)
    if pa.types.is_string(kind):
        return st.text(max_size=8)
    if pa.types.is_binary(kind):
        return st.binary(max_size=6)
    if pa.types.is_boolean(kind):
        return st.booleans()
    if pa.types.is_float64(kind):
        return st.floats(allow_nan=True, allow_infinity=True)
    if pa.types.is_date32(kind):
        return st.dates(date(1, 1, 1), date(9999, 12, 31))
    if pa.types.is_timestamp(kind):
        return st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(timezone.utc))
    if pa.types.is_decimal(kind):
        digits = st.integers(-(10 ** kind.precision - 1), 10 ** kind.precision - 1)
        # n's digits with the type's exponent, as a column holds them: Decimal(n).scaleb() would
        # drop trailing zeros' precision (1E+33), which pyarrow then refuses for the type.
        return digits.map(lambda n: Decimal(f"{n}E-{kind.scale}"))
    if pa.types.is_list(kind):
        return st.lists(_values(kind.value_type) | st.none(), max_size=3)
    return st.fixed_dictionaries({f.name: _values(f.type) | st.none() for f in kind})


@st.composite
def _tables(draw: st.DrawFn) -> pa.Table:
    kinds = draw(st.lists(_arrow_types(), min_size=1, max_size=4))
    rows = draw(st.integers(0, 4))
    columns = [pa.array([draw(_values(kind) | st.none()) for _ in range(rows)], kind) for kind in kinds]
    return pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(len(kinds))])


def _read_back(value: Any, kind: pa.DataType) -> Any:
    """What the JSON value stands for, by the documented rules (independently of output.py)."""
    if value is None:
        return None
    if pa.types.is_decimal(kind):
        assert isinstance(value, str), value  # never a JSON number a reader may round
        return Decimal(value)
    if pa.types.is_binary(kind):
        return base64.b64decode(value)
    if pa.types.is_float64(kind):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)
    if pa.types.is_date32(kind):
        return date.fromisoformat(value)
    if pa.types.is_timestamp(kind):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if pa.types.is_list(kind):
        return [_read_back(v, kind.value_type) for v in value]
    if pa.types.is_struct(kind):
        return {f.name: _read_back(value[f.name], f.type) for f in kind}
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b) or (isinstance(a, Decimal) and a == b)


@pytest.mark.fast
@given(_tables())
def test_json_reads_back_as_the_values_and_every_format_renders(table: pa.Table) -> None:
    lines = render(table, "json").text.splitlines()
    assert len(lines) == table.num_rows
    for line, original in zip(lines, table.to_pylist()):
        row = json.loads(line)
        assert list(row) == table.column_names
        for field in table.schema:
            assert _same(original[field.name], _read_back(row[field.name], field.type)), (field, line)

    # A row of one NULL is an empty line, as in PostgreSQL's CSV (the reader sees no field).
    parsed = [row or [""] for row in csv.reader(io.StringIO(render(table, "csv").text))]
    assert parsed[0] == table.column_names and len(parsed) == table.num_rows + 1
    assert all(len(row) == table.num_columns for row in parsed)
    for field in table.schema:
        if pa.types.is_decimal(field.type):
            column = [row[table.column_names.index(field.name)] for row in parsed[1:]]
            assert [Decimal(v) if v else None for v in column] == table.column(field.name).to_pylist()

    grid = render(table, "table").text.splitlines()
    assert len(grid) == 4 + table.num_rows and len({cell_len(line) for line in grid}) == 1
    vertical = render(table, "vertical").text.splitlines()
    assert len(vertical) == (table.num_columns + 1) * table.num_rows or vertical == ["(0 rows)"]


# -- the query command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("output") / "lake"
    converted = run_cli("convert", str(SET_COLUMNS), str(root / "t"))
    assert converted.returncode == 0, converted.stderr
    generated = run_cli("generate-export", str(root.parent / "reviews"), "--items", "300", "--files", "2")
    assert generated.returncode == 0, generated.stderr
    [summary] = (root.parent / "reviews").glob("bench/AWSDynamoDB/*/manifest-summary.json")
    converted = run_cli("convert", str(summary.parent), str(root / "reviews"), "--partition-by", "month(review_date)")
    assert converted.returncode == 0, converted.stderr
    return root


def _query(lake: Path, sql: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("query", sql, "--lake", str(lake), *args, env=env)


SET_COLUMNS_OUTPUT = {
    "csv": '"pk","dataset_ids","prices","pollutants","blobs"\n'
           '"a","[104, 7]","[1.50, 2.25]","[""Carbon Monoxide"", ""Ozone""]","[""AAEC"", ""/w==""]"\n'
           '"b","[1]","[10.00]","[""Ozone""]","[""aGk=""]"\n',
    "json": '{"pk": "a", "dataset_ids": [104, 7], "prices": ["1.50", "2.25"], "pollutants": ["Carbon Monoxide", '
            '"Ozone"], "blobs": ["AAEC", "/w=="]}\n'
            '{"pk": "b", "dataset_ids": [1], "prices": ["10.00"], "pollutants": ["Ozone"], "blobs": ["aGk="]}\n',
    "table": "┌────┬─────────────┬──────────────┬──────────────────────────────┬──────────────────┐\n"
             "│ pk │ dataset_ids │ prices       │ pollutants                   │ blobs            │\n"
             "├────┼─────────────┼──────────────┼──────────────────────────────┼──────────────────┤\n"
             '│ a  │ [104, 7]    │ [1.50, 2.25] │ ["Carbon Monoxide", "Ozone"] │ ["AAEC", "/w=="] │\n'
             '│ b  │ [1]         │ [10.00]      │ ["Ozone"]                    │ ["aGk="]         │\n'
             "└────┴─────────────┴──────────────┴──────────────────────────────┴──────────────────┘\n",
    "vertical": "-[ RECORD 1 ]+-----------------------------\n"
                "pk          | a\n"
                "dataset_ids | [104, 7]\n"
                "prices      | [1.50, 2.25]\n"
                'pollutants  | ["Carbon Monoxide", "Ozone"]\n'
                'blobs       | ["AAEC", "/w=="]\n'
                "-[ RECORD 2 ]+-----------------------------\n"
                "pk          | b\n"
                "dataset_ids | [1]\n"
                "prices      | [10.00]\n"
                'pollutants  | ["Ozone"]\n'
                'blobs       | ["aGk="]\n',
}


@pytest.mark.parametrize("fmt", list(SET_COLUMNS_OUTPUT))
def test_set_columns_print_in_every_format(lake: Path, fmt: str) -> None:
    result = _query(lake, "SELECT * FROM t ORDER BY pk", "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stdout == SET_COLUMNS_OUTPUT[fmt] and result.stderr == ""


def test_the_issue_example_a_number_set_as_csv(lake: Path) -> None:
    result = _query(lake, "SELECT pk, dataset_ids FROM t ORDER BY pk", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == '"pk","dataset_ids"\n"a","[104, 7]"\n"b","[1]"\n'


def test_the_raw_export_and_timestamptz_columns_print(lake: Path) -> None:
    raw = _query(lake, "SELECT item FROM r ORDER BY item.pk.s", "--raw", f"r={SET_COLUMNS}", "--format", "json")
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout.splitlines()[0])["item"]["blobs"] == {"bs": ["AAEC", "/w=="]}  # the crawler's shape: descriptors lowercase
    stamp = _query(lake, "SELECT review_date, review_date__ts FROM reviews ORDER BY review_date LIMIT 1",
                   "--format", "csv")
    assert stamp.returncode == 0, stamp.stderr
    day = stamp.stdout.splitlines()[1].split(",")[0].strip('"')
    assert stamp.stdout.splitlines()[1] == f'"{day}",{day}T00:00:00Z'


EMPTY_SQL = ["", ";", "   ", "\n;\n", "-- only a comment", "/* a comment */ ;"]


@pytest.mark.parametrize("sql", EMPTY_SQL, ids=["empty", "semicolon", "blanks", "newlines", "line-comment",
                                                "block-comment"])
def test_an_empty_statement_is_one_error_line(lake: Path, sql: str) -> None:
    result = _query(lake, sql)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "error: the SQL holds no statement (it is empty, blank, only ';' or only comments)\n"


def test_sql_may_start_with_a_comment_and_a_mistyped_option_is_named(lake: Path) -> None:
    result = _query(lake, "-- how many\nSELECT count(*) AS n FROM t", "--format", "csv")
    assert (result.returncode, result.stdout) == (0, '"n"\n2\n'), result.stderr
    typo = run_cli("query", "--fromat=csv", "--lake", str(lake))
    assert (typo.returncode, typo.stderr) == (2, "Usage: ddb-assets query [OPTIONS] {SQL}\n"
                                                 "error: no such option: --fromat (Possible options: --format, --raw) "
                                                 "(see ddb-assets query --help)\n")


def test_wide_results_on_a_terminal_go_vertical_and_captured_output_never_wraps(lake: Path) -> None:
    columns = _query(lake, "SELECT count(*) FROM (DESCRIBE reviews)", "--format", "csv").stdout.splitlines()[1]
    assert int(columns) >= 30
    captured = _query(lake, "SELECT * FROM reviews ORDER BY review_id LIMIT 3", env={"COLUMNS": "60"})
    lines = captured.stdout.splitlines()
    assert captured.returncode == 0 and captured.stderr == ""
    assert len(lines) == 4 + 3 and len({cell_len(line) for line in lines}) == 1 and cell_len(lines[0]) > 60

    stdout, stderr = _on_a_terminal(["query", "SELECT * FROM reviews ORDER BY review_id LIMIT 2", "--lake", str(lake)],
                                    columns=80)
    assert stderr.startswith("note: ") and stderr.count("\n") == 1 and "terminal 80: shown vertically" in stderr
    lines = stdout.splitlines()
    assert sum(line.startswith("-[ RECORD") for line in lines) == 2 and len(lines) == 2 * (int(columns) + 1)
    assert all(" | " in line for line in lines if not line.startswith("-[ RECORD"))


def _on_a_terminal(args: list[str], columns: int) -> tuple[str, str]:
    """Run the CLI with stdout on a pseudo-terminal ``columns`` wide; (stdout, stderr)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns)}
    process = subprocess.Popen([*ddb_assets_command(), *args], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal is gone: the process exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert process.wait(timeout=120) == 0, stderr
    return b"".join(chunks).decode().replace("\r\n", "\n"), stderr


@pytest.mark.fast
def test_unicode_line_separators_never_break_a_row() -> None:
    # U+2028, U+2029 and NEL are line breaks to Unicode-aware splitters (str.splitlines, editors).
    table = pa.table({"a": ["x\u2028y\x85z\u2029"], "b": [{"k\u2028": "v"}]})
    assert render(table, "json").text == '{"a": "x\\u2028y\\u0085z\\u2029", "b": {"k\\u2028": "v"}}\n'
    assert json.loads(render(table, "json").text) == {"a": "x\u2028y\x85z\u2029", "b": {"k\u2028": "v"}}
    grid = render(table, "table").text.splitlines()
    assert len(grid) == 5 and "x\\u2028y\\x85z\\u2029" in grid[3]
    assert len(render(table, "vertical").text.splitlines()) == 3
