"""The local world's PITR exports match EXPORT_FORMAT.md, checked with an independent reader."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from amazon.ion import simpleion
from botocore.exceptions import ClientError

from ddb_assets.local.loader import to_client_form
from ddb_assets_tests.conftest import make_table, unique, wait_done
from ddb_assets_tests.independent_reader import b64md5, plain_ion, plain_value, read_export
import hashlib

EXPORT_ID = re.compile(r"^(\d{14})-[0-9a-f]{8}$")
DATA_NAME = re.compile(r"^data/[a-z2-7]{26}\.(json|ion)\.gz$")

ALL_TYPES_ITEM = {
    "pk": {"S": "P-1001"}, "sk": {"N": "42"}, "Rating": {"N": "4"}, "Verified": {"BOOL": True},
    "Comment": {"NULL": True}, "Tags": {"SS": ["value", "durable"]}, "HelpfulVotes": {"NS": ["5", "3"]},
    "Edits": {"L": [{"N": "2"}, {"S": "typo fixed"}]},
    "Author": {"M": {"name": {"S": "Ana"}, "score": {"N": "17.25"}, "banned": {"BOOL": False}}},
    "Avatar": {"B": "AAECAwQ="}, "Attachments": {"BS": ["aGk=", "b2s="]},
    "Big": {"N": "12345678901234567890.123456789012345678"}, "Tiny": {"N": "1E-130"},
    "Review Text": {"S": "Très bien ✓"}, "Empty": {"L": []}, "EmptyMap": {"M": {}},
}


def _export(ddb: Any, arn: str, bucket: str, **kwargs: Any) -> dict[str, Any]:
    started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, **kwargs)["ExportDescription"]
    done = wait_done(ddb, started["ExportArn"])
    assert done["ExportStatus"] == "COMPLETED", done
    return done


def test_layout_names_checksums_and_counts(ddb: Any, s3: Any, bucket: str) -> None:
    name, arn = make_table(ddb)
    for i in range(25):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"p{i % 7}"}, "sk": {"N": str(i)}, "v": {"S": "x" * i}})
    done = _export(ddb, arn, bucket, S3Prefix="ddb/reviews.v2")
    export = read_export(s3, bucket, done["ExportManifest"])

    names = set(export.keys)
    assert {"_started", "manifest-summary.json", "manifest-summary.md5", "manifest-files.json",
            "manifest-files.md5"} <= names
    data = names - {"_started", "manifest-summary.json", "manifest-summary.md5", "manifest-files.json",
                    "manifest-files.md5"}
    assert len(data) >= 2 and all(DATA_NAME.match(key) for key in data)
    assert export.keys["_started"] == b""

    # Checksum files: base64 of the raw md5 of the exact manifest bytes, 24 chars, no newline.
    assert export.keys["manifest-summary.md5"] == b64md5(export.summary_bytes).encode()
    assert export.keys["manifest-files.md5"] == b64md5(export.files_bytes).encode()
    assert len(export.keys["manifest-files.md5"]) == 24
    # Summary: one line, no trailing newline; manifest-files: every line ends in \n.
    assert b"\n" not in export.summary_bytes
    assert export.files_bytes.endswith(b"\n") and export.files_bytes.count(b"\n") == len(export.files)
    assert export.files_bytes.split(b"\n")[0].startswith(b'{"itemCount":')

    total = 0
    for entry in export.files:
        assert list(entry) == ["itemCount", "md5Checksum", "etag", "dataFileS3Key"]
        gz = export.keys[entry["dataFileS3Key"][len(export.folder) + 1:]]
        assert entry["md5Checksum"] == b64md5(gz)  # md5 of the *compressed* bytes
        assert entry["etag"] == hashlib.md5(hashlib.md5(gz).digest()).hexdigest() + "-1"
        assert entry["dataFileS3Key"].startswith("ddb/reviews.v2/AWSDynamoDB/")
        assert entry["itemCount"] == len(export.items_by_file[entry["dataFileS3Key"]])
        total += entry["itemCount"]
    assert total == export.summary["itemCount"] == done["ItemCount"] == 25
    # Items are spread by key hash: one partition key never spans two files.
    for entry in export.files:
        pks = {item["Item"]["pk"]["S"] for item in export.items_by_file[entry["dataFileS3Key"]]}
        others = {item["Item"]["pk"]["S"] for e in export.files if e is not entry
                  for item in export.items_by_file[e["dataFileS3Key"]]}
        assert not pks & others


def test_summary_fields_and_description(ddb: Any, s3: Any, bucket: str) -> None:
    name, arn = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket)["ExportDescription"]
    assert started["ExportStatus"] == "IN_PROGRESS"
    for absent in ("EndTime", "ExportManifest", "ItemCount", "BilledSizeBytes", "ExportType", "S3Prefix"):
        assert absent not in started
    assert started["ClientToken"]  # generated when none is sent
    done = wait_done(ddb, started["ExportArn"])
    export = read_export(s3, bucket, done["ExportManifest"])
    summary = export.summary

    assert list(summary) == ["version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportTime",
                             "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId", "manifestFilesS3Key",
                             "billedSizeBytes", "itemCount", "outputFormat"]
    assert summary["version"] == "2020-06-30"
    assert summary["exportArn"] == done["ExportArn"] == f"{arn}/export/{summary['exportArn'].rsplit('/', 1)[1]}"
    export_id = done["ExportArn"].rsplit("/", 1)[1]
    match = EXPORT_ID.match(export_id)
    assert match
    start = datetime.strptime(summary["startTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert int(match.group(1)) == round(start.timestamp() * 1000)
    assert summary["exportTime"] == summary["startTime"]  # no ExportTime requested
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", summary["endTime"])
    assert summary["s3Prefix"] is None and summary["s3SseKmsKeyId"] is None
    assert summary["manifestFilesS3Key"] == f"AWSDynamoDB/{export_id}/manifest-files.json"  # no leading slash
    assert done["ExportManifest"] == f"AWSDynamoDB/{export_id}/manifest-summary.json"
    assert summary["tableArn"] == arn and summary["s3Bucket"] == bucket
    assert summary["itemCount"] == 1 and summary["outputFormat"] == "DYNAMODB_JSON"
    assert done["BilledSizeBytes"] == summary["billedSizeBytes"]


def test_empty_partitions_are_empty_gzip_members(ddb: Any, s3: Any, bucket: str) -> None:
    name, arn = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "only"}, "sk": {"N": "1"}})
    export = read_export(s3, bucket, _export(ddb, arn, bucket, S3Prefix="p")["ExportManifest"])
    empty = [e for e in export.files if e["itemCount"] == 0]
    assert len(empty) == len(export.files) - 1 >= 1
    for entry in empty:
        gz = export.keys[entry["dataFileS3Key"][len(export.folder) + 1:]]
        assert len(gz) == 20 and export.items_by_file[entry["dataFileS3Key"]] == []


def test_every_type_descriptor_round_trips(ddb: Any, s3: Any, bucket: str) -> None:
    name, arn = make_table(ddb)
    ddb.put_item(TableName=name, Item=to_client_form(ALL_TYPES_ITEM))
    export = read_export(s3, bucket, _export(ddb, arn, bucket, S3Prefix="p")["ExportManifest"])
    [line] = export.items
    assert list(line) == ["Item"]
    assert list(line["Item"])[:2] == ["pk", "sk"]  # key attributes first
    assert {k: plain_value(v) for k, v in line["Item"].items()} == \
        {k: plain_value(v) for k, v in ALL_TYPES_ITEM.items()}


def test_ion_export_parses_to_the_same_values_as_json(ddb: Any, s3: Any, bucket: str) -> None:
    name, arn = make_table(ddb)
    ddb.put_item(TableName=name, Item=to_client_form(ALL_TYPES_ITEM))
    for i in range(12):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"k{i}"}, "sk": {"N": "1200"}, "n": {"N": str(i)},
                                           "s": {"SS": ["a", "b"]}})
    json_export = read_export(s3, bucket, _export(ddb, arn, bucket, S3Prefix="j")["ExportManifest"])
    ion_done = _export(ddb, arn, bucket, S3Prefix="i", ExportFormat="ION")
    assert ion_done["ExportFormat"] == "ION"
    ion_export = read_export(s3, bucket, ion_done["ExportManifest"])
    assert ion_export.summary["outputFormat"] == "ION"
    assert all(key.endswith(".ion.gz") for key in ion_export.keys if key.startswith("data/"))

    from_ion = []
    for line in ion_export.items:
        assert line.startswith("$ion_1_0 {Item:")
        document = simpleion.loads(line)
        from_ion.append({str(k): plain_ion(v) for k, v in document["Item"].items()})
    from_json = [{k: plain_value(v) for k, v in line["Item"].items()} for line in json_export.items]
    key = lambda item: (item["pk"], item["sk"])  # noqa: E731
    assert sorted(from_ion, key=key) == sorted(from_json, key=key)
    # Integers are written the way DynamoDB writes them: "4." rather than "4d0".
    all_the_types = next(line for line in ion_export.items if "P-1001" in line)
    assert "Rating:4.," in all_the_types and "$dynamodb_SS::[" in all_the_types and "{{AAECAwQ=}}" in all_the_types


def test_export_time_returns_items_as_they_were(ddb: Any, s3: Any, bucket: str) -> None:
    name, arn = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "changed"}, "sk": {"N": "1"}, "state": {"S": "old"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "deleted"}, "sk": {"N": "1"}, "state": {"S": "old"}})
    time.sleep(1.1)
    moment = datetime.fromtimestamp(int(time.time()), timezone.utc)  # ExportTime has one-second resolution
    time.sleep(1.1)
    ddb.update_item(TableName=name, Key={"pk": {"S": "changed"}, "sk": {"N": "1"}},
                    UpdateExpression="SET #s = :v", ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":v": {"S": "new"}})
    ddb.delete_item(TableName=name, Key={"pk": {"S": "deleted"}, "sk": {"N": "1"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "created"}, "sk": {"N": "1"}, "state": {"S": "new"}})

    past = read_export(s3, bucket, _export(ddb, arn, bucket, S3Prefix="past", ExportTime=moment)["ExportManifest"])
    assert {i["Item"]["pk"]["S"]: i["Item"]["state"]["S"] for i in past.items} == {"changed": "old", "deleted": "old"}
    assert past.summary["exportTime"] == moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert past.summary["exportTime"] != past.summary["startTime"]

    now = read_export(s3, bucket, _export(ddb, arn, bucket, S3Prefix="now")["ExportManifest"])
    assert {i["Item"]["pk"]["S"]: i["Item"]["state"]["S"] for i in now.items} == {"changed": "new", "created": "new"}


def test_export_time_outside_the_pitr_window_is_rejected(ddb: Any, bucket: str) -> None:
    _, arn = make_table(ddb)
    for moment in (datetime(2020, 1, 1, tzinfo=timezone.utc), datetime.fromtimestamp(time.time() + 3600, timezone.utc)):
        with pytest.raises(ClientError) as raised:
            ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, ExportTime=moment)
        assert raised.value.response["Error"]["Code"] == "InvalidExportTimeException"


def test_pitr_must_be_enabled(ddb: Any, bucket: str) -> None:
    _, arn = make_table(ddb, pitr=False)
    with pytest.raises(ClientError) as raised:
        ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket)
    assert raised.value.response["Error"]["Code"] == "PointInTimeRecoveryUnavailableException"
    assert "Point in time recovery is not enabled" in raised.value.response["Error"]["Message"]


def test_missing_bucket_fails_the_export(ddb: Any) -> None:
    _, arn = make_table(ddb)
    started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=unique("nosuchbucket"))["ExportDescription"]
    assert started["ExportStatus"] == "IN_PROGRESS"  # accepted, like AWS
    done = wait_done(ddb, started["ExportArn"])
    assert done["ExportStatus"] == "FAILED"
    assert done["FailureCode"] == "S3NoSuchBucket" and "bucket does not exist" in done["FailureMessage"]


def test_client_token_is_idempotent_and_conflicts_on_other_parameters(ddb: Any, bucket: str) -> None:
    _, arn = make_table(ddb)
    with pytest.raises(ClientError):  # a request failing validation does not reserve the token
        ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, ClientToken="tok", ExportFormat="QWERTY")
    first = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="a", ClientToken="tok")
    again = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="a", ClientToken="tok")
    assert first["ExportDescription"]["ExportArn"] == again["ExportDescription"]["ExportArn"]
    with pytest.raises(ClientError) as raised:
        ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="b", ClientToken="tok")
    assert raised.value.response["Error"]["Code"] == "ExportConflictException"


def test_validation_errors(ddb: Any, bucket: str) -> None:
    _, arn = make_table(ddb)
    cases = [dict(ExportFormat="QWERTY"), dict(S3Prefix="")]
    for extra in cases:
        with pytest.raises(ClientError) as raised:
            ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, **extra)
        assert raised.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as raised:
        ddb.describe_export(ExportArn=arn)
    assert raised.value.response["Error"]["Message"] == "Invalid Export ARN"
    with pytest.raises(ClientError) as raised:
        ddb.describe_export(ExportArn=f"{arn}/export/01715674542517-a4c123b1")
    assert raised.value.response["Error"]["Code"] == "ExportNotFoundException"


def test_list_exports_paginates(ddb: Any, bucket: str) -> None:
    _, arn = make_table(ddb)
    arns = {ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix=f"x{i}")
            ["ExportDescription"]["ExportArn"] for i in range(5)}
    seen, token, pages = [], None, 0
    while True:
        page = ddb.list_exports(TableArn=arn, MaxResults=2, **({"NextToken": token} if token else {}))
        pages += 1
        assert len(page["ExportSummaries"]) <= 2
        seen += [s["ExportArn"] for s in page["ExportSummaries"]]
        assert all(s["ExportType"] == "FULL_EXPORT" and s["ExportStatus"] in ("IN_PROGRESS", "COMPLETED")
                   for s in page["ExportSummaries"])
        token = page.get("NextToken")
        if not token:
            break
    assert set(seen) == arns and len(seen) == 5 and pages == 3


@pytest.mark.fast
def test_manifest_rendering_matches_the_documented_test_vector() -> None:
    # EXPORT_FORMAT.md §1.3: the two example manifests hash to these .md5 values.
    from ddb_assets.exports.manifest import ManifestFile, ManifestSummary, render_manifest_files

    summary = ManifestSummary(
        version="2020-06-30",
        export_arn="arn:aws:dynamodb:us-east-1:111122223333:table/Reviews/export/01715674542517-a4c123b1",
        start_time="2024-05-14T08:15:42.517Z", end_time="2024-05-14T08:21:09.204Z",
        table_arn="arn:aws:dynamodb:us-east-1:111122223333:table/Reviews",
        table_id="551fd8f9-a2c6-4e45-8a04-c79f6f15b6ad", export_time="2024-05-14T08:15:42.517Z",
        s3_bucket="example-exports", s3_prefix="ddb/reviews", s3_sse_algorithm="AES256", s3_sse_kms_key_id=None,
        manifest_files_s3_key="ddb/reviews/AWSDynamoDB/01715674542517-a4c123b1/manifest-files.json",
        billed_size_bytes=0, item_count=3, output_format="DYNAMODB_JSON")
    assert b64md5(summary.to_json_bytes()) == "cY9EZceNo3TxIkMUtsG4aA=="
    files = render_manifest_files([
        ManifestFile(0, "6t9/FCpyZoxH4iPRbt2MRw==", "41ecccc3fc1626e53a13043b026c48bb-1",
                     "ddb/reviews/AWSDynamoDB/01715674542517-a4c123b1/data/3dhodzdocis2jhtlgmxgedn73u.json.gz"),
        ManifestFile(3, "tGr8W67iYfU7JhUtJjuoOw==", "f33feff9243a8f506b40928b5b7a767c-1",
                     "ddb/reviews/AWSDynamoDB/01715674542517-a4c123b1/data/55xtplpft7v4seh2kvj72ceuvw.json.gz"),
    ])
    assert b64md5(files) == "NjuxG3WNx/3ibIy5D8NDjQ=="
    assert ManifestSummary.parse(summary.to_json_bytes(), obj="s") == summary


def test_numbers_survive_exactly(ddb: Any, s3: Any, bucket: str) -> None:
    name, arn = make_table(ddb)
    values = ["12345678901234567890123456789012345678", "-0.000000000000000000000000000000000001", "1E-130",
              "9.9999999999999999999999999999999999999E+125"]
    for i, value in enumerate(values):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"n{i}"}, "sk": {"N": "1"}, "v": {"N": value}})
    export = read_export(s3, bucket, _export(ddb, arn, bucket, S3Prefix="n")["ExportManifest"])
    assert sorted(Decimal(i["Item"]["v"]["N"]) for i in export.items) == sorted(Decimal(v) for v in values)
