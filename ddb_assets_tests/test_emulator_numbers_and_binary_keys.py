"""The local world keeps numbers and binary keys as DynamoDB does, over HTTP like a user's client.

DynamoDB stores one text per number (``"1.0"`` is ``"1"``, ``"1e3"`` is ``"1000"``) and refuses
numbers beyond its range; binary values are bytes on the API and base64 in DynamoDB JSON exports.
Each test writes through the API, exports (full and incremental), and where it says so merges the
incremental export into a lake table and reconciles it with a fresh full export.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ddb_assets.lake.catalog import CatalogConfig
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.reconcile import reconcile
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import unique, wait_done
from ddb_assets_tests.independent_reader import read_export, read_incremental_export

WINDOW = 15 * 60


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class KeyedTable:
    """A table with the given key types in the local world, its exports, and a lake fed from them."""

    def __init__(self, world: LocalWorld, clock: WorldClock, tmp: Path, pk: str, sk: str | None):
        self.world, self.clock, self.lake = world, clock, tmp / "lake"
        self.ddb, self.s3 = world.client("dynamodb"), world.client("s3")
        self.name, self.bucket = unique("keys"), unique("keys")
        self.s3.create_bucket(Bucket=self.bucket)
        schema = [("pk", pk, "HASH")] + ([("sk", sk, "RANGE")] if sk else [])
        self.key_attributes = [name for name, _, _ in schema]
        self.arn = self.ddb.create_table(
            TableName=self.name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": n, "KeyType": k} for n, _, k in schema],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in schema],
        )["TableDescription"]["TableArn"]
        self.ddb.update_continuous_backups(TableName=self.name, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True})

    def put(self, **item: Any) -> None:
        self.ddb.put_item(TableName=self.name, Item=item)

    def full(self, at: float, prefix: str) -> dict[str, Any]:
        started = self.ddb.export_table_to_point_in_time(TableArn=self.arn, S3Bucket=self.bucket, S3Prefix=prefix,
                                                         ExportTime=at)["ExportDescription"]
        return self._done(started)

    def incremental(self, start: float, end: float) -> dict[str, Any]:
        started = self.ddb.export_table_to_point_in_time(
            TableArn=self.arn, S3Bucket=self.bucket, S3Prefix="inc", ExportType="INCREMENTAL_EXPORT",
            IncrementalExportSpecification={"ExportFromTime": start, "ExportToTime": end,
                                            "ExportViewType": "NEW_AND_OLD_IMAGES"})["ExportDescription"]
        return self._done(started)

    def _done(self, started: dict[str, Any]) -> dict[str, Any]:
        done = wait_done(self.ddb, started["ExportArn"])
        assert done["ExportStatus"] == "COMPLETED", done
        return done

    def full_items(self, done: dict[str, Any]) -> list[dict[str, Any]]:
        """The full export's items as DynamoDB JSON, exactly as written (number text included)."""
        items = [line["Item"] for line in read_export(self.s3, self.bucket, done["ExportManifest"]).items]
        return sorted(items, key=repr)

    def incremental_lines(self, done: dict[str, Any]) -> list[dict[str, Any]]:
        lines = read_incremental_export(self.s3, self.bucket, done["ExportManifest"]).lines
        return sorted(({k: v for k, v in line.items() if k != "Metadata"} for line in lines), key=repr)

    def convert(self, done: dict[str, Any], table: str) -> Any:
        with self.world.environment():
            return convert_export(f"s3://{self.bucket}/{done['ExportManifest']}", str(self.lake / table),
                                  ConvertOptions(workers=1, catalog=CatalogConfig(),
                                                 key_attributes=tuple(self.key_attributes)))

    def merged_equals_a_fresh_full_export(self, base: dict[str, Any], window: dict[str, Any], end: float) -> int:
        """Convert ``base``, merge ``window`` into it, compare with a full export at ``end``; the
        merged table's row count."""
        self.convert(base, "t")
        merged = self.convert(window, "t")
        assert merged.merge is not None and merged.merge.commit is not None
        check = self.convert(self.full(end, "check"), "t_check")
        reconciled = reconcile(merged.commit.table, check.commit.table, self.key_attributes)
        assert reconciled.equal, reconciled.describe()
        return reconciled.table_rows


# -- numbers ------------------------------------------------------------------------------------


def test_numbers_are_stored_and_returned_in_dynamodbs_text(world: LocalWorld, clock: WorldClock,
                                                           tmp_path: Path) -> None:
    t = KeyedTable(world, clock, tmp_path, "N", "N")
    t.put(pk={"N": "+007"}, sk={"N": "1e3"}, v={"N": "-0.50"}, z={"N": "-0.0"}, s={"NS": ["1.0", "2E1"]},
          m={"M": {"x": {"N": "1.10"}, "l": {"L": [{"N": "3.000"}, {"N": "0.00012e2"}]}}})
    expected = {"pk": {"N": "7"}, "sk": {"N": "1000"}, "v": {"N": "-0.5"}, "z": {"N": "0"},
                "m": {"M": {"x": {"N": "1.1"}, "l": {"L": [{"N": "3"}, {"N": "0.012"}]}}}}
    [scanned] = t.ddb.scan(TableName=t.name)["Items"]
    assert {k: v for k, v in scanned.items() if k != "s"} == expected and sorted(scanned["s"]["NS"]) == ["1", "20"]
    t.put(pk={"N": "7.0"}, sk={"N": "1000.00"}, v={"N": "-0.500"})  # the same item, rewritten
    assert t.ddb.scan(TableName=t.name)["Items"] == [{"pk": {"N": "7"}, "sk": {"N": "1000"}, "v": {"N": "-0.5"}}]
    t.ddb.update_item(TableName=t.name, Key={"pk": {"N": "07"}, "sk": {"N": "1E+3"}},
                      UpdateExpression="ADD v :half", ExpressionAttributeValues={":half": {"N": "1.50"}})
    got = t.ddb.get_item(TableName=t.name, Key={"pk": {"N": "7"}, "sk": {"N": "1000"}})["Item"]
    assert got["v"] == {"N": "1"}  # -0.5 + 1.50 is 1.00 in Decimal arithmetic; DynamoDB says "1"


@pytest.mark.parametrize(("value", "message"), [
    ({"N": "1" * 39}, "more than 38 significant digits"),
    ({"N": "1e126"}, "Number overflow"),
    ({"N": "-1E+126"}, "Number overflow"),
    ({"N": "1e-131"}, "Number underflow"),
    ({"N": "9.99999999999999999999999999999999999999E+125"}, "more than 38 significant digits"),
    ({"NS": ["1", "1e200"]}, "Number overflow"),
    ({"M": {"deep": {"L": [{"N": "1e-200"}]}}}, "Number underflow"),
    ({"NS": ["1", "1.0"]}, "contains duplicates"),
])
def test_numbers_dynamodb_cannot_hold_are_refused_and_nothing_is_stored(
        world: LocalWorld, clock: WorldClock, tmp_path: Path, value: dict[str, Any], message: str) -> None:
    t = KeyedTable(world, clock, tmp_path, "S", None)
    with pytest.raises(ClientError) as put:
        t.put(pk={"S": "a"}, v=value)
    with pytest.raises(ClientError) as update:
        t.ddb.update_item(TableName=t.name, Key={"pk": {"S": "b"}}, UpdateExpression="SET v = :v",
                          ExpressionAttributeValues={":v": value})
    for refused in (put, update):
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert message in refused.value.response["Error"]["Message"]
    assert t.ddb.scan(TableName=t.name)["Items"] == []


def test_exports_hold_canonical_numbers_and_a_merge_equals_a_fresh_full_export(
        world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    t = KeyedTable(world, clock, tmp_path, "N", "N")
    edges = ["1E-130", "-9.9999999999999999999999999999999999999E+125", "12345678901234567890123456789012345678"]
    t.put(pk={"N": "1"}, sk={"N": "1"}, v={"N": "1.0"})
    t.put(pk={"N": "2"}, sk={"N": "1e3"}, v={"N": "0.0"})
    t.put(pk={"N": "3.50"}, sk={"N": "-0"}, v={"NS": [f"{e}" for e in edges]})
    clock.advance(10)
    start = clock.now()
    base = t.full(start, "base")
    assert t.full_items(base) == sorted([
        {"pk": {"N": "1"}, "sk": {"N": "1"}, "v": {"N": "1"}},
        {"pk": {"N": "2"}, "sk": {"N": "1000"}, "v": {"N": "0"}},
        {"pk": {"N": "3.5"}, "sk": {"N": "0"}, "v": {"NS": edges}},
    ], key=repr)

    clock.advance(60)
    t.put(pk={"N": "1.0"}, sk={"N": "1.00"}, v={"N": "2.50"})  # the item (1, 1) again
    t.ddb.delete_item(TableName=t.name, Key={"pk": {"N": "2"}, "sk": {"N": "1000"}})  # stored as written "1e3"
    t.put(pk={"N": "4e0"}, sk={"N": "00.10"}, v={"N": "-0.0"})
    clock.set(start + WINDOW + 1, frozen=True)
    window = t.incremental(start, start + WINDOW)
    assert t.incremental_lines(window) == sorted([
        {"Keys": {"pk": {"N": "1"}, "sk": {"N": "1"}}, "OldImage": {"pk": {"N": "1"}, "sk": {"N": "1"}, "v": {"N": "1"}},
         "NewImage": {"pk": {"N": "1"}, "sk": {"N": "1"}, "v": {"N": "2.5"}}},
        {"Keys": {"pk": {"N": "2"}, "sk": {"N": "1000"}},
         "OldImage": {"pk": {"N": "2"}, "sk": {"N": "1000"}, "v": {"N": "0"}}},
        {"Keys": {"pk": {"N": "4"}, "sk": {"N": "0.1"}}, "NewImage": {"pk": {"N": "4"}, "sk": {"N": "0.1"}, "v": {"N": "0"}}},
    ], key=repr)
    assert t.merged_equals_a_fresh_full_export(base, window, start + WINDOW) == 3


# -- binary keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pk", "sk"), [("B", None), ("B", "B"), ("S", "B"), ("B", "N"), ("N", "S")])
def test_items_with_keys_of_every_type_are_written_read_deleted_and_exported(
        world: LocalWorld, clock: WorldClock, tmp_path: Path, pk: str, sk: str | None) -> None:
    t = KeyedTable(world, clock, tmp_path, pk, sk)
    samples = {"S": ["a", "é"], "N": ["1", "2.5"], "B": [b"\x00", b"\xff\x00"]}
    exported = {"S": lambda v: v, "N": lambda v: v, "B": b64}

    def key(i: int, j: int) -> dict[str, Any]:
        out = {"pk": {pk: samples[pk][i]}}  # boto3 sends bytes as base64 on the wire
        if sk:
            out["sk"] = {sk: samples[sk][j]}
        return out

    keys = [(i, j) for i in range(2) for j in (range(2) if sk else [0])]
    for i, j in keys:
        t.put(**key(i, j), v={"B": b"value \x01"})  # no HTTP 500: botocore would retry, then raise
    assert len(t.ddb.scan(TableName=t.name)["Items"]) == len(keys)
    assert t.ddb.get_item(TableName=t.name, Key=key(1, 0))["Item"]["v"] == {"B": b"value \x01"}
    t.ddb.delete_item(TableName=t.name, Key=key(0, 0))
    clock.advance(1)
    items = t.full_items(t.full(clock.now(), "full"))

    def exported_key(i: int, j: int) -> dict[str, Any]:
        out = {"pk": {pk: exported[pk](samples[pk][i])}}
        if sk:
            out["sk"] = {sk: exported[sk](samples[sk][j])}
        return out

    assert items == sorted(({**exported_key(i, j), "v": {"B": b64(b"value \x01")}} for i, j in keys[1:]), key=repr)


def test_a_binary_key_table_exports_incrementally_and_merges_equal_to_a_fresh_full_export(
        world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    t = KeyedTable(world, clock, tmp_path, "B", "B")
    keys = [b"\x00", b"\x00\x00", b"\xff", b"a", "é".encode()]
    for k in keys:
        t.put(pk={"B": k}, sk={"B": b"\x01"}, v={"S": f"first {k!r}"})
    clock.advance(10)
    start = clock.now()
    base = t.full(start, "base")
    assert t.full_items(base) == sorted(({"pk": {"B": b64(k)}, "sk": {"B": b64(b"\x01")}, "v": {"S": f"first {k!r}"}}
                                         for k in keys), key=repr)
    clock.advance(60)
    t.put(pk={"B": b"\x00"}, sk={"B": b"\x01"}, v={"S": "changed"}, tags={"BS": [b"\x00", b"\x01"]})
    t.ddb.delete_item(TableName=t.name, Key={"pk": {"B": b"\xff"}, "sk": {"B": b"\x01"}})
    t.put(pk={"B": b"\x00\x00\x00"}, sk={"B": b"\x00"}, v={"S": "new"})
    clock.set(start + WINDOW + 1, frozen=True)
    window = t.incremental(start, start + WINDOW)
    lines = t.incremental_lines(window)
    assert sorted(line["Keys"]["pk"]["B"] for line in lines) == sorted(map(b64, [b"\x00", b"\xff", b"\x00\x00\x00"]))
    changed = next(line for line in lines if line["Keys"]["pk"]["B"] == b64(b"\x00"))
    assert changed["NewImage"]["v"] == {"S": "changed"} and sorted(changed["NewImage"]["tags"]["BS"]) == ["AA==", "AQ=="]
    deleted = next(line for line in lines if line["Keys"]["pk"]["B"] == b64(b"\xff"))
    assert "NewImage" not in deleted and deleted["OldImage"]["v"] == {"S": "first " + repr(b"\xff")}
    assert t.merged_equals_a_fresh_full_export(base, window, start + WINDOW) == len(keys)
