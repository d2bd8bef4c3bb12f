"""What a lake table records about the exports it applied, and how to read it back.

Each snapshot's summary names the export it applied (``ddb-assets.export-arn``, ``-id``, ``-time``,
``-table-arn``, ``-type``, ``-partitions``, ``-high-water-mark``, ...): the current snapshot's is the
table's state, so a rollback moves it back too. The state begins at the table's latest whole-table
replacement (a full export over every partition, a rebuild): exports applied before it are no part
of the chain any more (``lineage``), so they apply again after it. The table itself records the
DynamoDB table its exports come from (table property ``ddb_assets.source_table_arn``); tables made
before that property existed are read through their current snapshot's ``table-arn`` and adopt the
property on their next commit. Plain reads of a pyiceberg table: nothing here imports pyiceberg.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

SUMMARY_PREFIX = "ddb-assets."
SOURCE_TABLE_PROPERTY = "ddb_assets.source_table_arn"
FULL = "FULL_EXPORT"
INCREMENTAL = "INCREMENTAL_EXPORT"


@dataclass(frozen=True)
class ExportRecord:
    """What a snapshot's summary records about the export it applied."""

    export_arn: str
    export_id: str
    export_time: str | None
    item_count: int
    table_arn: str
    export_type: str = FULL
    output_format: str = "DYNAMODB_JSON"
    source: str = ""  # where the export was read from
    export_from_time: str | None = None  # incremental exports: the window [from, to)
    export_to_time: str | None = None

    @property
    def incremental(self) -> bool:
        return self.export_type == INCREMENTAL

    @property
    def high_water_mark(self) -> str:
        """The point in time the table holds after applying this export: a full export's time, an
        incremental export's ExportToTime."""
        return (self.export_to_time if self.incremental else self.export_time) or ""

    def summary(self, version: str, partitions: str) -> dict[str, str]:
        values = {"export-arn": self.export_arn, "export-id": self.export_id, "export-time": self.export_time or "",
                  "item-count": str(self.item_count), "table-arn": self.table_arn, "export-type": self.export_type,
                  "output-format": self.output_format, "source": self.source, "partitions": partitions,
                  "high-water-mark": self.high_water_mark, "version": version}
        if self.incremental:
            values.update({"export-from-time": self.export_from_time or "", "export-to-time": self.export_to_time or ""})
        return {f"{SUMMARY_PREFIX}{key}": value for key, value in values.items()}


def current_summary(table: Any) -> dict[str, str]:
    """The current snapshot's summary (its ``ddb-assets.*`` entries and pyiceberg's), or {}."""
    snapshot = table.current_snapshot()
    return dict(snapshot.summary.additional_properties) if snapshot is not None and snapshot.summary else {}


def replaces_table(summary: dict[str, str]) -> bool:
    """Does a snapshot (its summary) replace the whole table: a full export committed over every
    partition (a new table's first snapshot, a full export replacing an older one, a rebuild, a
    compaction of such a snapshot)? The table's state begins there: what its ancestors applied is
    no longer in it. A partial backfill (``partitions`` naming some), a merge (``merge``), another
    writer's snapshot (no ``ddb-assets.*`` keys) and a snapshot of a version that recorded no type
    or partitions replace nothing."""
    get = lambda key: summary.get(f"{SUMMARY_PREFIX}{key}", "")  # noqa: E731
    return bool(get("export-id")) and get("export-type") == FULL and get("partitions") == "all"


def ancestors(table: Any) -> Iterator[Any]:
    """The current snapshot and its ancestors, newest first, back to the first snapshot or to one
    whose parent maintenance expired. Parents are looked up in an index of the table's snapshots
    by id, made once per walk at its first step back (a walk that stops at the current snapshot
    makes none): pyiceberg's ``snapshot_by_id`` scans the snapshot list, so a walk by it grows with
    the square of the snapshots kept (a week of 15-minute windows: ~670)."""
    snapshot = table.current_snapshot()
    by_id: dict[int, Any] | None = None
    while snapshot is not None:
        yield snapshot
        if not snapshot.parent_snapshot_id:
            return
        if by_id is None:
            by_id = {s.snapshot_id: s for s in table.snapshots()}
        snapshot = by_id.get(snapshot.parent_snapshot_id)


def state_snapshots(table: Any) -> Iterator[Any]:
    """The current snapshot and its ancestors, newest first, back to the latest one that replaced
    the whole table (``replaces_table``; included), or to the first snapshot when none did. A
    rollback to a snapshot before a replacement walks that older lineage again."""
    for snapshot in ancestors(table):
        yield snapshot
        if snapshot.summary and replaces_table(snapshot.summary.additional_properties):
            return


OPERATION = f"{SUMMARY_PREFIX}operation"  # our snapshots' own kind: "rebuild", "compact" (else an export's)
COMPACT = "compact"  # maintenance's compaction: carries the export record along, applies nothing


def applies_export(summary: dict[str, str]) -> bool:
    """Did the snapshot with this summary apply the export it records (a conversion or a merge),
    rather than carry the record along (a compaction)?"""
    return f"{SUMMARY_PREFIX}export-id" in summary and summary.get(OPERATION) != COMPACT


# The snapshot that applied the export a snapshot records: on a compaction (it carries the record
# of the state it compacted), and on a change history's snapshots (the table's snapshot they record).
APPLIED_BY = f"{SUMMARY_PREFIX}applied-by-snapshot"


def carried_record(table: Any) -> dict[str, str]:
    """The ``ddb-assets.*`` summary entries a snapshot that applies nothing (a compaction) carries
    along: those of the nearest snapshot of the current lineage that records an export (the current
    one, or an ancestor under another writer's snapshot), with APPLIED_BY naming the snapshot that
    applied that export, so the record outlives the expiry of the snapshots under it. {} when no
    snapshot of the lineage records an export."""
    for snapshot in state_snapshots(table):
        summary = dict(snapshot.summary.additional_properties) if snapshot.summary else {}
        if f"{SUMMARY_PREFIX}export-id" not in summary:
            continue
        carried = {key: value for key, value in summary.items() if key.startswith(SUMMARY_PREFIX)}
        if applies_export(summary):  # (a compaction carries its own APPLIED_BY, if its version wrote one)
            carried.setdefault(APPLIED_BY, str(snapshot.snapshot_id))
        return carried
    return {}


def recording_snapshot(table: Any) -> Any | None:
    """The nearest snapshot of the current lineage that records an export (None when none does):
    the one maintenance never expires, so the table's record (its high-water mark, the exports it
    holds) survives."""
    for snapshot in state_snapshots(table):
        if snapshot.summary and f"{SUMMARY_PREFIX}export-id" in snapshot.summary.additional_properties:
            return snapshot
    return None


def lineage(table: Any) -> Iterator[dict[str, str]]:
    """The summaries of the snapshots that make the table's current state (``state_snapshots``),
    newest first: what the chain of exports reads (applied exports, the high-water mark)."""
    for snapshot in state_snapshots(table):
        yield dict(snapshot.summary.additional_properties) if snapshot.summary else {}


def high_water_mark(table: Any) -> tuple[str | None, str | None]:
    """(the point in time the table holds, the export that brought it there), from the summary of
    the current snapshot or its nearest ancestor that records one: a rollback moves it back with the
    snapshot, and a snapshot committed by another writer (a DELETE from Spark or Athena, pyiceberg)
    does not hide it, and nothing before the table's latest whole-table replacement counts (a
    rebuild from a full export holds that export's time, not the windows merged before it).
    (None, None) when no snapshot in the current lineage records an export."""
    for summary in lineage(table):
        mark = summary.get(f"{SUMMARY_PREFIX}high-water-mark") or summary.get(f"{SUMMARY_PREFIX}export-time")
        if mark:
            return mark, summary.get(f"{SUMMARY_PREFIX}export-id")
    return None, None


def source_table_arn(table: Any) -> str | None:
    """The DynamoDB table whose exports this lake table holds: the table property, else (a table
    made before the property existed) the table ARN that the nearest snapshot recording an export
    names (another writer's snapshot does not hide it)."""
    held = table.properties.get(SOURCE_TABLE_PROPERTY)
    if held:
        return held
    return next((arn for arn in (s.get(f"{SUMMARY_PREFIX}table-arn") for s in lineage(table)) if arn), None)


def moment_of(text: str) -> datetime:
    """An ISO-8601 time as an aware datetime in UTC (UTC if it names no zone)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def instant(text: str) -> float:
    """Seconds since the epoch of an ISO-8601 time (UTC if it names no zone)."""
    return moment_of(text).timestamp()


def iso_millis(text: str | None) -> str:
    """An ISO-8601 time as AWS writes export times: UTC, milliseconds, ``Z``
    (``2026-11-30T00:00:00.517Z``); what ``export --from`` takes as it is. '' for none."""
    if not text:
        return ""
    moment = moment_of(text)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def live_rows(summary: dict[str, str] | None) -> int:
    """Rows a snapshot holds: its records less its position deletes (each of ours hides one
    live row: a position is never deleted twice, and no delete file outlives its data file)."""
    if not summary:
        return 0
    return int(summary.get("total-records", 0) or 0) - int(summary.get("total-position-deletes", 0) or 0)
