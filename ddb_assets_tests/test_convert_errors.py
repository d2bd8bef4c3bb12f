"""Every kind of bad input fails with an error naming the object (and line), and commits nothing:
the table's current snapshot stays what it was, every file it references stays readable, and the
failed run leaves no data file behind (a killed one leaves orphans that maintenance removes)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ddb_assets.exports.errors import ChecksumMismatch, ExportFormatError, ItemCountMismatch, MissingObject, OversizedLine
from ddb_assets.lake.convert import ConvertOptions, convert_export, profile_export
from ddb_assets.lake.plan_checks import ProfileMismatch
from ddb_assets.lake.unique_keys import DuplicateKey, MixedKeyTypes
from ddb_assets.lake.profile import Profile, profile_from_json, profile_to_json
from ddb_assets_tests import doctor
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.cli_helpers import ddb_assets_command, run_cli
from ddb_assets_tests.lake_reader import read_rows, read_table_metadata

CASES = Path(__file__).parent / "cases"


OPTIONS = dict(partition_by="year")


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, dict]:
    """A table already committed from a good export: what every failure must leave untouched."""
    good = doctor.make_export(tmp_path / "good", items=200, seed=1)
    root = tmp_path / "lake" / "reviews"
    convert_export(good, root, ConvertOptions(workers=1, **OPTIONS))
    return root, _state(root)


def _state(root: Path) -> dict:
    meta = read_table_metadata(str(root))
    return {"metadata_location": meta["metadata_location"], "columns": meta["columns"]}


def _data_files(root: Path) -> set[str]:
    return {str(p) for p in (root / "data").rglob("*.parquet")}


def _referenced(root: Path) -> set[str]:
    meta = read_table_metadata(str(root))
    return {task.file.file_path for task in meta["table"].scan().plan_files()}


def _assert_untouched(root: Path, before: dict, *, orphans: bool = False) -> None:
    assert _state(root) == before  # no new snapshot, no new schema
    meta, rows = read_rows(str(root))  # every referenced file is still there and readable
    assert len(rows) == 200
    if not orphans:  # the failed run took its files with it
        assert _data_files(root) == _referenced(root)


def _fails(folder: Path, root: Path, error: type[ExportFormatError], *fragments: str) -> ExportFormatError:
    with pytest.raises(error) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, **OPTIONS))
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, message
    return raised.value


def test_md5_mismatch(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    data = bytearray(doctor.data_path(folder, entry).read_bytes())
    data[-9] ^= 0xFF
    doctor.replace_data(folder, entry, bytes(data), fix_checksum=False)
    _fails(folder, root, ChecksumMismatch, entry["dataFileS3Key"], "md5", entry["md5Checksum"])
    _assert_untouched(root, before)


def test_truncated_gzip(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    doctor.replace_data(folder, entry, doctor.data_path(folder, entry).read_bytes()[:-40])
    _fails(folder, root, ExportFormatError, entry["dataFileS3Key"], "truncated gzip")
    _assert_untouched(root, before)


def test_malformed_json_line(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(2, lines[2][:-7]))  # cut off line 3's end
    error = _fails(folder, root, ExportFormatError, f"{entry['dataFileS3Key']}:3:", "malformed JSON")
    assert error.line == 3
    _assert_untouched(root, before)


def test_unknown_type_descriptor(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(
        4, lines[4].replace(b'"star_rating":{"N":', b'"star_rating":{"Q":')))
    _fails(folder, root, ExportFormatError, f"{entry['dataFileS3Key']}:5:", "'star_rating'", "unknown type descriptor 'Q'")
    _assert_untouched(root, before)


def test_missing_data_file(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    doctor.data_path(folder, entry).unlink()
    _fails(folder, root, MissingObject, entry["dataFileS3Key"], "missing")
    _assert_untouched(root, before)


def test_item_count_mismatch_in_a_file(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.pop(0))  # one item fewer than the manifest says
    _fails(folder, root, ItemCountMismatch, entry["dataFileS3Key"], f"holds {entry['itemCount'] - 1} items",
           f"says {entry['itemCount']}")
    _assert_untouched(root, before)


def test_item_count_mismatch_between_manifests(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    lines = doctor.manifest_lines(folder)
    lines[0]["itemCount"] += 1
    doctor.write_manifest_lines(folder, lines)
    _fails(folder, root, ItemCountMismatch, "manifest-summary.json", "itemCount is 300", "hold 301")
    _assert_untouched(root, before)


@pytest.mark.parametrize("name", ["manifest-summary.json", "manifest-files.json"])
def test_missing_manifest(tmp_path: Path, published: tuple[Path, dict], name: str) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    (folder / name).unlink()
    _fails(folder, root, MissingObject, name, "missing")
    _assert_untouched(root, before)


def test_manifest_checksum_file_mismatch(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    (folder / "manifest-summary.md5").write_text("AAAAAAAAAAAAAAAAAAAAAA==")
    _fails(folder, root, ChecksumMismatch, "manifest-summary.md5")
    _assert_untouched(root, before)


def test_cli_reports_bad_input_in_one_line_and_exits_non_zero(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    doctor.data_path(folder, entry).unlink()
    result = run_cli("convert", str(folder), str(root))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and entry["dataFileS3Key"] in errors[0]
    _assert_untouched(root, before)


@pytest.mark.parametrize("one_pass", [False, True], ids=["two stages", "one pass"])
def test_killing_a_conversion_midway_leaves_the_table_whole(tmp_path: Path, published: tuple[Path, dict],
                                                             one_pass: bool) -> None:
    from datetime import timedelta

    from ddb_assets.lake.maintenance import remove_orphan_files

    root, before = published
    big = doctor.make_export(tmp_path / "big", items=60_000, files=6, seed=2)
    command = [*ddb_assets_command(), "convert", str(big), str(root), "--workers", "2"]
    if one_pass:  # its Parquet files are written while the export is still being read
        export, profile = profile_export(big, ConvertOptions(workers=2, **OPTIONS))
        (tmp_path / "profile.json").write_bytes(profile_to_json(profile, export.export_id))
        command += ["--profile", str(tmp_path / "profile.json")]
    old_files = _data_files(root)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if _data_files(root) - old_files:  # the new files are being written: kill everything now
                break
            time.sleep(0.01)
        assert process.poll() is None, "the conversion finished before it could be killed; use a bigger export"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    orphans = _data_files(root) - old_files
    assert orphans, "nothing new was written"
    _assert_untouched(root, before, orphans=True)

    # Files written since the table's last commit may be a run's about to commit: maintenance
    # keeps them, even with no grace ...
    table = read_table_metadata(str(root))["table"]
    removed, _ = remove_orphan_files(table, timedelta(0))
    assert not set(removed) & orphans and _data_files(root) >= orphans
    # ... a rerun commits the new export ...
    time.sleep(0.01)
    result = convert_export(big, root, ConvertOptions(workers=2, **OPTIONS))
    meta, rows = read_rows(str(root))
    assert len(rows) == 60_000 and result.commit.rows == 60_000
    # ... and then maintenance removes what the killed run left (older than that commit, no
    # snapshot references it).
    removed, _ = remove_orphan_files(read_table_metadata(str(root))["table"], timedelta(0))
    assert set(removed) >= orphans and not (_data_files(root) & orphans)


def test_a_bad_line_deep_in_a_file_read_in_pieces_is_numbered_from_the_file_start(
        tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad", items=2000, files=2)
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(700, lines[700][:-7]))  # line 701
    with pytest.raises(ExportFormatError) as raised:
        # 16 KiB pieces: line 701 is many pieces into the file
        convert_export(folder, root, ConvertOptions(workers=2, piece_bytes=16 << 10, **OPTIONS))
    assert raised.value.line == 701 and f"{entry['dataFileS3Key']}:701: malformed JSON" in str(raised.value)
    _assert_untouched(root, before)


def _with_changed_schema(tmp_path: Path) -> Path:
    """The published export again, but one item has a decimal star rating and a new attribute."""
    folder = doctor.make_export(tmp_path / "changed", items=200, seed=1)
    entry = doctor.biggest_entry(folder)

    def edit(lines: list[bytes]) -> None:
        item = json.loads(lines[0])
        item["Item"]["star_rating"] = {"N": "4.5"}
        item["Item"]["gift_wrap"] = {"BOOL": True}
        lines[0] = json.dumps(item).encode()

    doctor.edit_lines(folder, entry, edit)
    return folder


def test_a_partial_rewrite_that_brings_new_columns_evolves_the_schema(tmp_path: Path,
                                                                      published: tuple[Path, dict]) -> None:
    """Iceberg reads files by field id: the other partitions read the new columns as null, and a
    value the column cannot hold goes to a variant column (never cast, never refused)."""
    root, before = published
    changed = _with_changed_schema(tmp_path)
    first = json.loads(doctor.decompressed(changed, doctor.biggest_entry(changed)).splitlines()[0])["Item"]
    year = first["year"]["N"]
    result = convert_export(changed, root, ConvertOptions(workers=2, only_partitions=frozenset({year}), **OPTIONS))
    assert {c.name for c in result.plan.added} == {"gift_wrap", "star_rating__n_d1"}
    meta, rows = read_rows(str(root))
    assert len(rows) == 200
    by_id = {row["review_id"]: row for row in rows}
    row = by_id[first["review_id"]["S"]]
    assert row["gift_wrap"] is True and str(row["star_rating__n_d1"]) == "4.5" and row["star_rating"] is None
    others = [r for r in rows if str(r["year"]) != year]
    assert others and all(r["gift_wrap"] is None and r["star_rating"] is not None for r in others)


def test_a_partial_rewrite_keeps_the_other_partitions(tmp_path: Path, published: tuple[Path, dict]) -> None:
    from ddb_assets.lake.tables import partition_rows

    root, before = published
    table = read_table_metadata(str(root))["table"]
    files_before = {t.file.file_path: t.file for t in table.scan().plan_files()}
    some = frozenset(sorted(partition_rows(table))[:2])
    same = doctor.make_export(tmp_path / "again", items=200, seed=1)
    result = convert_export(same, root, ConvertOptions(workers=2, only_partitions=some, **OPTIONS))
    assert set(result.partitions) == some
    after = {t.file.file_path for t in read_table_metadata(str(root))["table"].scan().plan_files()}
    replaced = set(files_before) - after
    assert replaced and all(f"year={sorted(some)[0]}/" in path or f"year={sorted(some)[1]}/" in path for path in replaced)
    assert len(read_rows(str(root))[1]) == 200


def _saved_profile(folder: Path) -> Profile:
    export, profile = profile_export(folder, ConvertOptions(workers=1, **OPTIONS))
    return profile_from_json(profile_to_json(profile, export.export_id), obj="saved")[1]


def test_one_pass_reports_bad_input_as_two_stages_do(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    known = _saved_profile(folder)  # profiled while it was good
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(2, lines[2][:-7]))  # cut off line 3's end
    with pytest.raises(ExportFormatError) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, **OPTIONS), known=known)
    assert f"{entry['dataFileS3Key']}:3:" in str(raised.value) and "malformed JSON" in str(raised.value)
    _assert_untouched(root, before)


@pytest.mark.parametrize("case", ["item count", "items that do not fit", "items the plan has no column for"])
def test_a_profile_that_is_not_the_exports_fails_and_publishes_nothing(
        tmp_path: Path, published: tuple[Path, dict], case: str) -> None:
    root, before = published
    original = doctor.make_export(tmp_path / "original", items=200, seed=1)
    changed = _with_changed_schema(tmp_path)  # star_rating 4.5 once, and a gift_wrap attribute
    folder, known, expected = {
        "item count": (original, _saved_profile(doctor.make_export(tmp_path / "other", items=150, seed=2)), "150"),
        "items that do not fit": (changed, _saved_profile(original), "do not fit"),  # 4.5 in an int64 column
        "items the plan has no column for": (original, _saved_profile(changed), "star_rating"),  # found at the end
    }[case]
    with pytest.raises(ProfileMismatch) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, **OPTIONS), known=known)
    assert expected in str(raised.value) and "profile" in str(raised.value), str(raised.value)
    _assert_untouched(root, before)


@pytest.mark.parametrize("value, expected", [
    ({"N": "abc"}, "N must hold a number, found 'abc'"),
    ({"N": "NaN"}, "N must hold a number, found 'NaN'"),
    ({"N": "0x10"}, "found '0x10'"),  # Arrow's integer cast would have read 16
    ({"N": "1_000"}, "found '1_000'"),  # Python's Decimal would have read 1000
    ({"N": " 5"}, "found ' 5'"),
    ({"NS": ["1", "x"]}, "NS must hold a number, found 'x'"),
    ({"B": "not base64!"}, "B must hold base64"),
    ({"BS": ["AAEC", "AAE"]}, "BS must hold base64, found 'AAE'"),
    ({"NULL": False}, "attribute 'odd': NULL must be true"),  # was read as a null, silently
    ({"NULL": "true"}, "attribute 'odd': NULL must be a JSON boolean"),
    # Outside DynamoDB's own range: no DynamoDB table holds these, so the export is damaged.
    ({"N": "1" * 39}, "N '" + "1" * 39 + "' has 39 significant digits; DynamoDB's numbers have at most 38"),
    ({"N": "-0.1234567890123456789012345678901234567891"}, "has 40 significant digits"),
    ({"N": "1E+126"}, "N '1E+126' is outside DynamoDB's range (magnitude 1E-130 to 9.99...E+125)"),
    ({"N": "0.1e-130"}, "N '0.1e-130' is outside DynamoDB's range"),
    ({"NS": ["1", "1E-131"]}, "NS '1E-131' is outside DynamoDB's range"),
])
def test_a_malformed_number_or_binary_is_named_with_its_line(tmp_path: Path, published: tuple[Path, dict],
                                                             value: dict, expected: str) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)

    def edit(lines: list[bytes]) -> None:
        item = json.loads(lines[4])
        item["Item"]["odd"] = value
        lines[4] = json.dumps(item).encode()

    doctor.edit_lines(folder, entry, edit)
    _fails(folder, root, ExportFormatError, f"{entry['dataFileS3Key']}:5:", "'odd'", expected)
    _assert_untouched(root, before)


@pytest.mark.parametrize("value, expected", [
    ({"X": "5"}, "unknown type descriptor 'X'"),  # was carried as null
    ({"N": "abc"}, "N must hold a number, found 'abc'"),  # was written as invalid JSON text
    ({"S": 5}, "S must be a JSON string"),  # was written as a number
    ({"N": "1E+126"}, "N '1E+126' is outside DynamoDB's range"),
    ({"NS": ["1", "2" * 39]}, "has 39 significant digits"),
])
def test_a_bad_value_inside_a_dictionary_map_is_named_with_its_line(tmp_path: Path, published: tuple[Path, dict],
                                                                    value: dict, expected: str) -> None:
    """Dictionary maps are lifted out of the text before the parse, so the parse never checks them:
    the lifting does (docs/architecture.md)."""
    root, before = published
    folder = doctor.make_export(tmp_path / "bad", files=1)
    entry = doctor.biggest_entry(folder)

    def edit(lines: list[bytes]) -> None:
        for number in (1, 6):  # 80 keys on line 2: a dictionary map from the first piece on
            item = json.loads(lines[number])
            item["Item"]["by_day"] = {"M": {f"2024-{day:03d}": {"N": "1"} for day in range(80)}}
            if number == 6:
                item["Item"]["by_day"]["M"]["2024-003"] = value
            lines[number] = json.dumps(item, separators=(",", ":")).encode()  # compact, as AWS writes

    doctor.edit_lines(folder, entry, edit)
    _fails(folder, root, ExportFormatError, f"{entry['dataFileS3Key']}:7:", "'by_day.2024-003'", expected)
    _assert_untouched(root, before)


def test_a_data_key_outside_the_export_is_refused_and_nothing_is_read(tmp_path: Path,
                                                                      published: tuple[Path, dict]) -> None:
    root, before = published
    folder = next((CASES / "manifest-key-escapes" / "AWSDynamoDB").iterdir())
    error = _fails(folder, root, ExportFormatError, "manifest-files.json:2: dataFileS3Key",
                   "/../../outside/secret.json.gz' is not inside the export folder", "(it has a '..' segment)")
    assert error.line == 2
    _assert_untouched(root, before)


def test_invalid_utf8_is_refused_naming_file_line_and_attribute(tmp_path: Path, published: tuple[Path, dict]) -> None:
    """pyarrow's JSON reader copies bytes that are not UTF-8 into string columns: the table used to
    be published, and every later read of it failed."""
    root, before = published
    folder = next((CASES / "invalid-utf8" / "AWSDynamoDB").iterdir())
    # The case is an export of another DynamoDB table (Notes): a table of its own, beside the lake's.
    notes = root.parent / "notes"
    _fails(folder, notes, ExportFormatError, "/data/siirt7ipyksftj6kjkjivz2uze.json.gz:2: invalid UTF-8 in "
                                             "attribute 'note' (byte 0xff at column 38)")
    assert not list(notes.rglob("*.parquet")) and not list(notes.rglob("*.metadata.json"))
    _assert_untouched(root, before)


@pytest.mark.parametrize("export_format", ["DYNAMODB_JSON", "ION"])
def test_invalid_utf8_deep_in_a_file_read_in_pieces_is_numbered_from_the_file_start(
        tmp_path: Path, published: tuple[Path, dict], export_format: str) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad", items=2000, files=2, export_format=export_format)
    entry = doctor.biggest_entry(folder)
    title = b'product_title":{"S":"' if export_format == "DYNAMODB_JSON" else b'product_title:"'
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(700, lines[700].replace(title, title + b"\xc3(")))
    with pytest.raises(ExportFormatError) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, piece_bytes=16 << 10, **OPTIONS))
    assert raised.value.line == 701, str(raised.value)
    assert f"{entry['dataFileS3Key']}:701: invalid UTF-8 in attribute 'product_title' (byte 0xc3 at column" \
        in str(raised.value)
    _assert_untouched(root, before)


def test_a_line_longer_than_any_item_is_refused_with_its_number(tmp_path: Path, published: tuple[Path, dict]) -> None:
    """A gzip bomb's one huge line used to be buffered whole (6.7 GB for 2 GiB) and end in OverflowError."""
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(2, b'{"Item":{"pk":{"S":"' + b"x" * (20 << 20)))
    _fails(folder, root, OversizedLine, f"{entry['dataFileS3Key']}:3: line longer than 8,388,608 bytes")
    _assert_untouched(root, before)


@pytest.mark.parametrize("case, message", [
    ("manifest-key-escapes", "manifest-files.json:2: dataFileS3Key 'bughunt/manifest-key-escapes/AWSDynamoDB/"
                             "01764463260000-f0961a5a/../../outside/secret.json.gz' is not inside the export folder "
                             "AWSDynamoDB/01764463260000-f0961a5a/ (it has a '..' segment)"),
    # A data file is named where the user finds it, not by the manifest's key (bughunt/...: the
    # bucket the export was first written to).
    ("invalid-utf8", "{folder}/data/siirt7ipyksftj6kjkjivz2uze.json.gz:2: invalid UTF-8 in attribute 'note' "
                     "(byte 0xff at column 38)"),
])
def test_the_cli_refuses_the_shared_cases_in_one_line(tmp_path: Path, case: str, message: str) -> None:
    folder = next((CASES / case / "AWSDynamoDB").iterdir())
    result = run_cli("convert", str(folder), str(tmp_path / "lake"), "--workers", "1")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith(message.format(folder=folder)), result.stderr
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))


@pytest.mark.parametrize("text", [b"null\n", b'null\n{"Item":{}}\n', b'\n  null \n', b'{"Item":{"pk":{"S":"a"}}}\nnull\n'])
def test_a_line_of_null_is_reported_where_pyarrows_reader_would_crash(text: bytes) -> None:
    """pyarrow 26's JSON reader segfaults when its input's first row is null (a piece can start
    anywhere in a file): the line is reported instead, in a process that lives on."""
    script = ("import sys\n"
              "from ddb_assets.exports.decode import parse_items\n"
              "from ddb_assets.exports.errors import ExportFormatError\n"
              "try:\n"
              "    parse_items(sys.stdin.buffer.read(), output_format='DYNAMODB_JSON', obj='data/f.json.gz')\n"
              "except ExportFormatError as exc:\n"
              "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script], input=text, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    line = [row.strip() for row in text.split(b"\n")].index(b"null") + 1
    assert done.stdout.decode().startswith(f"data/f.json.gz:{line}: "), done.stdout


@pytest.mark.parametrize("value, problem", [
    ('{"L":[{"S":"x"},null]}', "attribute 'a[]' must be an object with exactly one type descriptor"),
    ('{"L":[null]}', "attribute 'a[]' must be an object with exactly one type descriptor"),
    ('{"SS":["x",null]}', "attribute 'a': SS must be a non-empty list of strings"),
    ('{"NS":["1",null]}', "attribute 'a': NS must be a non-empty list of strings"),
    ('{"M":{"b":{"L":[null]}}}', "attribute 'a.b[]' must be an object with exactly one type descriptor"),
])
def test_a_null_element_of_a_list_or_set_is_refused_with_its_line(value: str, problem: str) -> None:
    from ddb_assets.exports.decode import parse_items

    text = b'{"Item":{"pk":{"S":"ok"},"a":{"L":[]}}}\n' + b'{"Item":{"pk":{"S":"x"},"a":' + value.encode() + b"}}\n"
    for reader in ("pyarrow", "arrow-rs"):
        with pytest.raises(ExportFormatError) as raised:
            parse_items(text, output_format="DYNAMODB_JSON", obj="data/f.json.gz", json_reader=reader)
        assert str(raised.value) == f"data/f.json.gz:2: {problem}"


KEYS = ("product_id", "review_id")  # the sample table's partition key and sort key


def _edit_item(folder: Path, line: int, edit) -> dict:  # type: ignore[no-untyped-def]
    """Rewrite the item on (0-based) ``line`` of the biggest data file with ``edit(item, lines)``."""
    entry = doctor.biggest_entry(folder)

    def rewrite(lines: list[bytes]) -> None:
        item = json.loads(lines[line])["Item"]
        edit(item, lines)
        lines[line] = json.dumps({"Item": item}).encode()

    doctor.edit_lines(folder, entry, rewrite)
    return entry


@pytest.mark.parametrize("edit, expected", [
    (lambda item, lines: item.pop("review_id"), "the item lacks the key attribute 'review_id' (the table's key: "
                                                "product_id, review_id)"),
    (lambda item, lines: item.update(product_id={"BOOL": True}), "key attribute 'product_id' is BOOL; a key "
                                                                 "attribute is S, N or B"),
], ids=["missing", "not S, N or B"])
def test_an_item_without_a_proper_key_is_refused_when_the_key_is_known(tmp_path: Path, published: tuple[Path, dict],
                                                                       edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    entry = _edit_item(folder, 4, edit)
    with pytest.raises(ExportFormatError) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, key_attributes=KEYS, **OPTIONS))
    assert str(raised.value) == f"{doctor.data_path(folder, entry)}:5: {expected}"
    _assert_untouched(root, before)


def test_a_full_export_holding_a_key_twice_is_refused_naming_the_key(tmp_path: Path,
                                                                      published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    keys: dict = {}

    def twice(item: dict, lines: list[bytes]) -> None:
        keys.update({name: json.loads(lines[2])["Item"][name] for name in KEYS})
        item.update(keys)

    entry = _edit_item(folder, 4, twice)
    with pytest.raises(DuplicateKey) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, key_attributes=KEYS, **OPTIONS))
    # the item on line 5 took the key of the one on line 3, in the same data file
    data = doctor.data_path(folder, entry)
    assert str(raised.value) == (
        f"{folder}: 2 items have the primary key product_id={keys['product_id']['S']!r}, "
        f"review_id={keys['review_id']['S']!r}: {data} line 3 and {data} line 5; a DynamoDB table holds one item "
        f"per key (a damaged or assembled export?)")
    _assert_untouched(root, before)
    # Without the key attributes nothing can tell: the export converts (documented, schema_rules.md).
    result = convert_export(folder, root, ConvertOptions(workers=2, **OPTIONS))
    assert result.commit.rows == 300


def test_an_ion_export_holding_a_key_three_times_names_the_first_two_lines_whatever_the_numbers_notation(
        tmp_path: Path, published: tuple[Path, dict]) -> None:
    """The key (review_id, year) of the first file's line 2 is also on the second file's lines 1
    and 4 (after a blank line), its year written 20.14d2 and 2014.0: the same number."""
    root, before = published
    folder = doctor.make_export(tmp_path / "bad", export_format="ION")
    first, second = doctor.manifest_lines(folder)[:2]
    line = doctor.decompressed(folder, first).split(b"\n")[1]
    review, year = re.search(rb'review_id:"([^"]+)"', line)[1], re.search(rb"year:(\d+)\.", line)[1]

    def take(lines: list[bytes]) -> None:
        for number, notation in ((0, year[:2] + b"." + year[2:] + b"d2"), (2, year + b".0")):
            lines[number] = re.sub(rb'review_id:"[^"]+"', b'review_id:"' + review + b'"', lines[number])
            lines[number] = re.sub(rb"year:\d+\.", b"year:" + notation, lines[number])
        lines.insert(2, b"")

    doctor.edit_lines(folder, second, take)
    with pytest.raises(DuplicateKey) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, key_attributes=("review_id", "year"), **OPTIONS))
    assert str(raised.value) == (
        f"{folder}: 3 items have the primary key review_id={review.decode()!r}, year={year.decode()}: "
        f"{doctor.data_path(folder, first)} line 2, {doctor.data_path(folder, second)} line 1 and 1 more; "
        f"a DynamoDB table holds one item per key (a damaged or assembled export?)")
    _assert_untouched(root, before)


@pytest.mark.fast
def test_the_lines_of_a_key_are_found_whatever_notation_its_number_and_binary_have(tmp_path: Path) -> None:
    from decimal import Decimal

    from ddb_assets.exports.key_lines import KeyValue, lines_holding_key
    from ddb_assets.exports.reader import open_export

    folder = doctor.make_export(tmp_path / "e", items=40, files=2)
    first, second = doctor.manifest_lines(folder)[:2]
    blob = bytes([0, 1, 2, 3])  # base64 AAECAw==: the last group may be written otherwise (AAECAx==)

    def holding(*notations: tuple[int, str, str]):  # type: ignore[no-untyped-def]
        def edit(lines: list[bytes]) -> None:
            for number, year, written in notations:
                item = json.loads(lines[number])
                item["Item"].update(blob={"B": written}, year={"N": year})
                lines[number] = json.dumps(item).encode()
        return edit

    doctor.edit_lines(folder, first, holding((1, "2014", "AAECAw=="), (3, "2015", "AAECAw==")))  # 3: another year
    doctor.edit_lines(folder, second, holding((0, "2.014E3", "AAECAx=="), (5, "20140e-1", "AAECAw==")))
    export = open_export(folder)
    key = [KeyValue("blob", "B", blob), KeyValue("year", "N", 2014)]
    names = [doctor.data_path(folder, entry).as_posix() for entry in (first, second)]
    assert lines_holding_key(export.files, key, wanted=5) == [(names[0], 2), (names[1], 1), (names[1], 6)]
    assert lines_holding_key(export.files, key) == [(names[0], 2), (names[1], 1)]  # two by default: it stops
    assert lines_holding_key(export.files, [KeyValue("year", "N", Decimal("2015.00")), key[0]]) == [(names[0], 4)]


def test_a_duplicate_whose_lines_cannot_be_found_is_refused_as_before(tmp_path: Path,
                                                                       published: tuple[Path, dict]) -> None:
    """One of the two items writes its key with JSON escapes (valid, but not the literal text the
    search looks for): the error names the key without lines rather than one line or a wrong one."""
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    keys: dict = {}

    def twice(lines: list[bytes]) -> None:
        keys.update({name: json.loads(lines[2])["Item"][name] for name in KEYS})
        item = json.loads(lines[4])["Item"]
        item.update(keys)
        escaped = "".join(f"\\u{ord(c):04x}" for c in keys["review_id"]["S"])
        lines[4] = json.dumps({"Item": item}).replace(json.dumps(keys["review_id"]["S"]), f'"{escaped}"').encode()

    doctor.edit_lines(folder, doctor.biggest_entry(folder), twice)
    with pytest.raises(DuplicateKey) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, key_attributes=KEYS, **OPTIONS))
    assert str(raised.value) == (
        f"{folder}: 2 items have the primary key product_id={keys['product_id']['S']!r}, "
        f"review_id={keys['review_id']['S']!r}; a DynamoDB table holds one item per key (a damaged or assembled "
        f"export?)")
    _assert_untouched(root, before)


def test_a_key_attribute_of_two_types_is_refused_naming_it_not_as_a_duplicate(tmp_path: Path,
                                                                                published: tuple[Path, dict]) -> None:
    # review_id is S in every item but one, which holds it as N: distinct keys, but no DynamoDB
    # table has a key attribute of two types.
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    _edit_item(folder, 4, lambda item, lines: item.update({"review_id": {"N": "5"}}))
    with pytest.raises(MixedKeyTypes) as raised:
        convert_export(folder, root, ConvertOptions(workers=2, key_attributes=KEYS, **OPTIONS))
    assert "the key attribute 'review_id' holds values of types N, S; a DynamoDB table declares one type" in \
        str(raised.value)
    _assert_untouched(root, before)


def test_the_cli_refuses_a_duplicate_key_in_one_line_and_the_run_can_be_retried(tmp_path: Path,
                                                                                  published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    _edit_item(folder, 4, lambda item, lines: item.update(
        {name: json.loads(lines[2])["Item"][name] for name in KEYS}))
    keys = ["--key", "product_id", "--key", "review_id"]
    result = run_cli("convert", str(folder), str(root), *keys)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder}: 2 items have the primary key "), errors
    _assert_untouched(root, before)
    good = doctor.make_export(tmp_path / "good2", items=200, seed=3)
    retried = run_cli("convert", str(good), str(root), *keys)
    assert retried.returncode == 0, retried.stderr


def test_an_ion_item_without_its_key_is_named_by_the_files_own_line_past_blank_lines(
        tmp_path: Path, published: tuple[Path, dict]) -> None:
    """Ion lines become JSON lines before the parse; blank lines between them must keep the line
    numbers the file has (the 9th line here, not the 5th item)."""
    import gzip

    root, before = published
    folder = doctor.make_export(tmp_path / "bad", export_format="ION")
    entry = doctor.biggest_entry(folder)
    lines = doctor.decompressed(folder, entry).split(b"\n")
    lines[4] = lines[4].replace(b"review_id:", b"review_ix:", 1)  # the 5th item loses its sort key
    spaced = b"\n\n".join(lines[:5]) + b"\n" + b"\n".join(lines[5:])  # a blank line after each of the first four
    doctor.replace_data(folder, entry, gzip.compress(spaced))
    with pytest.raises(ExportFormatError) as raised:
        convert_export(folder, root, ConvertOptions(workers=1, key_attributes=KEYS, **OPTIONS))
    assert str(raised.value) == (f"{doctor.data_path(folder, entry)}:9: the item lacks the key attribute "
                                 f"'review_id' (the table's key: product_id, review_id)")
    _assert_untouched(root, before)
