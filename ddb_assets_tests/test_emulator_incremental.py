"""The local world's incremental exports (EXPORT_FORMAT.md §4-5), read with the independent reader
and compared with the changes each test computes from the writes it made itself.

The world clock stands still during these tests (``clock`` fixture), so every write's time is the
instant the test set, and 15-minute windows pass in a call.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ddb_assets.local.clock import WorldClock
from ddb_assets_tests.conftest import make_table, unique, wait_done
from ddb_assets_tests.independent_reader import (
    PlainChange,
    b64md5,
    plain_value,
    read_export,
    read_incremental_export,
)

MINUTE, HOUR, DAY = 60, 3600, 86400
SUMMARY_KEYS = ["version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportFromTime",
                "exportToTime", "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId", "manifestFilesS3Key",
                "billedSizeBytes", "itemCount", "outputFormat", "outputView", "exportType"]
DATA_KEY = re.compile(r"^(?P<prefix>.+/)?AWSDynamoDB/data/[a-z2-7]{26}\.(json|ion)\.gz$")


def iso_millis(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- what the test expects, from its own writes ----------------------------------------------------


@dataclass
class Writer:
    """Writes items through the API and logs each one as (time, key, the item's state after it)."""

    ddb: Any
    table: str
    clock: WorldClock
    log: list[tuple[float, tuple[Any, ...], dict[str, Any] | None]] = field(default_factory=list)
    state: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def key_of(item: dict[str, Any]) -> tuple[Any, ...]:
        return (item["pk"]["S"], item["sk"]["N"])

    def put(self, pk: str, sk: int = 1, **values: Any) -> None:
        item = {"pk": {"S": pk}, "sk": {"N": str(sk)}, **{k: _attr(v) for k, v in values.items()}}
        self.ddb.put_item(TableName=self.table, Item=item)
        self._log(self.key_of(item), item)

    def update(self, pk: str, sk: int = 1, **values: Any) -> None:
        key = {"pk": {"S": pk}, "sk": {"N": str(sk)}}
        names = {f"#a{i}": name for i, name in enumerate(values)}
        self.ddb.update_item(TableName=self.table, Key=key,
                             UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
                             ExpressionAttributeNames=names,
                             ExpressionAttributeValues={f":v{i}": _attr(v) for i, v in enumerate(values.values())})
        merged = {**self.state.get(self.key_of(key), key), **{k: _attr(v) for k, v in values.items()}}
        self._log(self.key_of(key), merged)

    def delete(self, pk: str, sk: int = 1) -> None:
        key = {"pk": {"S": pk}, "sk": {"N": str(sk)}}
        self.ddb.delete_item(TableName=self.table, Key=key)
        self._log(self.key_of(key), None)

    def _log(self, key: tuple[Any, ...], item: dict[str, Any] | None) -> None:
        self.log.append((self.clock.now(), key, item))
        if item is None:
            self.state.pop(key, None)
        else:
            self.state[key] = item

    def state_at(self, moment: float, *, inclusive: bool = True) -> dict[tuple[Any, ...], dict[str, Any]]:
        state: dict[tuple[Any, ...], dict[str, Any] | None] = {}
        for at, key, item in self.log:
            if at < moment or (inclusive and at == moment):
                state[key] = item
        return {key: item for key, item in state.items() if item is not None}

    def expected(self, start: float, end: float) -> dict[tuple[Any, ...], tuple[Any, Any, int]]:
        """key -> (old image, new image, micros of its last write in [start, end)), plain values;
        keys absent at both ends left out."""
        before = self.state_at(start, inclusive=False)
        last: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]] = {}
        for at, key, item in self.log:
            if start <= at < end:
                last[key] = (at, item)
        out = {}
        for key, (at, item) in last.items():
            old = before.get(key)
            if old is None and item is None:
                continue
            out[key] = (_plain(old), _plain(item), round(at * 1_000_000))
        return out


def _attr(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, Decimal)):
        return {"N": str(value)}
    return {"S": str(value)}


def _plain(item: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if item is None else {k: plain_value(v) for k, v in item.items()}


def _key_of_change(change: PlainChange) -> tuple[Any, ...]:
    return (change.keys["pk"], str(change.keys["sk"]))


def incremental(ddb: Any, arn: str, bucket: str, start: float, end: float | None = None, *,
                view: str | None = None, **kwargs: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"ExportFromTime": start}
    if end is not None:
        spec["ExportToTime"] = end
    if view is not None:
        spec["ExportViewType"] = view
    return ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, ExportType="INCREMENTAL_EXPORT",
                                             IncrementalExportSpecification=spec, **kwargs)["ExportDescription"]


def completed(ddb: Any, started: dict[str, Any]) -> dict[str, Any]:
    done = wait_done(ddb, started["ExportArn"])
    assert done["ExportStatus"] == "COMPLETED", done
    return done


# -- the scenario every view and format is checked on -------------------------------------------


@pytest.fixture
def scenario(ddb: Any, clock: WorldClock) -> tuple[Writer, str, float, float]:
    """A table written before, inside and after the window [start, end) with every kind of change.
    Returns the writer, the table ARN and the window."""
    name, arn = make_table(ddb)  # PITR enabled now
    w = Writer(ddb, name, clock)
    clock.advance(10)
    for pk in ("updated", "deleted", "untouched", "round-trip", "recreated", "deleted-early"):
        w.put(pk, v=1, note=f"{pk} before")
    clock.advance(50)
    w.update("updated", v=0)  # before the window: part of the old image
    clock.advance(40)
    start = clock.now()
    w.put("at-start", v=1)  # at ExportFromTime exactly: inside (inclusive)
    w.delete("deleted-early")  # at ExportFromTime exactly: a delete inside
    clock.advance(MINUTE)
    w.update("updated", v=2)
    w.put("inserted", v=5, tags={"SS": ["a", "b"]})
    w.put("flash", v=9)
    clock.advance(MINUTE)
    w.update("updated", v=3, extra="yes")  # compaction: only the final state shows
    w.delete("deleted")
    w.delete("flash")  # inserted and deleted inside the window: invisible
    w.update("round-trip", v=2)
    clock.advance(MINUTE)
    w.put("round-trip", v=1, note="round-trip before")  # written back to exactly its old state
    w.delete("recreated")
    clock.advance(MINUTE)
    w.put("recreated", v=7)  # deleted and put again: an update
    w.put("inserted", sk=2, v=6)  # same partition key, another item
    w.delete("never-existed")  # a delete of nothing: no change
    end = start + 15 * MINUTE
    clock.set(end, frozen=True)
    w.put("at-end", v=1)  # at ExportToTime exactly: outside (exclusive)
    w.update("untouched", v=99)  # after the window
    clock.advance(5 * MINUTE)
    return w, arn, start, end


@pytest.mark.parametrize("view", ["NEW_AND_OLD_IMAGES", "NEW_IMAGE"])
@pytest.mark.parametrize("export_format", ["DYNAMODB_JSON", "ION"])
def test_changes_in_the_window_each_key_once_in_its_final_state(
        ddb: Any, s3: Any, bucket: str, scenario: tuple[Writer, str, float, float], view: str,
        export_format: str) -> None:
    w, arn, start, end = scenario
    done = completed(ddb, incremental(ddb, arn, bucket, start, end, view=view, S3Prefix="incr",
                                      ExportFormat=export_format))
    export = read_incremental_export(s3, bucket, done["ExportManifest"])
    changes = export.changes()

    by_key = {_key_of_change(c): c for c in changes}
    assert len(by_key) == len(changes), "each key at most once per export"
    expected = w.expected(start, end)
    assert set(by_key) == set(expected) == {
        ("at-start", "1"), ("deleted-early", "1"), ("updated", "1"), ("inserted", "1"), ("inserted", "2"),
        ("deleted", "1"), ("round-trip", "1"), ("recreated", "1")}
    for key, change in by_key.items():
        old, new, micros = expected[key]
        assert change.write_micros == micros, key
        assert change.keys == {"pk": key[0], "sk": Decimal(key[1])}  # the key attributes, nothing else
        assert change.new == new, key
        if view == "NEW_AND_OLD_IMAGES":
            assert change.old == old, key  # the state just before ExportFromTime
        else:
            assert change.old is None, key
        # The line's fields per change and view (EXPORT_FORMAT.md §4.3), in the order of the sample.
        shape = ("Metadata", "Keys") + (("OldImage",) if old is not None and view == "NEW_AND_OLD_IMAGES" else ()) \
            + (("NewImage",) if new is not None else ())
        assert change.fields == shape, key
    assert by_key[("updated", "1")].new == {"pk": "updated", "sk": 1, "v": 3, "note": "updated before",
                                           "extra": "yes"}
    if view == "NEW_AND_OLD_IMAGES":
        assert by_key[("updated", "1")].old["v"] == 0
        assert by_key[("round-trip", "1")].old == by_key[("round-trip", "1")].new  # emitted, as written
    assert by_key[("deleted", "1")].fields == (("Metadata", "Keys", "OldImage") if view == "NEW_AND_OLD_IMAGES"
                                              else ("Metadata", "Keys"))  # a delete: no NewImage

    if export_format == "DYNAMODB_JSON":
        for line in export.lines:  # the typed-number form, as code running on real files reads it
            assert set(line["Metadata"]) == {"WriteTimestampMicros"}
            assert list(line["Metadata"]["WriteTimestampMicros"]) == ["N"]
            assert list(line.get("NewImage") or line["Keys"])[:2] == ["pk", "sk"]  # key attributes first
    else:
        for line in export.lines:
            assert line.startswith("$ion_1_0 {Metadata:{WriteTimestampMicros:")
        assert all(key.endswith(".ion.gz") for key in export.data)

    assert done["ItemCount"] == export.summary["itemCount"] == len(changes) == 8  # deletes count as lines
    assert sum(entry["itemCount"] for entry in export.files) == 8


def test_manifests_description_and_layout(ddb: Any, s3: Any, bucket: str,
                                          scenario: tuple[Writer, str, float, float]) -> None:
    _, arn, start, end = scenario
    started = incremental(ddb, arn, bucket, start, end, S3Prefix="ddb/reviews-incr")
    assert started["ExportStatus"] == "IN_PROGRESS" and started["ExportType"] == "INCREMENTAL_EXPORT"
    assert "ExportTime" not in started and "ExportManifest" not in started
    assert started["IncrementalExportSpecification"] == {
        "ExportFromTime": datetime.fromtimestamp(start, timezone.utc),
        "ExportToTime": datetime.fromtimestamp(end, timezone.utc), "ExportViewType": "NEW_AND_OLD_IMAGES"}
    done = completed(ddb, started)
    export_id = done["ExportArn"].rsplit("/", 1)[1]
    export = read_incremental_export(s3, bucket, done["ExportManifest"])
    summary = export.summary

    assert done["ExportManifest"] == f"ddb/reviews-incr/AWSDynamoDB/{export_id}/manifest-summary.json"
    assert list(summary) == SUMMARY_KEYS  # no exportTime
    assert summary["version"] == "2023-08-01" and summary["exportType"] == "INCREMENTAL_EXPORT"
    assert summary["outputView"] == "NEW_AND_OLD_IMAGES" and summary["outputFormat"] == "DYNAMODB_JSON"
    assert summary["exportFromTime"] == iso_millis(start) and summary["exportToTime"] == iso_millis(end)
    assert summary["exportArn"] == done["ExportArn"] and summary["tableArn"] == arn
    assert summary["manifestFilesS3Key"] == f"ddb/reviews-incr/AWSDynamoDB/{export_id}/manifest-files.json"
    assert summary["startTime"] == iso_millis(int(export_id[:14]) / 1000)
    assert summary["itemCount"] == done["ItemCount"] == 8
    assert summary["billedSizeBytes"] == done["BilledSizeBytes"] >= 10_000_000  # AWS's minimum charge

    # Manifests and checksums as in full exports; data files in the shared folder.
    assert set(export.keys) == {"_started", "manifest-summary.json", "manifest-summary.md5",
                                "manifest-files.json", "manifest-files.md5"}
    assert b"\n" not in export.summary_bytes
    assert export.keys["manifest-summary.md5"] == b64md5(export.summary_bytes).encode()
    assert export.keys["manifest-files.md5"] == b64md5(export.files_bytes).encode()
    assert export.files_bytes.count(b"\n") == len(export.files) and export.files_bytes.endswith(b"\n")
    for entry in export.files:
        assert list(entry) == ["itemCount", "md5Checksum", "etag", "dataFileS3Key"]
        match = DATA_KEY.match(entry["dataFileS3Key"])
        assert match and match["prefix"] == "ddb/reviews-incr/"
        assert entry["md5Checksum"] == b64md5(export.data[entry["dataFileS3Key"]])
        assert entry["itemCount"] == len(export.lines_by_file[entry["dataFileS3Key"]])

    [summary_entry] = [s for s in ddb.list_exports(TableArn=arn)["ExportSummaries"]
                       if s["ExportArn"] == done["ExportArn"]]
    assert summary_entry == {"ExportArn": done["ExportArn"], "ExportStatus": "COMPLETED",
                             "ExportType": "INCREMENTAL_EXPORT"}


def test_two_exports_share_the_data_folder_and_each_manifest_lists_its_own(
        ddb: Any, s3: Any, bucket: str, clock: WorldClock) -> None:
    name, arn = make_table(ddb)
    w = Writer(ddb, name, clock)
    start = clock.now()
    for window in range(2):
        for i in range(6):
            w.put(f"w{window}-{i}", v=i)
        clock.advance(15 * MINUTE)
    first = completed(ddb, incremental(ddb, arn, bucket, start, start + 15 * MINUTE, S3Prefix="shared"))
    second = completed(ddb, incremental(ddb, arn, bucket, start + 15 * MINUTE, start + 30 * MINUTE,
                                        S3Prefix="shared"))
    one = read_incremental_export(s3, bucket, first["ExportManifest"])
    two = read_incremental_export(s3, bucket, second["ExportManifest"])
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="shared/AWSDynamoDB/data/")["Contents"]}
    assert set(one.data) | set(two.data) == listed and not set(one.data) & set(two.data)
    assert {_key_of_change(c)[0] for c in one.changes()} == {f"w0-{i}" for i in range(6)}
    assert {_key_of_change(c)[0] for c in two.changes()} == {f"w1-{i}" for i in range(6)}
    assert one.folder != two.folder and one.folder.startswith("shared/AWSDynamoDB/0")


def test_the_project_reader_opens_the_emulators_incremental_export(
        ddb: Any, bucket: str, aws_env: dict[str, str], scenario: tuple[Writer, str, float, float]) -> None:
    import gzip

    from ddb_assets.exports.reader import open_export

    _, arn, start, end = scenario
    done = completed(ddb, incremental(ddb, arn, bucket, start, end, S3Prefix="p", view="NEW_IMAGE"))
    export = open_export(f"s3://{bucket}/{done['ExportManifest']}")
    assert export.summary.export_type == "INCREMENTAL_EXPORT" and export.summary.output_view == "NEW_IMAGE"
    assert export.summary.export_from_time == iso_millis(start) and export.summary.export_time is None
    assert export.checksum_files_verified == ("manifest-summary", "manifest-files")
    assert all(f.location.path.startswith(f"{bucket}/p/AWSDynamoDB/data/") for f in export.files)
    lines = [line for f in export.files for line in gzip.decompress(f.read_verified()).splitlines()]
    assert len(lines) == export.summary.item_count == 8


# -- consecutive windows rebuild the table ----------------------------------------------------------


@pytest.mark.parametrize("view", ["NEW_AND_OLD_IMAGES", "NEW_IMAGE"])
def test_consecutive_windows_applied_to_a_full_export_give_the_table_at_the_end(
        ddb: Any, s3: Any, bucket: str, clock: WorldClock, view: str) -> None:
    rng = random.Random(f"windows-{view}")
    name, arn = make_table(ddb)
    w = Writer(ddb, name, clock)
    keys = [(f"k{i % 9}", i % 3) for i in range(27)]

    def random_writes(count: int) -> None:
        for _ in range(count):
            pk, sk = rng.choice(keys)
            roll = rng.random()
            if roll < 0.25:
                w.delete(pk, sk)
            elif roll < 0.5 and (pk, str(sk)) in w.state:
                w.update(pk, sk, v=rng.randint(0, 5))
            else:
                w.put(pk, sk, v=rng.randint(0, 5), s=rng.choice(["x", "y"]))
            clock.advance(rng.choice([0, 1, 7, 30, 45]))  # under a minute, so the loop below stops short of `end`

    random_writes(40)
    clock.advance(1)
    t0 = clock.now()  # nothing written at t0 itself: the full export and the first window meet there
    clock.advance(1)
    bounds = [t0, t0 + 15 * MINUTE, t0 + 40 * MINUTE, t0 + 100 * MINUTE]
    for end in bounds[1:]:
        while clock.now() < end - 60:
            random_writes(1)
        clock.set(end, frozen=True)
        random_writes(3)  # some at exactly the boundary: in the next window, not this one
    clock.advance(MINUTE)

    full = read_export(s3, bucket, completed(ddb, ddb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="base", ExportTime=datetime.fromtimestamp(t0, timezone.utc))
        ["ExportDescription"])["ExportManifest"])
    table = {(i["Item"]["pk"]["S"], i["Item"]["sk"]["N"]): _plain(i["Item"]) for i in full.items}
    assert table == {k: _plain(v) for k, v in w.state_at(t0).items()}
    for start, end in zip(bounds, bounds[1:]):
        done = completed(ddb, incremental(ddb, arn, bucket, start, end, view=view, S3Prefix="chain"))
        for change in read_incremental_export(s3, bucket, done["ExportManifest"]).changes():
            key = _key_of_change(change)
            if view == "NEW_AND_OLD_IMAGES":
                assert change.old == table.get(key)  # the state the previous windows left
            if change.new is None:
                table.pop(key)
            else:
                table[key] = change.new
        assert table == {k: _plain(v) for k, v in w.state_at(end, inclusive=False).items()}


# -- the window rules ---------------------------------------------------------------------------


@pytest.fixture
def old_table(ddb: Any, clock: WorldClock) -> tuple[str, str, float]:
    """A table with PITR on for two days. Returns its name, ARN and the PITR enable time."""
    name, arn = make_table(ddb)
    enabled = clock.now()
    clock.advance(2 * DAY)
    return name, arn, enabled


def _refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def _z(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


SHORT = "Difference between export period from time and export period to time is less than 15 minutes"


def test_each_window_rule_refuses_as_aws_does(ddb: Any, bucket: str, clock: WorldClock,
                                              old_table: tuple[str, str, float]) -> None:
    _, arn, enabled = old_table
    now = clock.now()
    cases = [  # (from, to, message)
        (enabled - 1, enabled + HOUR,
         f"Incremental export period from time cannot be less than the table creation time : {_z(enabled - 1)}"),
        (now - HOUR, now + 1,
         f"Incremental export period to time cannot be greater than the current time : {_z(now + 1)}"),
        (now - HOUR, now - 2 * HOUR, SHORT),  # from after to
        (now - HOUR, now - HOUR, SHORT),  # from equal to to
        (now - HOUR, now - HOUR + 15 * MINUTE - 1, SHORT),
        (now - 30 * HOUR, now - 30 * HOUR + DAY + 1,
         "Difference between export period from time and export period to time is greater than 24 hours"),
        (now - 10 * MINUTE, None, SHORT),  # to omitted: up to now
    ]
    for start, end, message in cases:
        code, text = _refusal(lambda: incremental(ddb, arn, bucket, start, end))
        assert (code, text) == ("InvalidExportTimeException", message), (start - now, end and end - now)
    # The bounds themselves are accepted: exactly 15 minutes, exactly 24 hours, from = PITR enable, to = now.
    for start, end in [(now - HOUR, now - HOUR + 15 * MINUTE), (now - 30 * HOUR, now - 6 * HOUR),
                       (enabled, enabled + DAY), (now - HOUR, now), (now - HOUR, None)]:
        assert incremental(ddb, arn, bucket, start, end)["ExportStatus"] == "IN_PROGRESS"


def test_to_time_defaults_to_now_to_the_second(ddb: Any, bucket: str, clock: WorldClock,
                                               old_table: tuple[str, str, float]) -> None:
    _, arn, _ = old_table
    clock.advance(0.75)
    now = clock.now()
    started = incremental(ddb, arn, bucket, now - HOUR)
    spec = started["IncrementalExportSpecification"]
    assert spec["ExportToTime"] == datetime.fromtimestamp(math.floor(now), timezone.utc)
    assert spec["ExportViewType"] == "NEW_AND_OLD_IMAGES"  # the default
    completed(ddb, started)


def test_the_pitr_window_bounds_the_from_time(ddb: Any, bucket: str, clock: WorldClock) -> None:
    name, arn = make_table(ddb)
    ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 1})
    clock.advance(3 * DAY)
    now = clock.now()
    code, text = _refusal(lambda: incremental(ddb, arn, bucket, now - DAY - 1, now - 20 * HOUR))
    assert code == "InvalidExportTimeException" and "from time cannot be less than" in text
    assert incremental(ddb, arn, bucket, now - DAY, now - 20 * HOUR)["ExportStatus"] == "IN_PROGRESS"
    pitr = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"]
    assert pitr["EarliestRestorableDateTime"].timestamp() == pytest.approx(now - DAY, abs=0.001)
    assert pitr["LatestRestorableDateTime"].timestamp() == pytest.approx(now, abs=0.001)


def test_pitr_off_refuses_an_incremental_export_by_its_from_time(ddb: Any, bucket: str, clock: WorldClock) -> None:
    _, arn = make_table(ddb, pitr=False)
    clock.advance(DAY)
    now = clock.now()
    code, text = _refusal(lambda: incremental(ddb, arn, bucket, now - HOUR, now))
    # AWS answers an incremental request on a table without PITR with the from-time error, not
    # PointInTimeRecoveryUnavailableException (a probe of the live API; see emulator._check_window).
    assert code == "InvalidExportTimeException" and text.startswith(
        "Incremental export period from time cannot be less than the table creation time")


@pytest.mark.parametrize("request_parts, message", [
    (dict(IncrementalExportSpecification={"ExportFromTime": 1}),
     "Invalid Request: Export Type expected to be Incremental Export when incremental export specification "
     "is provided"),
    (dict(ExportType="FULL_EXPORT", IncrementalExportSpecification={"ExportFromTime": 1}),
     "Invalid Request: When Export Type is Full Export , Incremental Export Specification should not be provided"),
    (dict(ExportType="INCREMENTAL_EXPORT"),
     "Invalid Request: Incremental Export Specification expected when export type is set as Incremental Export"),
    (dict(ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification={}),
     "Invalid Request: ExportFromTime must be provided in IncrementalExportSpecification"),
    (dict(ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification={"ExportViewType": "NEW_IMAGE"}),
     "Invalid Request: ExportFromTime must be provided in IncrementalExportSpecification"),
    (dict(ExportType="INCREMENTAL_EXPORT",
          IncrementalExportSpecification={"ExportFromTime": 1, "ExportViewType": "NEW_IMAGES"}),
     "1 validation error detected: Value 'NEW_IMAGES' at 'incrementalExportSpecification.exportViewType' failed "
     "to satisfy constraint: Member must satisfy enum value set: [NEW_IMAGE, NEW_AND_OLD_IMAGES]"),
    (dict(ExportType="PARTIAL_EXPORT"),
     "1 validation error detected: Value 'PARTIAL_EXPORT' at 'exportType' failed to satisfy constraint: Member "
     "must satisfy enum value set: [FULL_EXPORT, INCREMENTAL_EXPORT]"),
    (dict(ExportType="INCREMENTAL_EXPORT", ExportTime=1, IncrementalExportSpecification={"ExportFromTime": 1}),
     "Invalid Request: ExportTime cannot be provided for an Incremental Export (the local emulator's message; "
     "AWS's is unknown)"),
])
def test_inconsistent_requests_are_validation_errors(ddb: Any, bucket: str, request_parts: dict[str, Any],
                                                     message: str) -> None:
    _, arn = make_table(ddb)
    code, text = _refusal(lambda: ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, **request_parts))
    assert (code, text) == ("ValidationException", message)


def test_client_token_covers_the_window(ddb: Any, bucket: str, clock: WorldClock,
                                        old_table: tuple[str, str, float]) -> None:
    _, arn, _ = old_table
    now = clock.now()
    first = incremental(ddb, arn, bucket, now - HOUR, now, ClientToken="incr-token")
    again = incremental(ddb, arn, bucket, now - HOUR, now, ClientToken="incr-token")
    assert first["ExportArn"] == again["ExportArn"]
    code, _ = _refusal(lambda: incremental(ddb, arn, bucket, now - 2 * HOUR, now, ClientToken="incr-token"))
    assert code == "ExportConflictException"
    code, _ = _refusal(lambda: incremental(ddb, arn, bucket, now - HOUR, now, view="NEW_IMAGE",
                                           ClientToken="incr-token"))
    assert code == "ExportConflictException"
    completed(ddb, first)


def test_an_empty_window_is_a_completed_export_of_empty_files(ddb: Any, s3: Any, bucket: str, clock: WorldClock,
                                                              old_table: tuple[str, str, float]) -> None:
    _, arn, _ = old_table
    now = clock.now()
    done = completed(ddb, incremental(ddb, arn, bucket, now - HOUR, now))
    export = read_incremental_export(s3, bucket, done["ExportManifest"])
    assert done["ItemCount"] == 0 and export.lines == []
    assert done["BilledSizeBytes"] == 10_000_000  # what AWS bills an empty incremental export
    assert all(entry["itemCount"] == 0 and len(export.data[entry["dataFileS3Key"]]) == 20 for entry in export.files)


def test_partiql_writes_are_in_the_window_they_were_made_in(ddb: Any, s3: Any, bucket: str,
                                                             clock: WorldClock) -> None:
    """ExecuteStatement, BatchExecuteStatement and ExecuteTransaction write like PutItem: each
    INSERT, UPDATE and DELETE is in its window's export, numbers in DynamoDB's canonical text."""
    name, arn = make_table(ddb, sort_key=False)  # moto's PartiQL DELETE takes quoted (string) keys only
    clock.advance(10)
    ddb.put_item(TableName=name, Item={"pk": {"S": "updated"}, "v": {"N": "1"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "deleted"}, "v": {"N": "2"}})
    clock.advance(MINUTE)
    start = clock.now()
    ddb.execute_statement(Statement=f"INSERT INTO \"{name}\" VALUE {{'pk': 'inserted', 'v': 15}}")
    clock.advance(MINUTE)
    updated_at = clock.now()
    ddb.batch_execute_statement(Statements=[
        {"Statement": f"UPDATE \"{name}\" SET v = ? WHERE pk = 'updated'", "Parameters": [{"N": "7e1"}]}])
    clock.advance(MINUTE)
    deleted_at = clock.now()
    ddb.execute_transaction(TransactStatements=[{"Statement": f"DELETE FROM \"{name}\" WHERE pk = 'deleted'"}])
    end = start + 15 * MINUTE
    clock.set(end + 1, frozen=True)

    done = completed(ddb, incremental(ddb, arn, bucket, start, end, S3Prefix="partiql"))
    by_key = {c.keys["pk"]: c for c in read_incremental_export(s3, bucket, done["ExportManifest"]).changes()}
    assert {key: (c.old, c.new) for key, c in by_key.items()} == {
        "inserted": (None, {"pk": "inserted", "v": 15}),
        "updated": ({"pk": "updated", "v": 1}, {"pk": "updated", "v": 70}),
        "deleted": ({"pk": "deleted", "v": 2}, None)}
    assert [by_key[k].write_micros for k in ("inserted", "updated", "deleted")] == \
        [round(t * 1_000_000) for t in (start, updated_at, deleted_at)]
    # The stored number is canonical too ("7e1" is 70), as GetItem returns it.
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "updated"}})["Item"]["v"] == {"N": "70"}


def test_a_write_at_a_full_exports_exact_time_is_in_the_window_starting_there_only(
        ddb: Any, s3: Any, bucket: str, clock: WorldClock) -> None:
    """A full export at T and the windows from T meet without overlap: T holds the state just
    before T (as a window's exclusive ExportToTime does), the window from T (inclusive) the write
    made at exactly T. Applied in order they give the table once, each change counted once."""
    name, arn = make_table(ddb)
    clock.advance(10)
    ddb.put_item(TableName=name, Item={"pk": {"S": "before"}, "sk": {"N": "1"}})
    clock.advance(MINUTE)
    t = clock.now()
    ddb.put_item(TableName=name, Item={"pk": {"S": "at-t"}, "sk": {"N": "1"}})
    ddb.delete_item(TableName=name, Key={"pk": {"S": "before"}, "sk": {"N": "1"}})
    clock.advance(20 * MINUTE)

    full = completed(ddb, ddb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="full", ExportTime=datetime.fromtimestamp(t, timezone.utc))[
        "ExportDescription"])
    assert [i["Item"]["pk"]["S"] for i in read_export(s3, bucket, full["ExportManifest"]).items] == ["before"]
    window = completed(ddb, incremental(ddb, arn, bucket, t, t + 15 * MINUTE, S3Prefix="window"))
    changes = read_incremental_export(s3, bucket, window["ExportManifest"]).changes()
    assert sorted((c.keys["pk"], c.old is not None, c.new is not None) for c in changes) == [
        ("at-t", False, True), ("before", True, False)]


@pytest.mark.parametrize("statement, parameters", [
    ("UPDATE \"{name}\" SET v = 5 WHERE pk = 'kept'", []),  # a number literal in SET
    ("DELETE FROM \"{name}\" WHERE pk = ?", [{"S": "kept"}]),  # a parameter in DELETE
])
def test_a_partiql_statement_moto_cannot_run_is_a_validation_exception_not_retried(
        ddb: Any, statement: str, parameters: list[dict[str, str]]) -> None:
    """As DynamoDB answers a statement it cannot run: ValidationException (HTTP 400, which the SDKs
    do not retry), naming the local world's limit; nothing is changed."""
    name, _ = make_table(ddb, sort_key=False)
    ddb.put_item(TableName=name, Item={"pk": {"S": "kept"}, "v": {"N": "1"}})
    text = statement.format(name=name)
    for call in (lambda: ddb.execute_statement(Statement=text, **({"Parameters": parameters} if parameters else {})),
                 lambda: ddb.batch_execute_statement(Statements=[{"Statement": text, **(
                     {"Parameters": parameters} if parameters else {})}])):
        with pytest.raises(ClientError) as caught:
            call()
        error = caught.value.response
        assert error["Error"]["Code"] == "ValidationException"
        assert error["Error"]["Message"].startswith(
            f"the local world's PartiQL (moto) does not support this statement: {text} (")
        assert error["Error"]["Message"].endswith("); docs/local_world.md lists its limits")
        assert (error["ResponseMetadata"]["HTTPStatusCode"], error["ResponseMetadata"]["RetryAttempts"]) == (400, 0)
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "kept"}})["Item"]["v"] == {"N": "1"}
