"""Reading lake tables: a snapshot's schema and data files, history, time travel and rollback.

What the query engines and the CLI need from an Iceberg table, through pyiceberg: which snapshot
(the current one, or one chosen by id or time), its schema (names, types, field ids) and its data
files from pyiceberg's scan plan. Nothing here writes data; ``rollback`` moves the current snapshot
pointer (one catalog commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import pyarrow as pa

from ddb_assets.lake.commit import file_partition_name
from ddb_assets.lake.record import SUMMARY_PREFIX, high_water_mark, iso_millis, source_table_arn
from ddb_assets.lake.record import ancestors, live_rows
from ddb_assets.lake.schema import Column, TableSchema, arrow_type


class SnapshotNotFound(LookupError):
    """No snapshot matches the id or time asked for."""


class NoSnapshotYet(SnapshotNotFound):
    """The table was made after the time asked for: it had no snapshot then."""


class SnapshotsExpired(SnapshotNotFound):
    """The table had a snapshot at the time asked for, but maintenance expired it since."""


@dataclass
class SnapshotView:
    """One snapshot of a table as a reader needs it."""

    name: str
    location: str
    metadata_location: str
    snapshot_id: int | None  # None: the table has no snapshot yet
    fields: list[tuple[int, str, Any]]  # (field id, name, Iceberg type) of the snapshot's schema
    files: list[str]  # data file URIs
    rows: int  # in the data files (position deletes not subtracted)
    deletes: list[str] = field(default_factory=list)  # position-delete file URIs applying to ``files``
    summary: dict[str, str] = field(default_factory=dict)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, arrow_type(kind)) for _, name, kind in self.fields])

    @property
    def export_id(self) -> str:
        return self.summary.get(f"{SUMMARY_PREFIX}export-id", "")


def snapshot_view(table: Any, as_of: str | None = None) -> SnapshotView:
    """The table at ``as_of`` (a snapshot id, or an ISO-8601 time: the snapshot current then), or now."""
    snapshot = resolve_snapshot(table, as_of) if as_of else table.current_snapshot()
    schema = table.schema()
    if snapshot is not None and snapshot.schema_id is not None:
        schema = table.schemas().get(snapshot.schema_id, schema)
    files: list[str] = []
    deletes: dict[str, None] = {}  # ordered, unique
    rows = 0
    if snapshot is not None:
        for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
            files.append(task.file.file_path)
            rows += task.file.record_count
            deletes.update((d.file_path, None) for d in task.delete_files)
    return SnapshotView(name=table.name()[-1], location=table.location(), metadata_location=table.metadata_location,
                        snapshot_id=snapshot.snapshot_id if snapshot else None,
                        fields=[(f.field_id, f.name, f.field_type) for f in schema.fields], files=files, rows=rows,
                        summary=_summary(snapshot), deletes=list(deletes))


def resolve_snapshot(table: Any, as_of: str) -> Any:
    """A snapshot by id, or the one current at an ISO-8601 time (UTC if no zone is given)."""
    text = as_of.strip()
    if text.lstrip("-").isdigit():
        snapshot = table.snapshot_by_id(int(text))
        if snapshot is None:
            raise _no_snapshot(table, text)
        return snapshot
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SnapshotNotFound(f"--as-of {as_of!r}: give a snapshot id or an ISO-8601 time "
                               f"(2026-11-30T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    millis = int(moment.timestamp() * 1000)
    current = None
    for entry in table.metadata.snapshot_log:  # the order snapshots became current
        if entry.timestamp_ms <= millis:
            current = entry.snapshot_id
    if current is None:
        raise _none_at(table, moment)
    return table.snapshot_by_id(current)


def _no_snapshot(table: Any, snapshot_id: object) -> SnapshotNotFound:
    # An id the table does not hold was mistyped, or was one of its snapshots that maintenance
    # expired since: telling them apart would mean reading every earlier metadata file.
    return SnapshotNotFound(f"table {table.name()[-1]} has no snapshot {snapshot_id}: not one of its snapshots, or "
                            f"one that maintenance expired since (see `ddb-assets history` for those kept)")


def _none_at(table: Any, moment: datetime) -> SnapshotNotFound:
    """Why no snapshot was current at ``moment``: the table had none yet (NoSnapshotYet), or the
    one it had then was expired since (SnapshotsExpired: expiry drops a snapshot's entries from the
    snapshot log too). Told apart by the table's metadata log: the metadata file current at
    ``moment`` names the snapshot that was current then."""
    millis = int(moment.timestamp() * 1000)
    name = table.name()[-1]
    # Said as `history` shows times (UTC, ms, Z): the precision the snapshot log is compared at.
    when = iso_millis(moment.isoformat())
    then = [entry for entry in table.metadata.metadata_log if entry.timestamp_ms <= millis]
    current_then = _current_snapshot_in(table, then[-1].metadata_file) if then else None
    if current_then is None or table.snapshot_by_id(current_then) is not None:
        return NoSnapshotYet(f"table {name} had no snapshot yet at {when}")
    oldest = min(table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number or 0), default=None)
    left = (f"; the oldest snapshot still there is {oldest.snapshot_id}, committed at "
            f"{iso_millis(datetime.fromtimestamp(oldest.timestamp_ms / 1000, timezone.utc).isoformat())}"
            if oldest is not None else "")
    return SnapshotsExpired(f"table {name} existed at {when}, but its snapshot of that time ({current_then}) was "
                            f"expired by maintenance{left} (see `ddb-assets history`)")


def _current_snapshot_in(table: Any, metadata_file: str) -> int | None:
    """The current snapshot id an earlier metadata file of ``table`` records (None: none, or the
    file cannot be read any more)."""
    from pyiceberg.serializers import FromInputFile

    try:
        return FromInputFile.table_metadata(table.io.new_input(metadata_file)).current_snapshot_id
    except (OSError, ValueError):
        return None


def _summary(snapshot: Any) -> dict[str, str]:
    if snapshot is None or snapshot.summary is None:
        return {}
    return {"operation": str(snapshot.summary.operation.value), **snapshot.summary.additional_properties}


def action(summary: dict[str, str]) -> str:
    """What made a snapshot (its summary, with ``operation``): ``convert`` (a full export),
    ``rebuild``, ``merge`` (an incremental export), ``compaction`` (``maintain``: the same rows,
    the export it names applied once); in a change history (``<table>_changes``), ``history
    append`` (one export's changes) and ``history rollback`` (emptied: the table was rolled back or
    rebuilt past every export it recorded); else the Iceberg operation of another writer's snapshot."""
    get = lambda key: summary.get(f"{SUMMARY_PREFIX}{key}", "")  # noqa: E731
    own = get("operation")
    if own == "compact":
        return "compaction"
    if own == "rebuild":
        return "rebuild"
    if get("emptied"):
        return "history rollback"
    if get("export-id") and get("partitions") == "history":
        return "history append"
    if get("export-id"):
        return "merge" if get("export-type") == "INCREMENTAL_EXPORT" else "convert"
    return summary.get("operation", "")


def history(table: Any) -> list[dict[str, Any]]:
    """Every snapshot still in the table's metadata, oldest first, with the export it applied:
    dicts of ``snapshot_id``, ``parent_id``, ``committed_at`` (ISO-8601, ms, UTC), ``operation``
    (Iceberg's), ``action`` (``action()``), the export's id, type, time and high-water mark, the
    merge's upserts and deletes, ``partitions``, ``rows``, ``files_added``, ``files_removed`` (data
    and delete files),
    ``current``, and ``rolled_back``: not the current snapshot nor one of its ancestors (a
    rollback moved the table back before it; its export may be applied again later)."""
    current = table.current_snapshot()
    chain = {snapshot.snapshot_id for snapshot in ancestors(table)}
    halves = two_step_rebuilds(table)
    out = []
    for snapshot in sorted(table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number or 0)):
        summary = _summary(snapshot)
        step = "rebuild 1/2" if snapshot.snapshot_id in halves else \
            "rebuild 2/2" if snapshot.snapshot_id in halves.values() else None
        out.append({
            "snapshot_id": snapshot.snapshot_id,
            "parent_id": snapshot.parent_snapshot_id,
            "committed_at": datetime.fromtimestamp(snapshot.timestamp_ms / 1000, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "operation": summary.get("operation", ""),
            "action": step or action(summary),
            "export_id": summary.get(f"{SUMMARY_PREFIX}export-id", ""),
            "export_type": summary.get(f"{SUMMARY_PREFIX}export-type", ""),
            "export_time": summary.get(f"{SUMMARY_PREFIX}export-time", ""),
            "high_water_mark": summary.get(f"{SUMMARY_PREFIX}high-water-mark", "")
            or summary.get(f"{SUMMARY_PREFIX}export-time", ""),
            "upserts": int(summary.get(f"{SUMMARY_PREFIX}upserts", 0) or 0),
            "deletes": int(summary.get(f"{SUMMARY_PREFIX}deletes", 0) or 0),
            "partitions": summary.get(f"{SUMMARY_PREFIX}partitions", ""),
            "rows": live_rows(summary),
            # Data and delete files (merge-on-read's position deletes; a compaction folding them),
            # as the convert's summary counts them.
            "files_added": int(summary.get("added-data-files", 0)) + int(summary.get("added-delete-files", 0)),
            "files_removed": int(summary.get("deleted-data-files", 0)) + int(summary.get("removed-delete-files", 0)),
            "current": current is not None and snapshot.snapshot_id == current.snapshot_id,
            "rolled_back": snapshot.snapshot_id not in chain,
        })
    return out


def two_step_rebuilds(table: Any) -> dict[int, int]:
    """Rebuilds that earlier builds of ddb-assets committed as two snapshots in one commit: the old
    files out (``rebuild`` in its summary, no file added), then a child adding the new ones for the
    same export. First step -> second step, by snapshot id."""
    children: dict[int, Any] = {s.parent_snapshot_id: s for s in table.snapshots() if s.parent_snapshot_id}
    out = {}
    for snapshot in table.snapshots():
        summary = _summary(snapshot)
        child = children.get(snapshot.snapshot_id)
        if summary.get(f"{SUMMARY_PREFIX}operation") == "rebuild" and not int(summary.get("added-data-files", 0)) \
                and child is not None and _summary(child).get(f"{SUMMARY_PREFIX}export-id") == \
                summary.get(f"{SUMMARY_PREFIX}export-id"):
            out[snapshot.snapshot_id] = child.snapshot_id
    return out


class RollbackRefused(ValueError):
    """A rollback that would leave the table reading wrong values (the message says why and what to do)."""


def rollback(table: Any, snapshot_id: int,
             on_event: Callable[[str, dict], None] = lambda kind, info: None) -> Any:  # type: ignore[type-arg]
    """Make ``snapshot_id`` (an ancestor of the current snapshot) current again; one commit, which
    ``on_event`` hears of (``committing`` before it, ``committed`` with ``snapshot_id`` and ``said``).

    Raises SnapshotNotFound, and RollbackRefused for a snapshot from before a rebuild: a rollback
    moves the snapshot pointer only, and the rebuild's schema gave every column a new field id,
    so the older snapshot's files would read as rows of nulls under it. The current snapshot
    itself is left as it is: nothing is committed (a commit would only add a metadata file)."""
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None:
        raise _no_snapshot(table, snapshot_id)
    current = table.current_snapshot()
    if current is not None and current.snapshot_id == snapshot_id:
        return table
    second = two_step_rebuilds(table).get(snapshot_id)
    if second is not None:
        raise RollbackRefused(
            f"table {table.name()[-1]}: snapshot {snapshot_id} is the first step of a rebuild (the old files "
            f"removed, no rows yet; earlier versions made a rebuild in two snapshots): roll back to its second "
            f"step, snapshot {second}, the rebuilt table")
    schemas = table.schemas()
    then = schemas.get(snapshot.schema_id) if snapshot.schema_id is not None else None
    now = {f.field_id: f.name for f in table.schema().fields}
    if then is not None and any(now.get(f.field_id) != f.name for f in then.fields):
        raise RollbackRefused(
            f"table {table.name()[-1]}: snapshot {snapshot_id} was committed before the table was rebuilt (its "
            f"columns have other field ids), so after a rollback its rows would read as nulls; convert the export "
            f"it holds again with --rebuild instead (`ddb-assets history` names it)")
    on_event("committing", {})
    try:
        table.manage_snapshots().rollback_to_snapshot(snapshot_id).commit()
    except ValueError as exc:
        raise SnapshotNotFound(f"table {table.name()[-1]}: {exc}") from None
    on_event("committed", {"snapshot_id": snapshot_id,
                           "said": f"table {table.name()[-1]} is at snapshot {snapshot_id} again"})
    table.refresh()
    return table


def partition_rows(table: Any) -> dict[str, int]:
    """Rows per partition name in the current snapshot (from the manifests: no data file is read)."""
    from pyiceberg.manifest import ManifestContent

    snapshot = table.current_snapshot()
    out: dict[str, int] = {}
    if snapshot is None:
        return out
    specs, schema = table.specs(), table.schema()
    for manifest in snapshot.manifests(table.io):
        # A position-delete file hides its record count of rows of its own partition (merge-on-read).
        sign = 1 if manifest.content == ManifestContent.DATA else -1
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            name = file_partition_name(entry.data_file, specs, schema)
            out[name] = out.get(name, 0) + sign * entry.data_file.record_count
    return dict(sorted((name, rows) for name, rows in out.items() if rows))  # a partition all deleted holds none


def column_sources(table: Any) -> dict[int, Column]:
    """The column mapping by field id (lake/schema.py), or {} for a table ddb_assets did not
    convert (a report table)."""
    try:
        stored = TableSchema.from_iceberg(table.schema(), table.properties, table.metadata.last_column_id)
    except ValueError:
        return {}
    return stored.by_id()


def describe(table: Any, catalog: str) -> dict[str, Any]:
    """The stable description ``ddb-assets tables --format json`` prints for one table: what
    earlier versions printed, plus ``high_water_mark``, ``source_table_arn``, and each column's and
    partition field's source attribute (``source`` / ``attribute``: attribute path, descriptor,
    encoding; null for a table ddb_assets did not convert)."""
    snapshot = table.current_snapshot()
    summary = _summary(snapshot)
    spec = table.spec()
    schema = table.schema()
    sources = column_sources(table)
    return {
        "identifier": ".".join(table.name()),
        "catalog": catalog,
        "location": table.location(),
        "metadata_location": table.metadata_location,
        "current_snapshot_id": snapshot.snapshot_id if snapshot else None,
        "rows": live_rows(summary),
        "data_files": int(summary.get("total-data-files", 0)),
        "export_id": summary.get(f"{SUMMARY_PREFIX}export-id") or None,
        "export_time": summary.get(f"{SUMMARY_PREFIX}export-time") or None,
        "high_water_mark": iso_millis(high_water_mark(table)[0]) or None,
        "source_table_arn": source_table_arn(table),
        "partition_spec": [{"name": f.name, "transform": str(f.transform),
                            "source": schema.find_field(f.source_id).name if f.source_id in schema._lazy_id_to_field
                            else None,
                            "attribute": _source(sources.get(f.source_id))}
                           for f in spec.fields],
        "schema": [{"id": f.field_id, "name": f.name, "type": str(f.field_type),
                    "source": _source(sources.get(f.field_id))} for f in schema.fields],
    }


def _source(column: Column | None) -> dict[str, Any] | None:
    if column is None:
        return None
    out = {"attribute": column.attribute, "path": list(column.path), "descriptor": column.descriptor,
           "encoding": column.encoding, "text": column.source}
    return {**out, **({"element": column.element} if column.element else {}), **({"unit": column.unit} if column.unit else {})}
