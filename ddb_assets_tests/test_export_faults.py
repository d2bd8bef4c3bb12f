"""Hostile and damaged input at the export format layer (issue 14): each kind of fault is refused
with one ExportFormatError naming the object (and line), whatever input of that kind it meets."""

from __future__ import annotations

import posixpath
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.reader import KeyPlace, open_export, place_of_key
from ddb_assets_tests import doctor

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
