"""The decode hot path: gunzip into a reused arena, dictionary maps lifted out in place."""

from __future__ import annotations

import gzip
import json

import orjson
import pyarrow as pa
import pytest

from ddb_assets.exports.buffers import ByteArena, Text, gunzip_into, gunzip_pieces
from ddb_assets.exports.decode import RAW_MAP, detect_dictionary_maps, parse_items
from ddb_assets.exports.errors import ExportFormatError

# Pure: in-memory Arrow and local files, no local world or subprocess (make test-fast).
pytestmark = pytest.mark.fast


def lines_of(items: list[dict]) -> bytes:
    return b"".join(orjson.dumps({"Item": item}) + b"\n" for item in items)


def test_gunzip_into_reuses_the_arena_without_leaking_the_previous_file() -> None:
    arena = ByteArena()
    big = b"x" * 100_000 + b"\n"
    small = b'{"Item":{}}\n'
    assert bytes(gunzip_into(gzip.compress(big), arena, obj="big.json.gz")) == big
    text = gunzip_into(gzip.compress(small), arena, obj="small.json.gz")
    assert bytes(text) == small and len(text) == len(small)


def test_gunzip_into_reads_every_member_and_accepts_zero_padding() -> None:
    arena = ByteArena()
    data = gzip.compress(b"one\n") + gzip.compress(b"") + gzip.compress(b"two\n") + b"\x00" * 8
    assert bytes(gunzip_into(data, arena, obj="m.json.gz")) == b"one\ntwo\n"


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-9], "truncated gzip"),
    (lambda data: data[:10] + b"\xff" * 20 + data[30:], "not a valid gzip file"),
    (lambda data: data + b"garbage", "data after the last gzip member"),
])
def test_gunzip_into_names_the_file_when_the_gzip_is_bad(damage, message: str) -> None:
    data = gzip.compress(lines_of([{"pk": {"S": str(i)}} for i in range(200)]))
    with pytest.raises(ExportFormatError, match=message) as caught:
        gunzip_into(damage(data), ByteArena(), obj="s3://b/AWSDynamoDB/x/data/f.json.gz")
    assert "f.json.gz" in str(caught.value)


def test_parsed_tables_do_not_point_into_the_arena() -> None:
    arena = ByteArena()
    first = lines_of([{"pk": {"S": f"first-{i}"}} for i in range(1000)])
    second = lines_of([{"pk": {"S": f"SECOND{i:04d}"}} for i in range(1000)])
    table, _ = parse_items(gunzip_into(gzip.compress(first), arena, obj="a"), output_format="DYNAMODB_JSON", obj="a")
    gunzip_into(gzip.compress(second), arena, obj="b")  # writes over the bytes the first table came from
    assert table.column("Item").combine_chunks().field("pk").field("S").to_pylist()[:2] == ["first-0", "first-1"]


def _carried(table: pa.Table, name: str) -> list[dict | None]:
    wrapper = table.column("Item").combine_chunks().field(name)
    texts = wrapper.field(RAW_MAP).to_pylist()
    return [json.loads(t) if t is not None else None for t in texts]


def test_dictionary_maps_come_back_as_text_at_their_rows_even_after_blank_lines() -> None:
    items = [{"pk": {"S": f"k{i}"}, **({"votes": {"M": {f"d{i}": {"N": str(i)}}}} if i % 3 == 0 else {})}
             for i in range(10)]
    raw = lines_of(items[:4]) + b"\n  \n" + lines_of(items[4:])  # blank lines: the parser skips them
    table, _ = parse_items(raw, output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))
    item = table.column("Item").combine_chunks()
    assert item.field("pk").field("S").to_pylist() == [f"k{i}" for i in range(10)]
    # carried as the plain JSON it will be written as
    assert _carried(table, "votes") == [{f"d{i}": i} if i % 3 == 0 else None for i in range(10)]


def test_a_dictionary_map_written_with_other_spacing_still_reads_back() -> None:
    compact = orjson.dumps({"Item": {"pk": {"S": "a"}, "votes": {"M": {"d1": {"N": "1"}}}}})
    spaced = json.dumps({"Item": {"pk": {"S": "b"}, "votes": {"M": {"d2": {"N": "2"}}}}}).encode()  # ": " spacing
    table, _ = parse_items(compact + b"\n" + spaced + b"\n", output_format="DYNAMODB_JSON", obj="f",
                           dictionary_maps=frozenset({("votes",)}))
    wrapper = table.column("Item").combine_chunks().field("votes")
    assert wrapper.field(RAW_MAP).to_pylist() == ['{"d1":1}', None]
    assert wrapper.field("M").to_pylist() == [None, {"d2": {"N": "2"}}]


def test_lifting_a_map_leaves_the_rest_of_the_line_and_the_callers_bytes_intact() -> None:
    raw = lines_of([{"pk": {"S": "é\u2028"}, "votes": {"M": {"d1": {"N": "1"}}}, "z": {"BOOL": True}}])
    before = bytes(raw)
    table, _ = parse_items(raw, output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))
    assert raw == before  # bytes input is copied before the in-place rewrite
    row = table.column("Item").to_pylist()[0]
    assert row["pk"] == {"S": "é\u2028"} and row["z"] == {"BOOL": True}


def test_a_malformed_line_holding_a_dictionary_map_is_reported_with_its_line_number() -> None:
    good = lines_of([{"pk": {"S": "a"}}])
    bad = b'{"Item":{"pk":{"S":"b"},"votes":{"M":{"d1":{"N":"1"}}}\n'  # one closing brace short
    with pytest.raises(ExportFormatError, match=r"^data/f\.json\.gz:2: malformed JSON"):
        parse_items(good + bad, output_format="DYNAMODB_JSON", obj="data/f.json.gz",
                    dictionary_maps=frozenset({("votes",)}))


def test_text_scans_only_its_own_bytes() -> None:
    text = Text(bytearray(b"a\nb\nSTALE\n"), 4)
    assert text.find(b"STALE") == -1 and text.rfind(b"\n") == 3 and bytes(text) == b"a\nb\n"
    assert text[2:] == b"b\n" and bytes(text.view()) == b"a\nb\n"


def test_a_bad_line_after_a_lifted_map_is_reported_at_its_own_line() -> None:
    lifted = lines_of([{"pk": {"S": "a"}, "votes": {"M": {f"d{i}": {"N": "1"} for i in range(5)}}}])
    bad = lines_of([{"pk": {"S": "b"}, "rating": {"X": "5"}}])
    with pytest.raises(ExportFormatError, match=r"^f:2: attribute 'rating' has unknown type descriptor 'X'"):
        parse_items(lifted + bad, output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))


@pytest.mark.parametrize("marker", ["0", "oops"])
def test_the_internal_descriptor_is_refused_when_the_input_uses_it(marker: str) -> None:
    lifted = lines_of([{"pk": {"S": "a"}, "votes": {"M": {f"d{i}": {"N": "1"} for i in range(5)}}}])
    forged = lines_of([{"pk": {"S": "b"}, "votes": {RAW_MAP: marker}}])
    with pytest.raises(ExportFormatError, match=r"^f:2: .*unknown type descriptor '_Mjson'"):
        parse_items(lifted + forged, output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))
    with pytest.raises(ExportFormatError, match=r"^f:1: .*unknown type descriptor '_Mjson'"):
        parse_items(forged, output_format="DYNAMODB_JSON", obj="f")


def _in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 3, 1000, 1 << 20])
def test_gunzip_pieces_reads_a_stream_of_chunks_across_members_into_line_pieces(chunk: int) -> None:
    lines = [orjson.dumps({"Item": {"pk": {"S": f"k{i}" * (i % 7)}}}) + b"\n" for i in range(3000)]
    text = b"".join(lines)
    data = gzip.compress(text[:40_000]) + gzip.compress(text[40_000:]) + b"\x00" * 5  # two members, padding
    pieces = [(bytes(piece), offset) for piece, offset in
              gunzip_pieces(_in_chunks(data, chunk), ByteArena(), obj="f", piece_bytes=8 << 10)]
    assert b"".join(p for p, _ in pieces) == text
    assert all(p.endswith(b"\n") and len(p) <= 8 << 10 for p, _ in pieces) and len(pieces) > 5
    assert [o for _, o in pieces] == [sum(len(p) for p, _ in pieces[:i]) for i in range(len(pieces))]


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_a_stream_of_chunks_with_damage_is_refused(chunk: int) -> None:
    data = gzip.compress(lines_of([{"pk": {"S": str(i)}} for i in range(500)]))
    for damaged, message in ((data[:-9], "truncated gzip"), (data + b"xy", "data after the last gzip member")):
        with pytest.raises(ExportFormatError, match=message):
            list(gunzip_pieces(_in_chunks(damaged, chunk), ByteArena(), obj="f", piece_bytes=1 << 10))


def test_nested_dictionary_maps_are_detected_and_lifted_beside_their_sibling_attributes() -> None:
    """A map of maps keyed by dates (say) used to slip past the lifting, and pyarrow's reader then
    built a struct field per key under it: 15x slower on 20,000 items, worse with more keys."""
    items = [{"pk": {"S": f"k{i}"},
              **({"stats": {"M": {"daily": {"M": {f"2024-01-{i:02d}": {"N": str(i)}, "x": {"S": "y"}}},
                                  "total": {"N": str(i)}}}} if i % 2 else {}),
              **({"stats": {"S": "not a map this time"}} if i == 4 else {})}
             for i in range(12)]
    raw = lines_of(items)
    assert detect_dictionary_maps(raw, 4) == frozenset({("stats", "daily")})  # 7 dates, 2 keys in "stats"
    table, _ = parse_items(raw, output_format="DYNAMODB_JSON", obj="f",
                           dictionary_maps=frozenset({("stats", "daily")}))
    stats = table.column("Item").combine_chunks().field("stats")
    mapped = stats.field("M")
    texts = mapped.field("daily").field(RAW_MAP).to_pylist()
    assert [json.loads(t) if t else None for t in texts] == [
        {f"2024-01-{i:02d}": i, "x": "y"} if i % 2 else None for i in range(12)]
    assert mapped.field("total").field("N").to_pylist() == [str(i) if i % 2 else None for i in range(12)]
    assert stats.field("S").to_pylist() == ["not a map this time" if i == 4 else None for i in range(12)]
    assert "2024-01-01" not in str(table.schema)  # no struct field per key


def test_a_dictionary_map_is_not_looked_into_and_deeper_ones_are_found() -> None:
    many = {f"k{i}": {"M": {f"sub{j}": {"N": "1"} for j in range(i)}} for i in range(8)}
    items = [{"pk": {"S": "a"}, "a": {"M": {"b": {"M": {"c": {"M": many}}}}}}]
    assert detect_dictionary_maps(lines_of(items), 4) == frozenset({("a", "b", "c")})


def test_the_internal_descriptor_is_refused_inside_maps_too() -> None:
    lifted = lines_of([{"pk": {"S": "a"}, "s": {"M": {"d": {"M": {f"d{i}": {"N": "1"} for i in range(5)}}}}}])
    forged = lines_of([{"pk": {"S": "b"}, "s": {"M": {"d": {RAW_MAP: "0"}}}}])
    with pytest.raises(ExportFormatError, match=r"unknown type descriptor '_Mjson'"):
        parse_items(lifted + forged, output_format="DYNAMODB_JSON", obj="f",
                    dictionary_maps=frozenset({("s", "d")}))
    with pytest.raises(ExportFormatError, match=r"^f:1: .*unknown type descriptor '_Mjson'"):
        parse_items(forged, output_format="DYNAMODB_JSON", obj="f")


def test_a_bad_value_in_a_lifted_map_is_reported_after_any_earlier_bad_line() -> None:
    votes = {f"d{i}": {"N": "1"} for i in range(5)}
    lines = lines_of([{"pk": {"S": "a"}, "votes": {"M": votes}},
                      {"pk": {"S": "b"}, "rating": {"X": "5"}},  # the first bad line
                      {"pk": {"S": "c"}, "votes": {"M": votes}},
                      {"pk": {"S": "d"}, "votes": {"M": {**votes, "d9": {"N": "abc"}}}}])
    with pytest.raises(ExportFormatError, match=r"^f:2: attribute 'rating' has unknown type descriptor 'X'"):
        parse_items(lines, output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))
    with pytest.raises(ExportFormatError, match=r"^f:3: attribute 'votes.d9': N must hold a number"):
        parse_items(lines_of([{"pk": {"S": "a"}, "votes": {"M": votes}}, {"pk": {"S": "c"}, "votes": {"M": votes}},
                              {"pk": {"S": "d"}, "votes": {"M": {**votes, "d9": {"N": "abc"}}}}]),
                    output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))


@pytest.mark.parametrize("bad", [{"NULL": False}, {"SS": []}, {"BS": ["AAE"]}, {"NS": ["1", "x"]},
                                 {"L": [{"N": "1"}, {"Q": "2"}]}, {"M": {"deep": {"N": "0x10"}}}, {"S": "a", "N": "1"},
                                 "text", {"B": "not base64!"}, {"BOOL": "yes"}])
def test_every_kind_of_bad_value_in_a_lifted_map_fails_at_its_line(bad: object) -> None:
    votes = {f"d{i}": {"N": "1"} for i in range(5)}
    raw = lines_of([{"pk": {"S": "a"}, "votes": {"M": votes}}, {"pk": {"S": "b"}, "votes": {"M": {**votes, "d9": bad}}}])
    with pytest.raises(ExportFormatError, match=r"^f:2: attribute 'votes"):
        parse_items(raw, output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))


def test_numbers_in_a_lifted_map_are_carried_exactly_as_json() -> None:
    votes = {"a": {"N": "1.50"}, "b": {"N": "+5"}, "c": {"NS": ["10", "9", "1E+125"]}, "d": {"L": [{"NULL": True}]},
             "e": {"BS": ["AAE=", "AAA="]}, "f": {"M": {"g": {"BOOL": False}}}}
    table, _ = parse_items(lines_of([{"pk": {"S": "a"}, "votes": {"M": votes}}]), output_format="DYNAMODB_JSON",
                           obj="f", dictionary_maps=frozenset({("votes",)}))
    assert table.column("Item").combine_chunks().field("votes").field(RAW_MAP).to_pylist() == [
        '{"a":1.50,"b":5,"c":[9,10,1E+125],"d":[null],"e":["AAA=","AAE="],"f":{"g":false}}']


def test_the_bad_line_search_reads_past_null_and_bool_attributes() -> None:
    raw = lines_of([{"pk": {"S": "a"}, "gone": {"NULL": True}, "ok": {"BOOL": False}, "n": {"NS": ["1"]}},
                    {"pk": {"S": "b"}, "price": {"N": "abc"}}])
    with pytest.raises(ExportFormatError, match=r"^f:2: attribute 'price': N must hold a number, found 'abc'"):
        parse_items(raw, output_format="DYNAMODB_JSON", obj="f")


def test_a_malformed_line_after_a_lifted_one_is_reported_at_its_own_line() -> None:
    """The line before it was already rewritten with a marker when the malformed one was met."""
    votes = {f"d{i}": {"N": "1"} for i in range(5)}
    raw = lines_of([{"pk": {"S": "a"}, "votes": {"M": votes}}]) + b'{"Item":{"pk":{"S":"b"},"votes":{"M":{"d1":{"N":"1"}}}\n'
    with pytest.raises(ExportFormatError, match=r"^f:2: malformed JSON"):
        parse_items(raw, output_format="DYNAMODB_JSON", obj="f", dictionary_maps=frozenset({("votes",)}))
