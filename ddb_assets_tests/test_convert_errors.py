"""Every kind of bad input fails with an error naming the object (and line), and publishes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ddb_assets.exports.errors import ChecksumMismatch, ExportFormatError, ItemCountMismatch, MissingObject, OversizedLine
from ddb_assets.lake.convert import ConvertOptions, convert_export, profile_export
from ddb_assets.lake.plan_checks import ProfileMismatch
from ddb_assets.lake.profile import Profile, profile_from_json, profile_to_json
from ddb_assets_tests import doctor
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.cli_helpers import ddb_assets_command, run_cli
from ddb_assets_tests.lake_reader import read_rows, read_table_metadata

CASES = Path(__file__).parent / "cases"


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, dict]:
    """A table already published from a good export: what every failure must leave untouched."""
    good = doctor.make_export(tmp_path / "good", items=200, seed=1)
    root = tmp_path / "lake" / "reviews"
    convert_export(good, root, ConvertOptions(workers=1))
    return root, read_table_metadata(str(root))


def _assert_untouched(root: Path, before: dict) -> None:
    after = read_table_metadata(str(root))
    assert after == before
    meta, rows = read_rows(str(root))  # every referenced file is still there and readable
    assert len(rows) == sum(f["rows"] for p in meta["partitions"].values() for f in p["files"]) == 200


def _fails(folder: Path, root: Path, error: type[ExportFormatError], *fragments: str) -> ExportFormatError:
    with pytest.raises(error) as raised:
        convert_export(folder, root, ConvertOptions(workers=2))
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
def test_killing_a_conversion_midway_leaves_the_published_table_whole(tmp_path: Path, published: tuple[Path, dict],
                                                                       one_pass: bool) -> None:
    root, before = published
    big = doctor.make_export(tmp_path / "big", items=60_000, files=6, seed=2)
    command = [*ddb_assets_command(), "convert", str(big), str(root), "--workers", "2"]
    if one_pass:  # its Parquet files are written while the export is still being read
        export, profile = profile_export(big, ConvertOptions(workers=2))
        (tmp_path / "profile.json").write_bytes(profile_to_json(profile, export.export_id))
        command += ["--profile", str(tmp_path / "profile.json")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    old_versions = {p["version"] for p in before["partitions"].values()}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            new_files = [p for p in root.rglob("*.parquet") if p.parent.name not in old_versions]
            if new_files:  # the new version is being written: kill everything now
                break
            time.sleep(0.01)
        assert process.poll() is None, "the conversion finished before it could be killed; use a bigger export"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert [p for p in root.rglob("*.parquet") if p.parent.name not in old_versions], "nothing new was written"
    _assert_untouched(root, before)

    # A rerun publishes the new export and sweeps the orphans the killed run left behind.
    convert_export(big, root, ConvertOptions(workers=2))
    meta, rows = read_rows(str(root))
    assert len(rows) == 60_000
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.parquet")}
    assert on_disk == {f["path"] for p in meta["partitions"].values() for f in p["files"]}
    assert json.loads((root / "_ddb_assets.json").read_text())["source"]["item_count"] == 60_000


def test_a_concurrent_conversion_keeps_the_files_of_one_still_writing(tmp_path: Path,
                                                                      published: tuple[Path, dict]) -> None:
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.publish import clear_inflight, mark_inflight

    root, _ = published
    # Another run is writing version v99 (its marker is there, its files not yet published).
    orphan_of_a_live_run = root / "year=2015" / "v99" / "part-0000.parquet"
    orphan_of_a_dead_run = root / "year=2015" / "v98" / "part-0000.parquet"
    for path in (orphan_of_a_live_run, orphan_of_a_dead_run):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"PAR1")
    mark_inflight(resolve(root), "v99")
    convert_export(doctor.make_export(tmp_path / "next", items=50, seed=3), root, ConvertOptions(workers=1))
    assert orphan_of_a_live_run.exists() and not orphan_of_a_dead_run.exists()
    clear_inflight(resolve(root), "v99")
    convert_export(doctor.make_export(tmp_path / "again", items=50, seed=4), root, ConvertOptions(workers=1))
    assert not orphan_of_a_live_run.exists()


def test_a_bad_line_deep_in_a_file_read_in_pieces_is_numbered_from_the_file_start(
        tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad", items=2000, files=2)
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(700, lines[700][:-7]))  # line 701
    with pytest.raises(ExportFormatError) as raised:
        # 16 KiB pieces: line 701 is many pieces into the file
        convert_export(folder, root, ConvertOptions(workers=2, piece_bytes=16 << 10))
    assert raised.value.line == 701 and f"{entry['dataFileS3Key']}:701: malformed JSON" in str(raised.value)
    _assert_untouched(root, before)


def test_a_run_keeps_its_marker_until_its_table_is_published(tmp_path: Path, published: tuple[Path, dict],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Cleared before the switch, a concurrent run publishing in between would delete its files."""
    import ddb_assets.lake.publish as publish_module
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.publish import inflight_versions

    root, _ = published
    seen: list[tuple[str, frozenset[str]]] = []
    original = publish_module.publish

    def watching(location, metadata):  # type: ignore[no-untyped-def]
        seen.append((metadata.version, inflight_versions(location)))
        return original(location, metadata)

    monkeypatch.setattr(publish_module, "publish", watching)
    convert_export(doctor.make_export(tmp_path / "next", items=50, seed=3), root, ConvertOptions(workers=1))
    [(version, live)] = seen
    assert version in live  # still marked while the switch happens
    assert version not in inflight_versions(resolve(root))  # and cleared after it


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_runs_rewriting_different_partitions_at_once_keep_both(
        tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Each run reads the current metadata, derives the next and switches to it. Interleaved, the
    second would drop the first's partitions and point them at files the first had deleted: a
    lock prevents it locally, a compare-and-swap (conditional PUT) on S3."""
    import threading

    import ddb_assets.lake.convert as convert_module
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.publish import read_metadata

    if where == "s3":
        request.getfixturevalue("aws_env")
        s3 = request.getfixturevalue("s3")
        lake = unique("lake")
        s3.create_bucket(Bucket=lake)
        root: str = f"s3://{lake}/reviews"
    else:
        root = str(tmp_path / "lake" / "reviews")
    source = doctor.make_export(tmp_path / "export", items=200, seed=1)
    convert_export(source, root, ConvertOptions(workers=1))
    before = read_metadata(resolve(root))
    assert before is not None
    partitions = sorted(before.partitions)
    mine, theirs = frozenset(partitions[:2]), frozenset(partitions[2:4])
    original = convert_module._next_metadata

    def slow_derive(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # widen the window between reading the metadata and switching to the next
        return original(*args, **kwargs)

    monkeypatch.setattr(convert_module, "_next_metadata", slow_derive)
    errors: list[BaseException] = []

    def run(only: frozenset[str]) -> None:
        try:
            convert_export(source, root, ConvertOptions(workers=1, only_partitions=only))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(only,)) for only in (mine, theirs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    after = read_metadata(resolve(root))
    assert after is not None
    assert all(after.partitions[v].version != before.partitions[v].version for v in mine | theirs)
    assert all(after.partitions[v].version == before.partitions[v].version
               for v in set(partitions) - mine - theirs)
    location = resolve(root)  # every file the metadata names exists
    assert all(location.join(f["path"]).exists() for p in after.partitions.values() for f in p.files)


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


def test_a_partial_rewrite_refuses_a_changed_schema(tmp_path: Path, published: tuple[Path, dict]) -> None:
    """Rewriting some partitions under a new schema would leave the others with the old one: the
    table would no longer have one schema (Athena rejects an INT64 file under a decimal column)."""
    root, before = published
    changed = _with_changed_schema(tmp_path)
    some = frozenset(sorted(before["partitions"])[:2])
    files_before = sorted(root.rglob("*.parquet"))
    with pytest.raises(ValueError) as raised:
        convert_export(changed, root, ConvertOptions(workers=2, only_partitions=some))
    message = str(raised.value)
    for fragment in ("schema", "star_rating", "int64", "decimal", "gift_wrap", "every partition"):
        assert fragment in message, message
    _assert_untouched(root, before)
    assert sorted(root.rglob("*.parquet")) == files_before  # nothing of the refused run is left

    convert_export(changed, root, ConvertOptions(workers=2))  # a full conversion changes the schema
    meta, rows = read_rows(str(root))
    assert len(rows) == 200 and any(row.get("gift_wrap") is True for row in rows)


def test_a_partial_rewrite_under_the_same_schema_keeps_the_other_partitions(
        tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    same = doctor.make_export(tmp_path / "again", items=200, seed=1)
    some = frozenset(sorted(before["partitions"])[:2])
    convert_export(same, root, ConvertOptions(workers=2, only_partitions=some))
    after = read_table_metadata(str(root))
    assert {v for v in after["partitions"] if after["partitions"][v]["version"] != before["partitions"][v]["version"]} == some
    assert len(read_rows(str(root))[1]) == 200


def _saved_profile(folder: Path) -> Profile:
    export, profile = profile_export(folder, ConvertOptions(workers=1))
    return profile_from_json(profile_to_json(profile, export.export_id), obj="saved")[1]


def test_one_pass_reports_bad_input_as_two_stages_do(tmp_path: Path, published: tuple[Path, dict]) -> None:
    root, before = published
    folder = doctor.make_export(tmp_path / "bad")
    known = _saved_profile(folder)  # profiled while it was good
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(2, lines[2][:-7]))  # cut off line 3's end
    files_before = sorted(root.rglob("*.parquet"))
    with pytest.raises(ExportFormatError) as raised:
        convert_export(folder, root, ConvertOptions(workers=2), known=known)
    assert f"{entry['dataFileS3Key']}:3:" in str(raised.value) and "malformed JSON" in str(raised.value)
    _assert_untouched(root, before)
    assert sorted(root.rglob("*.parquet")) == files_before


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
    files_before = sorted(root.rglob("*.parquet"))
    with pytest.raises(ProfileMismatch) as raised:
        convert_export(folder, root, ConvertOptions(workers=2), known=known)
    assert expected in str(raised.value) and "profile" in str(raised.value), str(raised.value)
    _assert_untouched(root, before)
    assert sorted(root.rglob("*.parquet")) == files_before


@pytest.mark.parametrize("value, expected", [
    ({"N": "abc"}, "N must hold a number, found 'abc'"),
    ({"N": "NaN"}, "N must hold a number, found 'NaN'"),
    ({"N": "0x10"}, "found '0x10'"),  # Arrow's integer cast would have read 16
    ({"N": "1_000"}, "found '1_000'"),  # Python's Decimal would have read 1000
    ({"N": " 5"}, "found ' 5'"),
    ({"NS": ["1", "x"]}, "NS must hold a number, found 'x'"),
    ({"B": "not base64!"}, "B must hold base64"),
    ({"BS": ["AAEC", "AAE"]}, "BS must hold base64, found 'AAE'"),
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
    _fails(folder, root, ExportFormatError, "/data/siirt7ipyksftj6kjkjivz2uze.json.gz:2: invalid UTF-8 in "
                                            "attribute 'note' (byte 0xff at column 38)")
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
        convert_export(folder, root, ConvertOptions(workers=2, piece_bytes=16 << 10))
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
    ("invalid-utf8", "bughunt/invalid-utf8/AWSDynamoDB/01764463200000-f4c6f851/data/siirt7ipyksftj6kjkjivz2uze.json.gz"
                     ":2: invalid UTF-8 in attribute 'note' (byte 0xff at column 38)"),
])
def test_the_cli_refuses_the_shared_cases_in_one_line(tmp_path: Path, case: str, message: str) -> None:
    folder = next((CASES / case / "AWSDynamoDB").iterdir())
    result = run_cli("convert", str(folder), str(tmp_path / "lake"), "--workers", "1")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith(message), result.stderr
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))
