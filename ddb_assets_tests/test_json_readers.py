"""arrow-rs's JSON reader as the default parse path: the same table as pyarrow's reader, or none.

The guarantees it must keep (exports/json_reader.py): an attribute or type descriptor outside the
learned schema is never dropped, a malformed line is reported with its file and line, numbers stay
the exact text of the export. Whatever arrow-rs cannot be shown to read exactly goes to pyarrow.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_assets.exports import json_reader
from ddb_assets.exports.buffers import ByteArena, Text, gunzip_into
from ddb_assets.exports.decode import RAW_MAP, parse_items
from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets_tests import doctor
from ddb_assets_tests.lake_reader import read_rows, rebuild_items
from ddb_assets_tests.strategies import item_batches, items


def lines_of(docs: list[dict]) -> bytes:
    return b"".join(orjson.dumps({"Item": doc}) + b"\n" for doc in docs)


def learned(raw: bytes, **kwargs: Any) -> pa.Schema:
    """The schema a worker holds after parsing ``raw`` (pyarrow's reader: no schema yet)."""
    _, known = parse_items(raw, output_format="DYNAMODB_JSON", obj="f", json_reader="pyarrow", **kwargs)
    return known


def both(raw: bytes, known: pa.Schema | None, **kwargs: Any) -> tuple[tuple[pa.Table, pa.Schema], ...]:
    return tuple(parse_items(raw, output_format="DYNAMODB_JSON", obj="f", known=known, json_reader=reader, **kwargs)
                 for reader in ("pyarrow", "arrow-rs"))


def the_same(raw: bytes, known: pa.Schema | None, **kwargs: Any) -> pa.Table:
    """Both readers give the same table and the same schema to go on with."""
    (table, schema), (fast_table, fast_schema) = both(raw, known, **kwargs)
    assert fast_table.equals(table)
    assert fast_table.schema.equals(table.schema) and fast_schema.equals(schema)
    return table


def errors_of(raw: bytes, known: pa.Schema | None) -> list[str]:
    found = []
    for reader in ("pyarrow", "arrow-rs"):
        with pytest.raises(ExportFormatError) as raised:
            parse_items(raw, output_format="DYNAMODB_JSON", obj="data/f.json.gz", known=known, json_reader=reader)
        found.append(str(raised.value))
    return found


REVIEW = {"pk": {"S": "r-1"}, "sk": {"N": "1"}, "price": {"N": "12.50"}, "tags": {"SS": ["a", "b, c"]},
          "gift": {"BOOL": False}, "note": {"NULL": True}, "bin": {"B": "AAEC"},
          "who": {"M": {"name": {"S": "Ann: \"the\" reviewer"}, "badges": {"L": [{"S": "top"}, {"N": "3"}]}}},
          "extras": {"L": []}, "sizes": {"NS": ["1", "2.5"]}}


def reviews(count: int, **extra: Any) -> list[dict]:
    return [{**REVIEW, "pk": {"S": f"r-{i}"}, **extra} for i in range(count)]


# -- the same table -------------------------------------------------------------------------------


def test_a_piece_the_schema_covers_is_read_by_arrow_rs_into_pyarrows_table() -> None:
    raw = lines_of(reviews(300))
    known = learned(raw)
    assert json_reader.read_items(Text(raw), known) is not None  # the fast path, not the fallback
    the_same(raw, known)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(earlier=item_batches(), batch=item_batches())
def test_random_items_give_the_same_table_from_both_readers(earlier: list[dict], batch: list[dict]) -> None:
    """Schema learned from earlier items (as a worker's is), then any items: both readers agree,
    whether the schema covers them (arrow-rs) or not (pyarrow, inferring what is new)."""
    known = learned(lines_of(earlier))
    the_same(lines_of(batch), known)
    the_same(lines_of(batch), learned(lines_of(batch)))  # covered: arrow-rs's path whenever it can show it


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(items(), min_size=1, max_size=6))
def test_items_of_every_type_are_read_by_arrow_rs_when_the_schema_covers_them(batch: list[dict]) -> None:
    raw = lines_of(batch)
    known = learned(raw)
    fast = json_reader.read_items(Text(raw), known)
    reference, _ = parse_items(raw, output_format="DYNAMODB_JSON", obj="f", known=known, json_reader="pyarrow")
    if fast is not None:
        assert fast.equals(reference)
    else:  # only text screened out before the read (strings that look like misplaced commas)
        assert json_reader._text_counts(Text(raw)) is None


def test_empty_lists_are_typed_as_pyarrow_infers_them_whether_present_or_not() -> None:
    known = learned(lines_of(reviews(5)))  # extras: {"L": []} (list<null>), kept for arrow-rs
    without = [{k: v for k, v in r.items() if k != "extras"} for r in reviews(5)]
    for raw in (lines_of(without), lines_of(reviews(5)), lines_of(reviews(3, extras={"L": [{"S": "x"}]}))):
        the_same(raw, known)
    assert json_reader.read_items(Text(lines_of(without)), known) is not None


def test_exact_numbers_stay_their_text() -> None:
    numbers = ["1.0000000000000000000000000001", "-1E-130", "9" * 38, "0.000000000000000000000000000000000001",
               "1e+125", "-0"]
    raw = lines_of([{"pk": {"S": f"n{i}"}, "n": {"N": n}, "ns": {"NS": [n, "1"]}} for i, n in enumerate(numbers)])
    known = learned(raw)
    table = json_reader.read_items(Text(raw), known)
    assert table is not None
    rows = table.column("Item").to_pylist()
    assert [r["n"]["N"] for r in rows] == numbers and [r["ns"]["NS"][0] for r in rows] == numbers


def test_a_dictionary_map_is_lifted_and_attached_under_arrow_rs() -> None:
    docs = [{"pk": {"S": f"k{i}"}, "votes": {"M": {f"d{j}": {"N": str(j)} for j in range(i % 7)}}} for i in range(50)]
    raw = lines_of(docs)
    maps = frozenset({("votes",)})
    known = learned(raw, dictionary_maps=maps)
    table = the_same(raw, known, dictionary_maps=maps)
    assert table.column("Item").combine_chunks().field("votes").type.field(RAW_MAP).type == pa.string()
    assert json_reader.read_items(Text(lines_of(docs[1:7])), known) is None  # not lifted: not covered
    forged = lines_of([{"pk": {"S": "b"}, "votes": {RAW_MAP: "0"}}])
    assert len(set(errors_of(raw + forged, known))) == 1  # the internal descriptor refused under both


def test_parsed_tables_do_not_point_into_the_arena() -> None:
    import gzip

    arena = ByteArena()
    first = lines_of([{"pk": {"S": f"first-{i}"}} for i in range(1000)])
    second = lines_of([{"pk": {"S": f"SECOND{i:04d}"}} for i in range(1000)])
    known = learned(first)
    table, _ = parse_items(gunzip_into(gzip.compress(first), arena, obj="a"), output_format="DYNAMODB_JSON", obj="a",
                           known=known, json_reader="arrow-rs")
    gunzip_into(gzip.compress(second), arena, obj="b")
    assert table.column("Item").combine_chunks().field("pk").field("S").to_pylist()[:2] == ["first-0", "first-1"]


# -- nothing outside the schema is dropped ----------------------------------------------------------

NEW_THINGS = {
    "a new attribute": {"fresh": {"S": "new"}},
    "a new descriptor": {"price": {"S": "n/a"}},
    "a new descriptor in a map": {"who": {"M": {"name": {"N": "7"}}}},
    "a new attribute in a map": {"who": {"M": {"name": {"S": "x"}, "age": {"N": "40"}}}},
    "a new descriptor in a list": {"who": {"M": {"badges": {"L": [{"BOOL": True}]}}}},
    "a first element in an empty list": {"extras": {"L": [{"S": "x"}]}},
    "an unknown descriptor": {"price": {"X": "1"}},
    "a key with null": {"fresh": None},
}


@pytest.mark.parametrize("new", NEW_THINGS)
@pytest.mark.parametrize("where", [0, 150, 299])
def test_what_the_schema_lacks_is_never_dropped_wherever_it_appears(new: str, where: int) -> None:
    docs = reviews(300)
    known = learned(lines_of(docs))
    docs[where] = {**docs[where], **NEW_THINGS[new]}
    raw = lines_of(docs)
    assert json_reader.read_items(Text(raw), known) is None
    try:
        table = the_same(raw, known)
    except ExportFormatError:  # refused (an unknown descriptor, a null): the same error from both
        assert len(set(errors_of(raw, known))) == 1
        return
    row = table.column("Item").to_pylist()[where]
    for name, value in NEW_THINGS[new].items():
        assert {k: v for k, v in row[name].items() if v is not None} == value or name == "who"


def test_a_top_level_key_besides_item_is_refused_by_both() -> None:
    raw = lines_of(reviews(10))
    known = learned(raw)
    spoilt = raw + b'{"Item":{"pk":{"S":"x"}},"Other":{"S":"y"}}\n'
    assert errors_of(spoilt, known)[0] == errors_of(spoilt, known)[1]
    assert errors_of(spoilt, known)[0].startswith("data/f.json.gz:11: expected {\"Item\": ...} lines")


def test_duplicate_keys_are_left_to_pyarrow() -> None:
    raw = lines_of(reviews(10))
    known = learned(raw)
    for spoilt in (b'{"Item":{"pk":{"S":"a","S":"b"}}}\n', b'{"Item":{"pk":{"S":"a"},"pk":{"S":"b"}}}\n'):
        assert json_reader.read_items(Text(raw + spoilt), known) is None


# -- malformed lines: reported with file and line, whichever reader ---------------------------------

MALFORMED = {
    "trailing comma": b'{"Item":{"pk":{"S":"x"},}}',
    "leading comma": b'{"Item":{,"pk":{"S":"x"}}}',
    "double comma": b'{"Item":{"pk":{"S":"x"},,"sk":{"N":"1"}}}',
    "missing comma": b'{"Item":{"pk":{"S":"x"} "sk":{"N":"1"}}}',
    "missing comma in a set": b'{"Item":{"pk":{"S":"x"},"tags":{"SS":["a" "b"]}}}',
    "trailing comma in a set": b'{"Item":{"pk":{"S":"x"},"tags":{"SS":["a",]}}}',
    "missing comma in a list": b'{"Item":{"pk":{"S":"x"},"who":{"M":{"badges":{"L":[{"S":"a"} {"S":"b"}]}}}}}',
    "comma moved into a wrapper": b'{"Item":{"pk":{"S":"x",}"sk":{"N":"1"}}}',
    "spaced trailing comma": b'{"Item":{"pk":{"S":"x"} , }}',
    "raw tab in a string": b'{"Item":{"pk":{"S":"x\ty"}}}',
    "raw control character": b'{"Item":{"pk":{"S":"x\x01y"}}}',
    "lone surrogate": b'{"Item":{"pk":{"S":"\\ud800"}}}',
    "unclosed object": b'{"Item":{"pk":{"S":"x"}}',
    "number for a string": b'{"Item":{"pk":{"N":5}}}',
    "not an object": b'[{"Item":{}}]',
    "null": b"null",
    "comma after a colon": b'{"Item":{"pk":,{"S":"x"}}}',
    "comma after the line": b'{"Item":{"pk":{"S":"x"}}},',
    "comma before the line": b',{"Item":{"pk":{"S":"x"}}}',
    "colon for a comma": b'{"Item":{"pk":{"S":"x"}:"sk":{"N":"1"}}}',
}


@pytest.mark.parametrize("bad", MALFORMED)
@pytest.mark.parametrize("line", [1, 7, 20])
def test_a_malformed_line_is_reported_with_file_and_line_by_both_readers(bad: str, line: int) -> None:
    docs = reviews(20)
    known = learned(lines_of(docs))
    raw = b"".join((MALFORMED[bad] if number == line else orjson.dumps({"Item": doc})) + b"\n"
                   for number, doc in enumerate(docs, start=1))
    slow, fast = errors_of(raw, known)
    assert fast == slow
    assert fast.startswith(f"data/f.json.gz:{line}: "), fast


DAMAGE = list(b'{}[],:" \t\n\\tfnu0')


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(batch=item_batches(), data=st.data())
def test_a_damaged_line_has_the_same_outcome_under_both_readers(batch: list[dict], data: st.DataObject) -> None:
    """One byte deleted, inserted or replaced anywhere, or two swapped: the same table, or the same
    error (file, line and problem), whichever reader is asked for."""
    raw = lines_of(batch)
    known = learned(raw)
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    byte = bytes([data.draw(st.sampled_from(DAMAGE), label="byte")])
    spoilt = data.draw(st.sampled_from([raw[:at] + raw[at + 1:], raw[:at] + byte + raw[at:],
                                        raw[:at] + byte + raw[at + 1:],
                                        raw[:at] + raw[at + 1:at + 2] + raw[at:at + 1] + raw[at + 2:]]), label="spoilt")
    outcomes = []
    for reader in ("pyarrow", "arrow-rs"):
        try:
            table, schema = parse_items(spoilt, output_format="DYNAMODB_JSON", obj="f", known=known, json_reader=reader)
            outcomes.append((table.to_pylist(), table.schema, schema))
        except ExportFormatError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


def test_commas_in_strings_and_names_are_not_taken_for_structure() -> None:
    docs = [{"pk": {"S": f"a,{i}:b"}, "x,y:z": {"SS": ["{,", "q:,r"]}, "s": {"S": ",,:"}} for i in range(20)]
    raw = lines_of(docs)
    known = learned(raw)
    the_same(raw, known)
    plain = lines_of([{"pk": {"S": f"a,{i}:b"}, "x,y:z": {"SS": ["p", "q:,r"]}} for i in range(20)])
    assert json_reader.read_items(Text(plain), learned(plain)) is not None


def test_blank_lines_a_missing_last_line_end_and_spaced_json_read_the_same() -> None:
    raw = lines_of(reviews(30))
    known = learned(raw)
    spaced = b"".join(json.dumps({"Item": doc}).encode() + b"\n" for doc in reviews(30))  # ", " and ": "
    for text in (raw[:-1], b"\n" + raw, raw.replace(b"}\n", b"}\n\n", 3), spaced, raw.replace(b"}\n", b"}   \n")):
        the_same(text, known)
    assert json_reader.read_items(Text(raw[:-1]), known) is not None
    assert json_reader.read_items(Text(spaced), known) is not None


def test_escaped_colons_and_commas_are_left_to_pyarrow() -> None:
    raw = b'{"Item":{"pk":{"S":"a\\u003ab"}}}\n{"Item":{"pk":{"S":"a\\u002Cb"}}}\n'
    known = learned(raw)
    assert json_reader.read_items(Text(raw), known) is None
    the_same(raw, known)


def test_a_first_line_of_null_is_reported_not_a_crash() -> None:
    """pyarrow 26's reader segfaults when its first row is null: the line is reported before."""
    script = ("from ddb_assets.exports.decode import parse_items\n"
              "from ddb_assets.exports.errors import ExportFormatError\n"
              "try:\n"
              "    parse_items(b'null\\n{\"Item\":{}}\\n', output_format='DYNAMODB_JSON', obj='f', json_reader='pyarrow')\n"
              "except ExportFormatError as exc:\n"
              "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("f:1: expected a {\"Item\": ...} line of a full export"), done.stdout


def test_a_character_0_in_a_value_arrow_rs_cannot_read_is_not_a_crash() -> None:
    """arrow-rs's error quotes the value it could not read; with the character 0 in it, arro3's C
    stream aborted the process (arro3-io 0.9.1). Run apart: before the fix this killed the
    interpreter. An empty list that later holds the string, and a descriptor of the wrong shape."""
    script = r"""
from ddb_assets.exports import json_reader
from ddb_assets.exports.buffers import Text
from ddb_assets.exports.decode import parse_items
from ddb_assets.exports.errors import ExportFormatError
known = parse_items(b'{"Item":{"pk":{"S":"a"},"x":{"L":[]}}}\n', output_format='DYNAMODB_JSON', obj='f',
                    json_reader='pyarrow')[1]
for raw in (b'{"Item":{"pk":{"S":"b"},"x":{"L":[{"S":"\\u0000"}]}}}\n',
            b'{"Item":{"pk":{"S":["\\u0000"]}}}\n'):
    print(json_reader.read_items(Text(raw), known))
    outcomes = []
    for reader in ('pyarrow', 'arrow-rs'):
        try:
            outcomes.append(parse_items(raw, output_format='DYNAMODB_JSON', obj='f', known=known,
                                        json_reader=reader)[0].to_pylist())
        except ExportFormatError as exc:
            outcomes.append(str(exc))
    print(outcomes[0] == outcomes[1], outcomes[1])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "None", "True [{'Item': {'pk': {'S': 'b'}, 'x': {'L': [{'S': '\\x00'}]}}}]",
        "None", "True f:1: attribute 'pk': S must be a JSON string"], done.stdout


def test_a_learned_name_with_a_character_0_keeps_its_name_under_arrow_rs() -> None:
    """The schema reaches arrow-rs with its names as C strings (cut at the character 0): a name
    learned from an earlier piece came back as "a" in a later piece that lacks the attribute."""
    known = learned(b'{"Item":{"pk":{"S":"a"},"a\\u0000":{"S":"x"}}}\n')
    raw = b'{"Item":{"pk":{"S":"b"}}}\n'
    assert json_reader.read_items(Text(raw), known) is None
    table = the_same(raw, known)
    assert table.column("Item").type.get_field_index("a\0") == 1


# -- the setting -------------------------------------------------------------------------------------


def test_an_unknown_reader_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown JSON reader 'simd'"):
        ConvertOptions(json_reader="simd")
    with pytest.raises(ValueError, match="unknown JSON reader"):
        parse_items(b"", output_format="DYNAMODB_JSON", obj="f", json_reader="fast")


# Values arrow-rs must read as pyarrow's reader does: exact numbers, every set, nested maps and
# lists, binary, text beyond ASCII and every JSON escape (none of them a colon or a comma).
SPECIAL = {
    "exact": {"N": "0.1000000000000000000000000000000000001"},
    "huge": {"N": "99999999999999999999999999999999999999"},
    "tiny": {"N": "-1E-130"},
    "words": {"SS": ["naïve, café", "日本語: テキスト", "🎉 party (x)"]},
    "sizes": {"NS": ["1.50", "-0", "1e+125"]},
    "blobs": {"BS": ["AAEC", "/w=="]},
    "blob": {"B": "3q2+7w=="},
    "deep": {"M": {"level 1": {"M": {"level, 2": {"L": [{"N": "7.000"}, {"S": "é"}, {"B": "AA=="},
                                                         {"M": {"k:v": {"BOOL": True}}}]}}}}},
}
# Written with \uXXXX escapes (json.dumps' ensure_ascii) where the others are raw UTF-8.
ESCAPED = 'quote " backslash \\ slash / tab \t newline \n ÿ \x01 😀 end'


def _special_export(tmp_path: Path, items: int = 3000, files: int = 3, special: bool = True) -> tuple[Path, int]:
    """A generated export, every fifth item of each file given the SPECIAL attributes and ESCAPED
    (unless not ``special``); and how many items have them."""
    folder = doctor.make_export(tmp_path / "export", items=items, files=files)
    extra = b"".join(b',"' + name.encode() + b'":' + orjson.dumps(value) for name, value in SPECIAL.items())
    extra += b',"escaped":' + json.dumps({"S": ESCAPED}, separators=(",", ":")).encode()
    assert b"\\u00ff" in extra and b"\\ud83d\\ude00" in extra and b"\\u0001" in extra

    def edit(lines: list[bytes]) -> None:
        for number, line in enumerate(lines):
            if line:
                # A map with open keys (day numbers) too rare to be seen as a dictionary map in
                # small pieces would bring new attributes to every piece: pyarrow's for all.
                doc = orjson.loads(line)
                doc["Item"].pop("votes_by_day", None)
                lines[number] = orjson.dumps(doc)
                if special and number % 5 == 0:
                    lines[number] = lines[number][:-2] + extra + b"}}"
                    edited[0] += 1

    edited = [0]
    for entry in doctor.manifest_lines(folder):
        doctor.edit_lines(folder, entry, edit)
    return folder, edited[0]


def test_a_conversion_gives_the_same_table_with_either_reader(tmp_path: Path) -> None:
    folder, edited = _special_export(tmp_path)
    results = {reader: convert_export(folder, tmp_path / reader, ConvertOptions(workers=1, piece_bytes=64 << 10,
                                                                                json_reader=reader))
               for reader in ("pyarrow", "arrow-rs")}
    pieces = results["pyarrow"].readers.pyarrow
    assert pieces > 10 and results["pyarrow"].readers.arrow_rs == 0
    assert results["pyarrow"].parse_path == f"pyarrow (setting): {pieces} pieces"
    fast = results["arrow-rs"].readers
    assert fast.arrow_rs + fast.pyarrow == pieces and fast.arrow_rs >= pieces - 3  # a few bring optional attributes
    assert results["arrow-rs"].parse_path == f"arrow-rs: {fast.arrow_rs} of {pieces} pieces, {fast.pyarrow} fell " \
                                             f"back to pyarrow's reader"
    (meta_slow, rows_slow), (meta_fast, rows_fast) = read_rows(str(tmp_path / "pyarrow")), read_rows(str(tmp_path / "arrow-rs"))
    assert meta_fast["columns"] == meta_slow["columns"]
    key = lambda row: row["review_id"]  # noqa: E731
    assert sorted(rows_fast, key=key) == sorted(rows_slow, key=key) and len(rows_fast) == 3000
    special = [item for item in rebuild_items(meta_fast, rows_fast) if "escaped" in item]
    assert len(special) == edited >= 600
    assert all(item["escaped"] == ESCAPED for item in special)
    first = special[0]
    assert first["exact"] == Decimal("0.1000000000000000000000000000000000001") and str(first["exact"]) == \
        "0.1000000000000000000000000000000000001"
    assert first["huge"] == Decimal("9" * 38) and first["tiny"] == Decimal("-1E-130")
    assert first["words"] == frozenset(["naïve, café", "日本語: テキスト", "🎉 party (x)"])
    assert first["sizes"] == frozenset([Decimal("1.50"), Decimal("-0"), Decimal("1e+125")])
    assert first["blob"] == bytes.fromhex("deadbeef") and first["blobs"] == frozenset([b"\x00\x01\x02", b"\xff"])
    deep = first["deep"]["level 1"]["level, 2"]
    assert deep == ("json", [Decimal("7.000"), "é", "AA==", {"k:v": True}])  # a list of mixed types: JSON text


def test_an_attribute_or_descriptor_a_later_piece_brings_is_kept_under_arrow_rs(tmp_path: Path) -> None:
    """Pieces after the first are parsed with the schema learned so far: what it lacks sends the
    piece to pyarrow's reader, and its values reach the table."""
    folder, _ = _special_export(tmp_path, items=2000, files=1, special=False)
    [entry] = doctor.manifest_lines(folder)

    def edit(lines: list[bytes]) -> None:
        late = orjson.loads(lines[900])
        late["Item"]["late_arrival"] = {"S": "found, at last"}
        changed = orjson.loads(lines[1500])
        assert changed["Item"]["star_rating"].keys() == {"N"}
        changed["Item"]["star_rating"] = {"S": "five"}  # N everywhere else: a new descriptor
        lines[900], lines[1500] = orjson.dumps(late), orjson.dumps(changed)

    doctor.edit_lines(folder, entry, edit)
    result = convert_export(folder, tmp_path / "lake", ConvertOptions(workers=1, piece_bytes=64 << 10))
    assert result.readers.pyarrow >= 2 and result.readers.arrow_rs >= 10, result.parse_path
    meta, rows = read_rows(str(tmp_path / "lake"))
    items = {item["review_id"]: item for item in rebuild_items(meta, rows)}
    lines = doctor.decompressed(folder, entry).split(b"\n")
    late, changed = (json.loads(lines[n])["Item"]["review_id"]["S"] for n in (900, 1500))
    assert items[late]["late_arrival"] == "found, at last"
    assert items[changed]["star_rating"] == "five", items[changed]
    assert sum("late_arrival" in item for item in items.values()) == 1
    assert result.plan.variants["star_rating"] == {"N": 1999, "S": 1}


def test_a_malformed_line_deep_in_a_file_is_reported_with_file_and_line_under_arrow_rs(tmp_path: Path) -> None:
    from ddb_assets_tests.cli_helpers import run_cli

    folder, _ = _special_export(tmp_path, items=2000, files=1, special=False)
    [entry] = doctor.manifest_lines(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(
        1200, lines[1200].replace(b"},", b"} ", 1)))  # a missing comma: arrow-rs would read it
    with pytest.raises(ExportFormatError) as raised:
        convert_export(folder, tmp_path / "lake", ConvertOptions(workers=1, piece_bytes=64 << 10,
                                                                 json_reader="arrow-rs"))
    assert raised.value.line == 1201 and f"{entry['dataFileS3Key']}:1201: malformed JSON" in str(raised.value)
    done = run_cli("convert", str(folder), str(tmp_path / "lake"), "--json-reader", "arrow-rs")
    assert done.returncode == 1
    assert f"{entry['dataFileS3Key']}:1201: malformed JSON" in done.stderr, done.stderr


def test_the_cli_summary_says_which_reader_parsed(tmp_path: Path) -> None:
    from ddb_assets_tests.cli_helpers import run_cli

    folder, _ = _special_export(tmp_path, items=1200, files=4)
    lines = {}
    for reader in ("pyarrow", "arrow-rs", None):
        done = run_cli("convert", str(folder), str(tmp_path / f"lake-{reader}"),
                       *(("--json-reader", reader) if reader else ()))
        assert done.returncode == 0, done.stderr[-2000:]
        [lines[reader]] = [line.split(None, 1)[1] for line in done.stdout.splitlines() if line.startswith("parse ")]
    assert lines["pyarrow"] == "pyarrow (setting): 4 pieces"
    assert re.fullmatch(r"arrow-rs: ([1-4]) of 4 pieces, ([0-3]) fell back to pyarrow's reader", lines["arrow-rs"])
    assert lines[None] == lines["arrow-rs"]  # the default
    inspected = run_cli("inspect", str(folder), "--json-reader", "pyarrow")
    assert inspected.returncode == 0, inspected.stderr[-2000:]
    assert "pyarrow (setting): 4 pieces" in inspected.stdout
    refused = run_cli("convert", str(folder), str(tmp_path / "lake-x"), "--json-reader", "simd")
    assert refused.returncode == 2 and "'simd' is not one of arrow-rs, pyarrow" in refused.stderr, refused.stderr


def test_pieces_that_keep_bringing_new_attributes_are_tried_less_and_less(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vain try costs arrow-rs's read on top of pyarrow's: after misses, pieces go straight to
    pyarrow's reader for a while (1, 3, 7, then 15 pieces); a success starts over. Same tables."""
    from ddb_assets.exports import decode

    tries: list[bool] = []

    def spy(text: Text, schema: pa.Schema) -> pa.Table | None:
        table = json_reader.read_items(text, schema)
        tries.append(table is not None)
        return table

    monkeypatch.setattr(decode, "read_items", spy)
    known = learned(lines_of(reviews(20)))
    for number in range(40):  # each piece brings a new attribute
        piece = lines_of(reviews(20, **{f"new{number}": {"S": "x"}}))
        reference, _ = parse_items(piece, output_format="DYNAMODB_JSON", obj="f", known=known, json_reader="pyarrow")
        table, known = parse_items(piece, output_format="DYNAMODB_JSON", obj="f", known=known)
        assert table.equals(reference)
    assert tries == [False] * 5  # pieces 0, 2, 6, 14 and 30
    covered = len(tries)
    for _ in range(16):  # then pieces the schema covers: tried once the skips run out, and every time after
        _, known = parse_items(lines_of(reviews(20)), output_format="DYNAMODB_JSON", obj="f", known=known)
    assert tries[covered:] == [True] * 10


def test_an_ion_exports_parse_line_says_how_ion_was_read(tmp_path: Path) -> None:
    """ION pieces are decoded into DynamoDB JSON lines first: the summary says so, and which
    reader parsed those lines, not an arrow-rs count as if the export were JSON."""
    from ddb_assets_tests.cli_helpers import run_cli

    folder = doctor.make_export(tmp_path / "ion", items=200, files=4, export_format="ION")
    done = run_cli("convert", str(folder), str(tmp_path / "lake" / "t"), "--json-reader", "pyarrow")
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [line.split(None, 1)[1] for line in done.stdout.splitlines() if line.startswith("parse ")]
    assert line == "ION: 4 pieces decoded by amazon-ion into DynamoDB JSON lines, parsed by pyarrow's reader"
    inspected = run_cli("inspect", str(folder))
    assert inspected.returncode == 0, inspected.stderr[-2000:]
    [line] = [line.split(None, 1)[1] for line in inspected.stdout.splitlines() if line.startswith("parse ")]
    assert re.fullmatch(r"ION: 4 pieces decoded by amazon-ion into DynamoDB JSON lines, parsed by "
                        r"(arrow-rs|pyarrow's reader|arrow-rs \([1-3]\) and pyarrow's reader \([1-3]\))", line), line


@pytest.mark.fast
def test_reader_counts_describe_an_ion_export() -> None:
    counts = json_reader.ReaderCounts(arrow_rs=1, pyarrow=3)
    assert counts.describe("arrow-rs", "ION") == ("ION: 4 pieces decoded by amazon-ion into DynamoDB JSON lines, "
                                                  "parsed by arrow-rs (1) and pyarrow's reader (3)")
    assert json_reader.ReaderCounts(pyarrow=1).describe("pyarrow", "ION") == (
        "ION: 1 piece decoded by amazon-ion into DynamoDB JSON lines, parsed by pyarrow's reader")
    assert counts.describe("arrow-rs") == "arrow-rs: 1 of 4 pieces, 3 fell back to pyarrow's reader"
