"""Reading incremental exports' manifests (EXPORT_FORMAT.md §4.1-4.2): the summary parses and
renders back byte for byte, and ``open_export`` finds the data files in the shared data folder."""

from __future__ import annotations

import gzip
import hashlib
import base64
import json
from pathlib import Path

import pytest

from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.manifest import ManifestSummary
from ddb_assets.exports.reader import open_export

# The AWS docs' example, as EXPORT_FORMAT.md §4.2 gives it (its ARN and manifest key name different ids).
DOCS_EXAMPLE = (
    b'{"version":"2023-08-01","exportArn":"arn:aws:dynamodb:us-east-1:111122223333:table/Reviews/export/'
    b'01715670311000-612dd272","startTime":"2024-05-14T07:05:11.000Z","endTime":"2024-05-14T07:19:48.362Z",'
    b'"tableArn":"arn:aws:dynamodb:us-east-1:111122223333:table/Reviews","tableId":"551fd8f9-a2c6-4e45-8a04-'
    b'c79f6f15b6ad","exportFromTime":"2024-05-14T00:00:00.000Z","exportToTime":"2024-05-14T06:00:00.000Z",'
    b'"s3Bucket":"example-exports","s3Prefix":"ddb/reviews-incr","s3SseAlgorithm":"AES256","s3SseKmsKeyId":null,'
    b'"manifestFilesS3Key":"ddb/reviews-incr/AWSDynamoDB/01715670311000-612dd272/manifest-files.json",'
    b'"billedSizeBytes":52428800,"itemCount":2417,"outputFormat":"DYNAMODB_JSON","outputView":"NEW_AND_OLD_IMAGES",'
    b'"exportType":"INCREMENTAL_EXPORT"}'
)
ARN_ID = "01715670311000-612dd272"
OTHER_ID = "01715670311999-0badf00d"


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_the_docs_example_parses_and_renders_back_byte_for_byte() -> None:
    summary = ManifestSummary.parse(DOCS_EXAMPLE, obj="s")
    assert summary.version == "2023-08-01" and summary.export_type == "INCREMENTAL_EXPORT" and summary.incremental
    assert summary.export_from_time == "2024-05-14T00:00:00.000Z"
    assert summary.export_to_time == "2024-05-14T06:00:00.000Z"
    assert summary.output_view == "NEW_AND_OLD_IMAGES"
    assert summary.export_time is None and summary.extra == {}
    assert summary.item_count == 2417 and summary.export_id == ARN_ID
    assert summary.to_json_bytes() == DOCS_EXAMPLE
    assert ManifestSummary.parse(summary.to_json_bytes(), obj="s") == summary


def test_a_stray_export_time_and_a_missing_export_type_are_accepted() -> None:
    doc = json.loads(DOCS_EXAMPLE)
    del doc["exportType"]  # the version alone says incremental
    with_time = {**{k: v for k, v in doc.items() if k in ("version", "exportArn", "startTime", "endTime",
                                                           "tableArn", "tableId")},
                 "exportTime": "2024-05-14T07:05:11.000Z",
                 **{k: v for k, v in doc.items() if k not in ("version", "exportArn", "startTime", "endTime",
                                                               "tableArn", "tableId")}}
    summary = ManifestSummary.parse(json.dumps(with_time, separators=(",", ":")).encode(), obj="s")
    assert summary.export_type == "INCREMENTAL_EXPORT" and summary.export_time == "2024-05-14T07:05:11.000Z"
    assert summary.extra == {}
    rendered = json.loads(summary.to_json_bytes())
    assert list(rendered)[6:9] == ["exportTime", "exportFromTime", "exportToTime"]
    assert rendered["exportType"] == "INCREMENTAL_EXPORT"


@pytest.mark.parametrize("change, problem", [
    ({"exportType": "FULL_EXPORT"}, "contradicts version"),
    ({"version": "2020-06-30"}, "contradicts version"),  # exportType INCREMENTAL_EXPORT with a full version
    ({"exportType": "PARTIAL"}, "exportType 'PARTIAL'"),
    ({"outputView": "NEW_IMAGES"}, "outputView 'NEW_IMAGES'"),
    ({"exportFromTime": None}, "'exportFromTime' is missing"),
    ({"exportToTime": 5}, "'exportToTime' must be a string"),
    ({"version": "2099-01-01"}, "unknown manifest version"),
])
def test_inconsistent_incremental_summaries_are_refused(change: dict, problem: str) -> None:
    doc = {**json.loads(DOCS_EXAMPLE), **change}
    with pytest.raises(ExportFormatError, match=problem):
        ManifestSummary.parse(json.dumps(doc).encode(), obj="s")


def test_full_summaries_still_render_without_incremental_fields() -> None:
    doc = json.loads(DOCS_EXAMPLE)
    full = {"version": "2020-06-30", "exportArn": doc["exportArn"], "startTime": doc["startTime"],
            "endTime": doc["endTime"], "tableArn": doc["tableArn"], "tableId": doc["tableId"],
            "exportTime": doc["startTime"], "s3Bucket": "b", "s3Prefix": None, "s3SseAlgorithm": "AES256",
            "s3SseKmsKeyId": None, "manifestFilesS3Key": f"AWSDynamoDB/{ARN_ID}/manifest-files.json",
            "billedSizeBytes": 0, "itemCount": 0, "outputFormat": "ION"}
    data = json.dumps(full, separators=(",", ":")).encode()
    summary = ManifestSummary.parse(data, obj="s")
    assert summary.export_type == "FULL_EXPORT" and not summary.incremental and summary.output_view is None
    assert summary.to_json_bytes() == data


def _write_incremental(root: Path, *, manifest_id: str, lines: list[bytes], prefix: str = "ddb/reviews-incr") -> Path:
    """A hand-made incremental export under ``root`` (the bucket): summary per §4.2, one data file
    in the shared data folder, plus a decoy there that belongs to no manifest."""
    base = root / prefix / "AWSDynamoDB"
    folder = base / ARN_ID
    folder.mkdir(parents=True)
    (base / "data").mkdir()
    gz = gzip.compress(b"".join(lines))
    (base / "data" / "aaaaaaaaaaaaaaaaaaaaaaaaaa.json.gz").write_bytes(gz)
    (base / "data" / "decoydecoydecoydecoydecoyd.json.gz").write_bytes(gzip.compress(b"not mine\n"))
    entry = {"itemCount": len(lines), "md5Checksum": _b64md5(gz), "etag": "x-1",
             "dataFileS3Key": f"{prefix}/AWSDynamoDB/data/aaaaaaaaaaaaaaaaaaaaaaaaaa.json.gz"}
    files = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    (folder / "manifest-files.json").write_bytes(files)
    (folder / "manifest-files.md5").write_bytes(_b64md5(files).encode())
    doc = json.loads(DOCS_EXAMPLE)
    doc.update(itemCount=len(lines), manifestFilesS3Key=f"{prefix}/AWSDynamoDB/{manifest_id}/manifest-files.json")
    summary = json.dumps(doc, separators=(",", ":")).encode()
    (folder / "manifest-summary.json").write_bytes(summary)
    (folder / "manifest-summary.md5").write_bytes(_b64md5(summary).encode())
    return folder


@pytest.mark.parametrize("manifest_id", [ARN_ID, OTHER_ID])
def test_open_export_resolves_data_files_into_the_shared_folder(tmp_path: Path, manifest_id: str) -> None:
    line = (b'{"Metadata":{"WriteTimestampMicros":{"N":"1715671204387215"}},"Keys":{"pk":{"S":"a"}},'
            b'"NewImage":{"pk":{"S":"a"},"v":{"N":"1"}}}\n')
    folder = _write_incremental(tmp_path, manifest_id=manifest_id, lines=[line])
    export = open_export(folder)
    assert export.summary.export_type == "INCREMENTAL_EXPORT"
    assert export.checksum_files_verified == ("manifest-summary", "manifest-files")
    [data_file] = export.files  # the decoy in the shared folder is not this export's
    assert data_file.location.path == str(folder.parent / "data" / "aaaaaaaaaaaaaaaaaaaaaaaaaa.json.gz")
    assert gzip.decompress(data_file.read_verified()) == line
    assert open_export(folder / "manifest-summary.json").files == export.files


def test_an_incremental_manifest_naming_a_foreign_folder_is_still_refused(tmp_path: Path) -> None:
    folder = _write_incremental(tmp_path, manifest_id=ARN_ID, lines=[])
    doc = json.loads((folder / "manifest-summary.json").read_bytes())
    doc["manifestFilesS3Key"] = "ddb/reviews-incr/AWSDynamoDB/../../elsewhere/manifest-files.json"
    (folder / "manifest-summary.json").write_bytes(json.dumps(doc).encode())
    (folder / "manifest-summary.md5").unlink()
    with pytest.raises(ExportFormatError, match="manifestFilesS3Key"):
        open_export(folder)


def test_an_incremental_export_profiles_as_changes_and_the_raw_table_refuses_it(tmp_path: Path) -> None:
    from ddb_assets.exports.reader import open_export
    from ddb_assets.lake.convert import profile_export
    from ddb_assets.query.duckdb_engine import DuckDBEngine

    folder = _write_incremental(tmp_path, manifest_id=ARN_ID, lines=[])
    export, profile = profile_export(folder)  # its changes decode to items (exports/changes.py)
    assert export.summary.incremental and profile.items == 0
    with pytest.raises(ExportFormatError, match="incremental export .*changes, not items"):
        DuckDBEngine().register_raw_export("data", open_export(folder))
