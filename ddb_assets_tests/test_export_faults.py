"""Hostile and damaged input at the export format layer (issue 14): each kind of fault is refused
with one ExportFormatError naming the object (and line), whatever input of that kind it meets."""

from __future__ import annotations

import gzip
import posixpath
import re
import shutil
import tracemalloc
import zlib
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ddb_assets.exports.buffers import MAX_LINE_BYTES, ByteArena, Text, gunzip_into, gunzip_pieces
from ddb_assets.exports.decode import check_utf8, ion_to_json_lines, parse_items
from ddb_assets.exports.errors import ExportFormatError, OversizedLine, UnreadableObject
from ddb_assets.exports.ion_codec import item_to_ion_line
from ddb_assets.exports.reader import KeyPlace, open_export, place_of_key
from ddb_assets.exports.storage import S3_MAX_ATTEMPTS, Location, S3Options, s3_client, s3_filesystem
from ddb_assets_tests import doctor
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.faulty_proxy import FaultyProxy
from ddb_assets_tests.strategies import items

CASES = Path(__file__).parent / "cases"
EXPORT_ID = "01715674542517-a4c123b1"
OWN = f"ddb/reviews/AWSDynamoDB/{EXPORT_ID}"


# -- 1. data keys stay inside the export ---------------------------------------------------------


@pytest.mark.parametrize("key, shared_data, place", [
    (f"{OWN}/data/3dhodzdocis2jhtlgmxgedn73u.json.gz", False, KeyPlace(False, "data/3dhodzdocis2jhtlgmxgedn73u.json.gz")),
    (f"{OWN}/manifest-files.json", False, KeyPlace(False, "manifest-files.json")),
    (f"AWSDynamoDB/{EXPORT_ID}/data/x.json.gz", False, KeyPlace(False, "data/x.json.gz")),  # no prefix
    (f"exports/reviews.v2/AWSDynamoDB/{EXPORT_ID}/data/x.ion.gz", False, KeyPlace(False, "data/x.ion.gz")),
    (f"a/b/c/AWSDynamoDB/{EXPORT_ID}/data/x.json.gz", False, KeyPlace(False, "data/x.json.gz")),
    (f"exports//AWSDynamoDB/{EXPORT_ID}/data/x.json.gz", False, KeyPlace(False, "data/x.json.gz")),  # prefix "exports/"
    (f"..data/AWSDynamoDB/{EXPORT_ID}/data/x..json.gz", False, KeyPlace(False, "data/x..json.gz")),  # dots, not segments
    # incremental exports: the prefix's shared data folder, or the export's own folder
    ("ddb/reviews-incr/AWSDynamoDB/data/x.json.gz", True, KeyPlace(True, "x.json.gz")),
    ("AWSDynamoDB/data/x.json.gz", True, KeyPlace(True, "x.json.gz")),
    (f"{OWN}/data/x.json.gz", True, KeyPlace(False, "data/x.json.gz")),
    (f"AWSDynamoDB/data/AWSDynamoDB/{EXPORT_ID}/x.json.gz", True, KeyPlace(False, "x.json.gz")),
])
def test_keys_inside_the_export_resolve_below_it(key: str, shared_data: bool, place: KeyPlace) -> None:
    assert place_of_key(key, EXPORT_ID, shared_data=shared_data) == place


@pytest.mark.parametrize("key, shared_data, problem", [
    (f"{OWN}/../../outside/x.json.gz", False, "it has a '..' segment"),  # the shared case's kind
    ("../../../../outside/x.json.gz", False, "it has a '..' segment"),
    (f"../{OWN}/data/x.json.gz", False, "it has a '..' segment"),  # even in the prefix
    (f"{OWN}/data/../../../other/x.json.gz", False, "it has a '..' segment"),
    (f"{OWN}/..", False, "it has a '..' segment"),
    ("ddb/AWSDynamoDB/data/../../outside/x.json.gz", True, "it has a '..' segment"),
    (f"{OWN}/./data/x.json.gz", False, "it has a '.' segment"),
    (f"/{OWN}/data/x.json.gz", False, "it is an absolute path"),
    ("/etc/passwd", False, "it is an absolute path"),
    (f"{OWN}/data\\..\\..\\x.json.gz", False, "it holds a backslash"),
    (f"ddb\\AWSDynamoDB\\{EXPORT_ID}\\data\\x.json.gz", False, "it holds a backslash"),
    (f"{OWN}/data/x\x00.json.gz", False, "it holds a control character"),
    (f"{OWN}/data/x\n.json.gz", False, "it holds a control character"),
    ("outside/x.json.gz", False, "it names another folder"),
    ("ddb/reviews/AWSDynamoDB/01715674542517-ffffffff/data/x.json.gz", False, "it names another folder"),
    ("ddb/reviews/AWSDynamoDB/data/x.json.gz", False, "it names another folder"),  # shared: incremental only
    (f"ddb/XAWSDynamoDB/{EXPORT_ID}/data/x.json.gz", False, "it names another folder"),
    (f"ddb/AWSDynamoDB/{EXPORT_ID}x/data/x.json.gz", False, "it names another folder"),
    (f"ddb/awsdynamodb/{EXPORT_ID}/data/x.json.gz", False, "it names another folder"),
    (f"{OWN}/", False, "it names no file"),
    (OWN, False, "it names no file"),
    ("ddb/AWSDynamoDB/data/", True, "it names no file"),
    (f"{OWN}/data//x.json.gz", False, "it has an empty segment"),
])
def test_keys_that_leave_the_export_are_refused_saying_why(key: str, shared_data: bool, problem: str) -> None:
    inside = f"the export folder AWSDynamoDB/{EXPORT_ID}/" + (
        " or the shared folder AWSDynamoDB/data/" if shared_data else "")
    with pytest.raises(ValueError) as raised:
        place_of_key(key, EXPORT_ID, shared_data=shared_data)
    assert str(raised.value) == f"is not inside {inside} ({problem})"


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="^is empty; keys must lie inside the export folder"):
        place_of_key("", EXPORT_ID)


_SEGMENTS = st.sampled_from(["", ".", "..", "...", "AWSDynamoDB", EXPORT_ID, "data", "x.json.gz", "a\\b", "ddb",
                             "\x00", " ", "%2e%2e"])


@given(segments=st.lists(st.one_of(_SEGMENTS, st.text(max_size=4)), max_size=8), shared_data=st.booleans())
def test_any_key_either_is_refused_or_resolves_below_its_folder(segments: list[str], shared_data: bool) -> None:
    key = "/".join(segments)
    try:
        place = place_of_key(key, EXPORT_ID, shared_data=shared_data)
    except ValueError:
        return
    assert place.shared <= shared_data
    root = "/bucket/AWSDynamoDB/data" if place.shared else f"/bucket/AWSDynamoDB/{EXPORT_ID}"
    # As a local path (where '..' would climb) and as an S3 key (where nothing is resolved) alike:
    assert posixpath.normpath(f"{root}/{place.path}") == f"{root}/{place.path}"
    assert key.endswith("/" + place.path)  # what is read is the key's own tail, never something made up


def _copy_case(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(CASES / name, target)
    return next((target / "AWSDynamoDB").iterdir())


def test_the_shared_case_of_a_key_climbing_out_of_the_export_is_refused(tmp_path: Path) -> None:
    folder = _copy_case("manifest-key-escapes", tmp_path)
    with pytest.raises(ExportFormatError) as raised:
        open_export(folder)
    assert str(raised.value) == (
        f"{folder}/manifest-files.json:2: dataFileS3Key 'bughunt/manifest-key-escapes/AWSDynamoDB/"
        "01764463260000-f0961a5a/../../outside/secret.json.gz' is not inside the export folder "
        "AWSDynamoDB/01764463260000-f0961a5a/ (it has a '..' segment)")
    assert raised.value.line == 2


@pytest.mark.parametrize("make_key, problem", [
    (lambda key: key.replace("/data/", "/data/../../../outside/"), "it has a '..' segment"),
    (lambda key: "/" + key, "it is an absolute path"),
    (lambda key: key.replace("/data/", "/data\\..\\"), "it holds a backslash"),
    (lambda key: "elsewhere/" + key.rsplit("/", 1)[1], "it names another folder"),
    (lambda key: key.replace(key.split("/")[-3] + "/data/", "data/"),  # .../AWSDynamoDB/data/<name>
     "it names another folder"),  # the shared data folder, in a full export
])
def test_a_bad_data_key_is_named_with_its_manifest_line(tmp_path: Path, make_key, problem: str) -> None:  # type: ignore[no-untyped-def]
    folder = doctor.make_export(tmp_path, items=40, files=4)
    lines = doctor.manifest_lines(folder)
    bad = make_key(lines[2]["dataFileS3Key"])
    lines[2]["dataFileS3Key"] = bad
    doctor.write_manifest_lines(folder, lines)
    with pytest.raises(ExportFormatError) as raised:
        open_export(folder)
    export_id = folder.name
    assert str(raised.value) == (f"{folder}/manifest-files.json:3: dataFileS3Key {bad!r} is not inside the export "
                                 f"folder AWSDynamoDB/{export_id}/ ({problem})")


def test_a_manifest_files_key_outside_the_export_is_refused(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path, items=20, files=2)
    summary = doctor.summary(folder)
    bad = summary["manifestFilesS3Key"].replace("/manifest-files.json", "/../../../manifest-files.json")
    summary["manifestFilesS3Key"] = bad
    doctor.write_summary(folder, summary)
    with pytest.raises(ExportFormatError) as raised:
        open_export(folder)
    assert str(raised.value) == (f"{folder}/manifest-summary.json: manifestFilesS3Key {bad!r} is not inside the "
                                 f"export folder AWSDynamoDB/{folder.name}/ (it has a '..' segment)")


# -- 2. invalid UTF-8 inside strings ---------------------------------------------------------------

# Every way a byte sequence fails to be UTF-8 (RFC 3629), each standing in for the one character
# PLACEHOLDER in an otherwise valid item.
INVALID_UTF8 = {
    "invalid start byte": b"\xff\xfe",
    "lone continuation byte": b"\x80",
    "overlong encoding of '/'": b"\xc0\xaf",
    "encoded surrogate (CESU-8)": b"\xed\xa0\x80",
    "beyond U+10FFFF": b"\xf4\x90\x80\x80",
    "truncated sequence": b"\xe2\x82",
    "Latin-1 text": b"caf\xe9",
}
PLACEHOLDER = "\ue000"
# Where in an item the bad bytes sit, and the attribute the error names (a name is shown with
# U+FFFD for each run of bad bytes).
PLACES: dict[str, tuple[dict[str, Any], str]] = {
    "S value": ({"note": {"S": f"a{PLACEHOLDER}b"}}, "attribute 'note'"),
    "N value": ({"note": {"N": PLACEHOLDER}}, "attribute 'note'"),
    "SS element": ({"tags": {"SS": ["ok", PLACEHOLDER]}}, "attribute 'tags'"),
    "value in a map": ({"author": {"M": {"name": {"S": PLACEHOLDER}}}}, "attribute 'author.name'"),
    "value in a list": ({"edits": {"L": [{"N": "1"}, {"S": PLACEHOLDER}]}}, "attribute 'edits[]'"),
    "deep": ({"m": {"M": {"l": {"L": [{"M": {"x": {"SS": [PLACEHOLDER]}}}]}}}}, "attribute 'm.l[].x'"),
    "attribute name": ({f"n{PLACEHOLDER}": {"S": "x"}}, "the name of attribute 'n{shown}'"),
    "name in a map": ({"m": {"M": {PLACEHOLDER: {"S": "x"}}}}, "the name of attribute 'm.{shown}'"),
}
GOOD = {"pk": {"S": "p-1"}, "note": {"S": "fine"}}


def _json_lines(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps({"Item": doc}) + b"\n" for doc in docs)


def _ion_lines(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(item_to_ion_line(doc) for doc in docs)


def _named(place: str, bad: bytes) -> str:
    shown = re.sub("[\udc80-\udcff]+", "\ufffd", bad.decode("utf-8", "surrogateescape"))
    return PLACES[place][1].replace("{shown}", shown)


def _spoil(text: bytes, bad: bytes, ion: bool) -> tuple[bytes, int]:
    """The text with the placeholder's bytes replaced by ``bad``; and the bad byte's 1-based column."""
    placeholder = PLACEHOLDER.encode("unicode_escape") if ion else PLACEHOLDER.encode()  # Ion escapes it
    line = text[text.rfind(b"\n", 0, text.index(placeholder)) + 1:]
    return text.replace(placeholder, bad, 1), line.index(placeholder) + 1


@pytest.mark.parametrize("ion", [False, True], ids=["DYNAMODB_JSON", "ION"])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("sequence", INVALID_UTF8)
def test_invalid_utf8_is_refused_naming_line_attribute_and_byte(sequence: str, place: str, ion: bool) -> None:
    if ion and place == "N value":
        pytest.skip("an Ion number is a decimal, not text")
    attributes, bad = PLACES[place][0], INVALID_UTF8[sequence]
    named = _named(place, bad)
    render = _ion_lines if ion else _json_lines
    text, column = _spoil(render([GOOD, GOOD, {"pk": {"S": "p-3"}, **attributes}, GOOD]), bad, ion)
    first_bad = next(b for b in bad if b >= 0x80)
    column += bad.index(first_bad)
    with pytest.raises(ExportFormatError) as raised:
        parse_items(text, output_format="ION" if ion else "DYNAMODB_JSON", obj="data/f.json.gz")
    assert str(raised.value) == f"data/f.json.gz:3: invalid UTF-8 in {named} (byte 0x{first_bad:02x} at column {column})"
    assert raised.value.line == 3


@given(docs=st.lists(items(), min_size=1, max_size=6), where=st.integers(0, 5), place=st.sampled_from(sorted(PLACES)),
       bad=st.sampled_from(sorted(INVALID_UTF8.values())), ion=st.booleans())
def test_bad_bytes_anywhere_in_any_items_are_found_on_their_line(docs: list[dict[str, Any]], where: int, place: str,
                                                                 bad: bytes, ion: bool) -> None:
    """Valid UTF-8 (any text hypothesis makes, in every type) always passes; one bad sequence, put
    in any item at any place, is reported at that item's line and attribute, in both formats."""
    render = _ion_lines if ion else _json_lines
    valid = render(docs)
    assume(PLACEHOLDER.encode("unicode_escape") not in valid and PLACEHOLDER.encode() not in valid)
    check_utf8(valid, obj="f", ion=ion)  # however much non-ASCII the items hold
    assume(not (ion and place == "N value"))
    where %= len(docs) + 1
    attributes, named = PLACES[place][0], _named(place, bad)
    spoilt, _ = _spoil(render(docs[:where] + [{"pk": {"S": "bad"}, **attributes}] + docs[where:]), bad, ion)
    with pytest.raises(ExportFormatError) as raised:
        (ion_to_json_lines if ion else check_utf8)(spoilt, obj="f")
    assert raised.value.line == where + 1
    assert raised.value.problem.startswith(f"invalid UTF-8 in {named} (byte 0x"), raised.value.problem


def test_invalid_utf8_that_breaks_the_line_is_still_named_with_its_byte() -> None:
    with pytest.raises(ExportFormatError) as raised:
        check_utf8(b'{"Item":{"pk":{"S":"a"}}}\n{"Item":{"pk":{"S":"\xff\n', obj="f")
    assert str(raised.value) == "f:2: invalid UTF-8 (byte 0xff at column 21)"


def test_the_check_reads_the_text_in_place() -> None:
    arena = bytearray(_json_lines([GOOD]) + b"\xff" * 10)  # bad bytes past the end of the text
    check_utf8(Text(arena, len(_json_lines([GOOD]))), obj="f")


def test_the_shared_case_of_invalid_utf8_is_refused(tmp_path: Path) -> None:
    folder = _copy_case("invalid-utf8", tmp_path)
    [data_file] = open_export(folder).files
    text = gunzip_into(data_file.read_verified(), ByteArena(), obj=data_file.name)
    with pytest.raises(ExportFormatError) as raised:
        parse_items(text, output_format="DYNAMODB_JSON", obj=data_file.name)
    # Named where it is (the manifest's key names the bucket the export was first written to).
    assert str(raised.value) == (f"{folder}/data/siirt7ipyksftj6kjkjivz2uze.json.gz:2: invalid UTF-8 in attribute "
                                 f"'note' (byte 0xff at column 38)")


# -- 3. oversized lines --------------------------------------------------------------------------


class Chunks:
    """A gzip file as a stream of compressed chunks that can be opened again (as a data file's
    VerifiedStream can), made on demand: ``pulled`` counts the chunks read so far."""

    def __init__(self, make: "Any") -> None:
        self.make, self.pulled, self.reopened = make, 0, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.make():
            self.pulled += 1
            yield chunk

    def reopen(self) -> "Chunks":
        self.reopened += 1
        return Chunks(self.make)


def _in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _too_long(limit: int) -> str:
    return (f"line longer than {limit:,} bytes, which no DynamoDB item (400 KB at most) needs: a damaged file or a "
            "decompression bomb; not read further")


@given(lengths=st.lists(st.integers(0, 120), min_size=1, max_size=40), limit=st.integers(1, 100),
       last_newline=st.booleans(), chunk=st.sampled_from([1, 5, 64, 1 << 20]), piece_bytes=st.integers(1, 400),
       members=st.integers(1, 3))
def test_a_line_is_refused_exactly_when_it_is_longer_than_the_bound(
        lengths: list[int], limit: int, last_newline: bool, chunk: int, piece_bytes: int, members: int) -> None:
    """However the compressed bytes arrive and the text is cut (chunks, gzip members, pieces), the
    first line past the bound is refused with its number, and a file without one reads whole."""
    text = b"\n".join(b"x" * n for n in lengths) + (b"\n" if last_newline else b"")
    cuts = [len(text) * k // members for k in range(members + 1)]
    data = b"".join(gzip.compress(text[a:b]) for a, b in zip(cuts, cuts[1:]))
    too_long = next((number for number, n in enumerate(lengths, start=1) if n > limit), None)
    for read in (lambda: bytes(gunzip_into(data, ByteArena(), obj="f", max_line_bytes=limit)),
                 lambda: b"".join(bytes(piece) for piece, _ in gunzip_pieces(
                     Chunks(lambda: _in_chunks(data, chunk)), ByteArena(), obj="f", piece_bytes=piece_bytes,
                     max_line_bytes=limit))):
        if too_long is None:
            assert read() == text
        else:
            with pytest.raises(OversizedLine) as raised:
                read()
            assert str(raised.value) == f"f:{too_long}: {_too_long(limit)}"


def _bomb(good_lines: int, line_bytes: int, block: int = 1 << 20) -> Iterator[bytes]:
    """A gzip file of ``good_lines`` items then one line of ``line_bytes``, compressed as it is read:
    never held in memory, and only as much of it made as the reader asks for."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    yield compressor.compress(_json_lines([GOOD] * good_lines) + b'{"Item":{"pk":{"S":"')
    ones = b"x" * block
    for _ in range(line_bytes // block):
        yield compressor.compress(ones)
    yield compressor.compress(b'"}}}\n') + compressor.flush()


def test_a_64_mb_line_is_refused_early_with_bounded_memory() -> None:
    stream = Chunks(lambda: _bomb(good_lines=2, line_bytes=64 << 20))
    arena = ByteArena()
    tracemalloc.start()
    try:
        with pytest.raises(OversizedLine) as raised:
            for _ in gunzip_pieces(stream, arena, obj="data/f.json.gz", piece_bytes=256 << 10, max_line_bytes=1 << 20):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value) == f"data/f.json.gz:3: {_too_long(1 << 20)}"
    # A few MiB of the 64 read (the compressor holds back its output), then read again to number it
    assert stream.pulled <= 8 and stream.reopened == 1
    assert peak < 16 << 20, peak  # the arena, a few 4 MiB chunks; never the line


def test_a_2_gib_line_is_refused_at_the_default_bound_after_reading_a_few_mb() -> None:
    """The issue's gzip bomb: one item line of 2 GiB took 6.7 GB of memory and ended in OverflowError."""
    assert 3 << 20 < MAX_LINE_BYTES <= 16 << 20  # above any real item's line (see buffers.py), far below a bomb
    stream = Chunks(lambda: _bomb(good_lines=1, line_bytes=2 << 30))
    with pytest.raises(OversizedLine) as raised:
        for _ in gunzip_pieces(stream, ByteArena(), obj="data/f.json.gz", piece_bytes=32 << 20):
            pass
    assert str(raised.value) == f"data/f.json.gz:2: {_too_long(MAX_LINE_BYTES)}"
    assert stream.pulled <= 16  # MiB, of the 2,048 in the line


def test_a_line_of_the_largest_item_reads() -> None:
    """A 400 KB item of NULLs in a list, about the worst blow-up DynamoDB JSON has, is far inside."""
    line = _json_lines([{"pk": {"S": "p"}, "l": {"L": [{"NULL": True}] * (400 * 1024 // 2)}}])
    assert 2 << 20 < len(line) < MAX_LINE_BYTES
    assert bytes(gunzip_into(gzip.compress(line), ByteArena(), obj="f")) == line


def test_a_stream_that_cannot_be_read_again_is_refused_without_a_line_number() -> None:
    data = gzip.compress(b"ok\n" + b"x" * 100)
    with pytest.raises(OversizedLine) as raised:
        list(gunzip_pieces(iter(_in_chunks(data, 7)), ByteArena(), obj="f", piece_bytes=10, max_line_bytes=50))
    assert raised.value.line is None and str(raised.value) == f"f: {_too_long(50)}"


# -- 4. transient storage errors -------------------------------------------------------------------


@pytest.fixture
def s3_export(tmp_path: Path, world: Any, s3: Any, bucket: str) -> tuple[str, Path]:
    """A small valid export uploaded to the local world: (its s3:// folder, the local copy)."""
    folder = doctor.make_export(tmp_path, items=3000, files=3)
    prefix = f"exports/AWSDynamoDB/{folder.name}"
    for path in folder.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder)}", Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}", folder


@pytest.fixture
def proxy(world: Any) -> Any:
    host, port = world.endpoint.removeprefix("http://").split(":")
    with FaultyProxy((host, int(port))) as started:
        yield started


def _read_all(source: str, options: S3Options) -> int:
    """Open the export and stream every data file through its md5 check; the bytes read."""
    export = open_export(source, options)
    total = 0
    for data_file in export.files:
        stream = data_file.stream_verified(chunk_bytes=64 << 10)
        total += sum(len(chunk) for chunk in stream)
    return total


def test_reads_ride_out_a_brief_s3_outage(s3_export: tuple[str, Path], proxy: FaultyProxy) -> None:
    source, folder = s3_export
    proxy.outage(0.4)  # from the first request on: every connection is reset
    total = _read_all(source, S3Options(endpoint_url=proxy.endpoint, max_attempts=S3_MAX_ATTEMPTS))
    assert proxy.refused >= 1
    assert total == sum(path.stat().st_size for path in (folder / "data").iterdir())


def test_a_read_broken_midway_is_retried_and_resumes(s3_export: tuple[str, Path], proxy: FaultyProxy) -> None:
    source, folder = s3_export
    options = S3Options(endpoint_url=proxy.endpoint, max_attempts=S3_MAX_ATTEMPTS)
    export = open_export(source, options)
    biggest = max(export.files, key=lambda f: f.manifest.item_count)
    proxy.cut_after(100_000)  # into the body of the next GET, then a 0.5 s outage
    stream = biggest.stream_verified(chunk_bytes=1 << 20)
    data = b"".join(bytes(chunk) for chunk in stream)  # md5 checked at the end
    assert proxy.cuts == 1
    assert data == (folder / "data" / biggest.location.name).read_bytes()


def test_a_conversion_rides_out_a_brief_s3_outage(s3_export: tuple[str, Path], proxy: FaultyProxy,
                                                   tmp_path: Path) -> None:
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets_tests.lake_reader import read_rows

    source, _ = s3_export
    proxy.outage(0.4)
    convert_export(source, tmp_path / "lake", ConvertOptions(workers=1, s3=S3Options(endpoint_url=proxy.endpoint)))
    assert proxy.refused >= 1 and len(read_rows(str(tmp_path / "lake"))[1]) == 3000


RETRIES_SPENT = "(still failing after retries with backoff; AWS_MAX_ATTEMPTS sets how many)"


def _assert_one_line_about(error: BaseException, uri: str) -> None:
    message = str(error)
    assert isinstance(error, UnreadableObject) and isinstance(error, OSError) and error.transient
    assert message.startswith(f"{uri}: cannot read it: AWS Error NETWORK_CONNECTION during "), message
    assert message.endswith(RETRIES_SPENT) and "\n" not in message and "When reading" not in message, message


def test_a_lasting_outage_is_one_error_naming_the_manifest(s3_export: tuple[str, Path], proxy: FaultyProxy) -> None:
    source, _ = s3_export
    proxy.outage(float("inf"))
    with pytest.raises(UnreadableObject) as raised:
        open_export(source, S3Options(endpoint_url=proxy.endpoint, max_attempts=2))
    _assert_one_line_about(raised.value, f"{source}/manifest-summary.json")
    assert proxy.refused == 2  # one request, tried twice


def test_a_lasting_outage_while_reading_a_data_file_names_it_and_is_not_retried_again(
        s3_export: tuple[str, Path], proxy: FaultyProxy) -> None:
    source, _ = s3_export
    export = open_export(source, S3Options(endpoint_url=proxy.endpoint, max_attempts=2))
    data_file = export.files[0]
    stream = data_file.stream_verified(chunk_bytes=64 << 10)
    chunks = iter(stream)
    next(chunks)
    proxy.outage(float("inf"))
    with pytest.raises(UnreadableObject) as raised:
        for _ in chunks:
            pass
    _assert_one_line_about(raised.value, data_file.location.uri)
    assert data_file.location.uri.startswith("s3://")
    refused = proxy.refused
    with pytest.raises(UnreadableObject) as again:  # what a conversion does on an error: verify the md5
        stream.verify()
    assert again.value is raised.value and proxy.refused == refused


def test_the_cli_reports_a_lasting_outage_in_one_line(s3_export: tuple[str, Path], proxy: FaultyProxy,
                                                      tmp_path: Path) -> None:
    source, _ = s3_export
    proxy.outage(float("inf"))
    result = run_cli("convert", source, str(tmp_path / "lake"), "--workers", "1",
                     env={"AWS_ENDPOINT_URL": proxy.endpoint, "AWS_MAX_ATTEMPTS": "2"})
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].startswith(f"error: {source}/manifest-summary.json: cannot read it: AWS Error NETWORK_CONNECTION")
    assert errors[0].endswith(RETRIES_SPENT)


def test_an_error_retries_cannot_help_is_reported_as_it_is(tmp_path: Path) -> None:
    """Access denied (or a local disk error) is not retried: no claim that retries ran out."""
    location = Location(s3_filesystem(), "bucket/key", "s3")
    error = location.unreadable(OSError("When reading information for key 'key' in bucket 'bucket': AWS Error "
                                        "ACCESS_DENIED during HeadObject operation: No response body."))
    assert str(error) == "s3://bucket/key: cannot read it: AWS Error ACCESS_DENIED during HeadObject operation: " \
                         "No response body."
    assert not error.transient
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "manifest-summary.json").mkdir()  # a folder where the file should be
    with pytest.raises(UnreadableObject, match=r"manifest-summary.json: cannot read it: "):
        open_export(folder)


@pytest.mark.parametrize("setting, environment, expected", [
    (None, None, S3_MAX_ATTEMPTS),
    (None, "9", 9),
    (3, "9", 3),  # explicit settings win, as for the endpoint and region
    (None, "zero", S3_MAX_ATTEMPTS),  # not a number: the default, as the SDKs would not use it either
    (None, "0", S3_MAX_ATTEMPTS),
])
def test_attempts_come_from_the_settings_then_aws_max_attempts(monkeypatch: pytest.MonkeyPatch, setting: Any,
                                                              environment: Any, expected: int) -> None:
    if environment is None:
        monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    else:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", environment)
    options = S3Options(max_attempts=setting)
    assert options.attempts() == expected
    assert options.with_environment().max_attempts == expected  # carried to worker processes
    assert s3_client(options).meta.config.retries == {"mode": "standard", "total_max_attempts": expected}
