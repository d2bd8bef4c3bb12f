"""Tables at the scale of a week of 15-minute windows: hundreds of snapshots, manifests shared by
them, thousands of written files. The chain's reads (high-water mark, applied exports, history,
rollback) stay right over a long lineage, and the walks over it read each object once: counted on
the local world's S3 (moto's request recorder over HTTP)."""

from __future__ import annotations

import io
import json
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import AddSnapshotUpdate, SetSnapshotRefUpdate

from ddb_assets.exports.storage import S3Options
from ddb_assets.lake.guards import ChainError, StaleExport, applied_already, applying_snapshot, check_state
from ddb_assets.lake.maintenance import referenced_files
from ddb_assets.lake.record import FULL, INCREMENTAL, ExportRecord, high_water_mark
from ddb_assets.lake.tables import history, rollback
from ddb_assets.lake.unique_keys import duplicate_in_duckdb
from ddb_assets.local.iceberg_catalog import glue_catalog_properties
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import unique

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Orders"
WINDOW = timedelta(minutes=15)
WINDOWS = 300


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _window(number: int, start: datetime) -> ExportRecord:
    return ExportRecord(f"{ARN}/export/w-{number}", f"w-{number}", _iso(start + WINDOW), 10, ARN,
                        export_type=INCREMENTAL, export_from_time=_iso(start), export_to_time=_iso(start + WINDOW))


@pytest.fixture
def long_table(tmp_path: Path) -> tuple[Any, datetime]:
    """A table whose lineage is: window w-0 (applied before the rebuild), the full export that
    rebuilt the table at ``base``, then WINDOWS windows of 15 minutes from ``base`` (w-1 ...);
    its snapshots added in one commit, all reading the first one's manifest list (the walks read
    summaries only). Returns (table, base)."""
    catalog = SqlCatalog("lake", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")
    catalog.create_namespace("ddb_lake")
    table = catalog.create_table(("ddb_lake", "orders"), schema=pa.schema([pa.field("pk", pa.string())]))
    table.append(pa.table({"pk": ["a"]}))
    first = table.current_snapshot()
    base = datetime.now(timezone.utc).replace(second=0, microsecond=0) - WINDOWS * WINDOW - timedelta(hours=2)
    records = [(_window(0, base - WINDOW), "all"),
               (ExportRecord(f"{ARN}/export/full-1", "full-1", _iso(base), 10, ARN, export_type=FULL), "all")]
    records += [(_window(n, base + (n - 1) * WINDOW), "") for n in range(1, WINDOWS + 1)]
    updates: list[Any] = []
    parent = first
    for number, (record, partitions) in enumerate(records, start=1):
        snapshot = Snapshot(snapshot_id=first.snapshot_id + number, parent_snapshot_id=parent.snapshot_id,
                            sequence_number=(first.sequence_number or 0) + number,
                            timestamp_ms=first.timestamp_ms + number, manifest_list=first.manifest_list,
                            summary=Summary(Operation.APPEND, **record.summary("test", partitions)),
                            schema_id=first.schema_id)
        updates += [AddSnapshotUpdate(snapshot=snapshot),
                    SetSnapshotRefUpdate(ref_name="main", type="branch", snapshot_id=snapshot.snapshot_id)]
        parent = snapshot
    catalog.commit_table(table, requirements=(), updates=tuple(updates))
    table.refresh()
    assert len(table.snapshots()) == WINDOWS + 3
    return table, base


def test_the_chain_of_hundreds_of_windows_reads_right(long_table: tuple[Any, datetime]) -> None:
    table, base = long_table
    end = base + WINDOWS * WINDOW
    assert high_water_mark(table) == (_iso(end), f"w-{WINDOWS}")
    # The first window after the rebuild, 300 snapshots back, is held; the window merged before it is not.
    assert applied_already(table, "w-1") and not applied_already(table, "w-0")
    assert check_state(table, _window(1, base)).unchanged
    with pytest.raises(StaleExport, match="w-0"):
        check_state(table, _window(0, base - WINDOW))
    assert applying_snapshot(table, "w-1") == next(s.snapshot_id for s in table.snapshots()
                                                   if s.summary["ddb-assets.export-id"] == "w-1")
    following = check_state(table, _window(WINDOWS + 1, end))
    assert not following.unchanged and following.warnings == []
    with pytest.raises(ChainError, match="missing"):
        check_state(table, _window(WINDOWS + 2, end + WINDOW))

    listed = history(table)
    assert [h["export_id"] for h in listed][1:] == ["w-0", "full-1"] + [f"w-{n}" for n in range(1, WINDOWS + 1)]
    assert [h["current"] for h in listed] == [False] * (WINDOWS + 2) + [True]
    assert not any(h["rolled_back"] for h in listed)


def test_a_rollback_deep_into_a_long_chain_moves_the_mark_and_the_history(long_table: tuple[Any, datetime]) -> None:
    table, base = long_table
    middle = next(s.snapshot_id for s in table.snapshots() if s.summary["ddb-assets.export-id"] == "w-150")
    rollback(table, middle)
    assert high_water_mark(table) == (_iso(base + 150 * WINDOW), "w-150")
    assert applied_already(table, "w-150") and not applied_already(table, "w-151")
    assert not check_state(table, _window(151, base + 150 * WINDOW)).unchanged
    listed = history(table)
    assert [h["export_id"] for h in listed if h["rolled_back"]] == [f"w-{n}" for n in range(151, WINDOWS + 1)]
    assert [h["export_id"] for h in listed if h["current"]] == ["w-150"]


@contextmanager
def _recorded(world: LocalWorld) -> Iterator[list[tuple[str, str]]]:
    """The (method, object key) of each S3 request made inside the block, from moto's recorder."""
    api = f"{world.endpoint}/moto-api/recorder"
    requests.post(f"{api}/reset-recording", timeout=10).raise_for_status()
    requests.post(f"{api}/start-recording", timeout=10).raise_for_status()
    seen: list[tuple[str, str]] = []
    try:
        yield seen
    finally:
        requests.post(f"{api}/stop-recording", timeout=10).raise_for_status()
        for line in requests.get(f"{api}/download-recording", timeout=60).text.splitlines():
            entry = json.loads(line)
            path = unquote(urlparse(entry["url"]).path).lstrip("/")
            seen.append((entry["method"], path.split("/", 1)[1] if "/" in path else ""))
        requests.post(f"{api}/reset-recording", timeout=10)


def test_referenced_files_reads_each_shared_manifest_once(world: LocalWorld, s3: Any, tmp_path: Path) -> None:
    bucket = unique("manifests")
    s3.create_bucket(Bucket=bucket)
    properties = {k: v for k, v in glue_catalog_properties(world.endpoint, world.region, f"s3://{bucket}/lake").items()
                  if k.startswith(("s3.", "py-io-impl"))}
    catalog = SqlCatalog("lake", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"s3://{bucket}/lake",
                         **properties)
    catalog.create_namespace("ddb_lake")
    table = catalog.create_table(("ddb_lake", "orders"), schema=pa.schema([pa.field("pk", pa.string())]))
    for number in range(4):  # fast appends: each snapshot carries the manifests of those before it
        table.append(pa.table({"pk": [f"item-{number}"]}))
    manifests = [m.manifest_path for m in table.current_snapshot().manifests(table.io)]
    data = {e.data_file.file_path for m in table.current_snapshot().manifests(table.io)
            for e in m.fetch_manifest_entry(table.io)}
    assert len(manifests) == 4 and len(data) == 4

    with _recorded(world) as seen:
        found = referenced_files(table)
    assert data | set(manifests) <= found
    gets = Counter(key for method, key in seen if method == "GET")
    reads = [gets[m.split(f"s3://{bucket}/", 1)[1]] for m in manifests]
    # The oldest manifest is in all four snapshots, the newest in one: both read the same, once.
    assert reads[0] >= 1 and reads == [reads[0]] * 4


def test_the_key_check_asks_s3_for_no_written_file_size(world: LocalWorld, s3: Any) -> None:
    bucket = unique("keys")
    s3.create_bucket(Bucket=bucket)
    files, sizes = [], []
    for number in range(6):
        body = io.BytesIO()
        pq.write_table(pa.table({"pk": [f"item-{number}", "item-dup" if number in (2, 4) else f"other-{number}"]}),
                       body)
        s3.put_object(Bucket=bucket, Key=f"data/{number}.parquet", Body=body.getvalue())
        files.append(f"s3://{bucket}/data/{number}.parquet")
        sizes.append(len(body.getvalue()))
    options = S3Options(endpoint_url=world.endpoint, region=world.region)
    with _recorded(world) as seen:
        found = duplicate_in_duckdb(files, ["pk"], s3=options, sizes=sizes)
    assert found == (["item-dup"], 2)
    assert [key for method, key in seen if method == "HEAD"] == []
    assert duplicate_in_duckdb(files, ["pk"], s3=options) == (["item-dup"], 2)  # sizes unknown: asked for
