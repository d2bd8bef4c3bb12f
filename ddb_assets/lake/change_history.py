"""The change history of a lake table: ``<table>_changes``, an append-only Iceberg table with one
row per change of every incremental export applied to the table (opt-in: ``history: true``).

Columns, in order: the table's key columns (as the table names and types them); ``operation``;
``write_time`` (``Metadata.WriteTimestampMicros``, timestamp with time zone, UTC, microseconds);
``export_id``, ``export_arn``, ``export_to_time`` (the window's end, the table's high-water mark
after it); then every column of the table twice, ``new_<column>`` (the image after the change,
null for a REMOVE) and ``old_<column>`` (the image before the window, null for an INSERT and
always under the NEW_IMAGE view), flattened exactly as the table's columns are. Plain prefixed
columns rather than two structs: every engine (DuckDB, Athena, Spark, BI tools) reads, filters and
compares them without struct syntax, ``SELECT *`` shows them, and a new attribute is one more
top-level column.

``operation``: REMOVE for a delete; for an upsert, under NEW_AND_OLD_IMAGES, MODIFY when the line
carries the old image and INSERT when it has none (the key did not exist before the window); under
NEW_IMAGE DynamoDB does not say which, so UPSERT. An item inserted and deleted inside one window
is in no export, hence in no history. A full export adds no rows: the history starts with the
first incremental export applied while it is on (the table's state at the full export is the
table's own snapshot, ``query --as-of``).

Appended after the export's merge committed, one snapshot per application: its summary records
the export (lake/commit.py's ``ExportRecord``) and the table's snapshot that applied it.
**The history follows the table's chain**: its current snapshot holds the rows of each application
in the table's current chain exactly once. **Idempotent**: an application the history records is
not appended again. **After a rollback** of the table, the next append first rolls the history back
to its newest snapshot recording an application the table still holds (emptied when none is), so
an export re-applied afterwards is appended again, once; the rolled-back rows stay readable in the
history's earlier snapshots (time travel) until maintenance expires them. **Expiry un-applies
nothing**: what the table holds is read from the snapshots its metadata still has, a compaction
standing for the snapshot that applied the export it records (lake/record.py ``carried_record``);
a history snapshot is dropped only when the table's chain shows its application gone, never
because the part of the chain that held it expired. **Catching up**: when an
append failed after its merge committed, the next run appends every application of the table's
chain after the newest one the history records, oldest first, read again from the source the
table's snapshot recorded. Changes written before the table's mark when an export was applied (an
overlapping window applied by write time) are skipped, as its merge skipped them. The export is read
a second time for this (its old images are not part of the merge), in two passes: the profile of
both images first, which plans the columns by the table's schema evolution policy (a new
attribute appends ``new_``/``old_`` columns), then the rows. The rows pass uses the pieces the
profile pass parsed when they fit in KEPT_BYTES (256 MiB of Arrow data: a window's export usually
does; it is then fetched once more for the history, not twice), else reads the export again, so
memory stays bounded.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.buffers import ByteArena, Text
from ddb_assets.exports.changes import DELETE, ChangeImages, incremental_images
from ddb_assets.exports.decode import carry_deep_values, detect_dictionary_maps, parse_items
from ddb_assets.exports.reader import Export, open_export
from ddb_assets.exports.storage import S3Options, resolve
from ddb_assets.lake.commit import COMMIT_ATTEMPTS, SUMMARY_PREFIX, TABLE_PROPERTIES, append_files, instant
from ddb_assets.lake.evolution import TablePlan, plan_table
from ddb_assets.lake.file_stats import metrics_properties
from ddb_assets.lake.flatten import flatten_items
from ddb_assets.lake.profile import Profile, profile_items
from ddb_assets.lake.record import APPLIED_BY, COMPACT, OPERATION, ancestors, applies_export, lineage, \
    state_snapshots
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.writer import FileTarget, PartitionedWriter

SUFFIX = "_changes"
NEW, OLD = "new_", "old_"
HISTORY_OF = f"{SUMMARY_PREFIX}history-of"  # table property: which table this is the history of
EMPTIED = f"{SUMMARY_PREFIX}emptied"  # history snapshot summary: rolled back past every export it recorded
CHANGE_COLUMNS = ("operation", "write_time", "export_id", "export_arn", "export_to_time")
TIME = pa.timestamp("us", tz="UTC")


class HistoryError(RuntimeError):
    """The change history could not be appended (the table's merge itself is committed)."""


@dataclass
class HistoryResult:
    table: Any  # the pyiceberg history table (None when nothing was to append and it does not exist)
    appended: list[tuple[str, int]] = field(default_factory=list)  # (export id, rows), oldest first
    # When nothing was appended because the export's window ends before the history's first window
    # began (the history records from when it was turned on): that first window's start.
    began_after: str | None = None

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.appended)


def history_name(table_name: str) -> str:
    return f"{table_name}{SUFFIX}"


def record_history(catalog: Any, identifier: tuple[str, str], export: Export, *, s3: S3Options | None = None,
                   compression: str = "zstd", piece_bytes: int = 32 << 20) -> HistoryResult:
    """Append ``export`` (an incremental export the table ``identifier`` has applied) to the
    table's change history, after any export the history is missing before it. Raises HistoryError
    naming the export and why (an unreadable source, a name taken by another table)."""
    from ddb_assets.lake.catalog import load_table

    namespace, name = identifier
    main = load_table(catalog, namespace, name)
    if main is None:
        raise HistoryError(f"table {name} does not exist")
    history = load_table(catalog, namespace, history_name(name))
    if history is not None and history.properties.get(HISTORY_OF) != name:
        raise HistoryError(f"table {history_name(name)} exists and is not the change history of {name}: rename one "
                           f"of them (--table-name) or turn the history off")
    state = _table_state(main)
    if history is not None:
        history = _follow_the_table(history, state)
    result = HistoryResult(history)
    for application in _pending(history, state.applications, export):
        export_id, source = application.export_id, application.source
        try:
            pending = export if export_id == export.export_id else open_export(source, s3)
        except Exception as exc:  # noqa: BLE001 - any reason the old export cannot be read again
            raise HistoryError(f"the change history of {name} lacks export {export_id}, applied before; reading it "
                               f"again from {source} failed ({exc}). Restore the export there, or drop "
                               f"{history_name(name)} to start the history anew") from None
        stored = TableSchema.from_iceberg(main.schema(), main.properties, main.metadata.last_column_id)
        table, rows = _append(catalog, (namespace, history_name(name)), main, stored, pending, application, s3,
                              compression, piece_bytes)
        result.table = table
        if rows is not None:
            result.appended.append((export_id, rows))
    if not result.appended and history is not None:
        began, ends = _history_began(history), export.summary.export_to_time
        if began and ends and instant(ends) <= instant(began):
            result.began_after = began
    return result


@dataclass(frozen=True)
class _Application:
    """One incremental export as the table's current chain applied it."""

    snapshot_id: int  # the table's snapshot that merged it
    export_id: str
    source: str
    export_from_time: str
    export_to_time: str
    mark_before: str | None  # the table's high-water mark before it (its merge skipped changes older)


@dataclass
class _TableState:
    """What the table's current state holds, as the history's snapshots are matched against it.
    Read from the snapshots its metadata still has: once maintenance (or another engine) expired the
    older part of the chain, a compaction's record (its export and APPLIED_BY, the snapshot that
    applied it) says what the state under it held; expiring snapshots never un-applies an export."""

    applications: list[_Application]  # the applications the chain still shows, oldest first
    held: set[str]  # ids of the table's snapshots whose application the state holds
    carried: set[str]  # export ids compactions carry without naming their merge (before APPLIED_BY)
    cut_after: tuple[int, int] | None  # the chain's oldest snapshot, when its parent expired: its order
    known: dict[str, tuple[int, int]]  # every snapshot in the metadata: id -> order (sequence number, ms)


def _order(snapshot: Any) -> tuple[int, int]:
    return snapshot.sequence_number or 0, snapshot.timestamp_ms


def _table_state(main: Any) -> _TableState:
    """The table's applications and what its state holds: since its latest whole-table replacement
    (lake/record.py; windows merged before a rebuild are not in it), or since the oldest snapshot
    maintenance left."""
    chain = list(state_snapshots(main))
    applications: list[_Application] = []
    held: set[str] = set()
    carried: set[str] = set()
    mark: str | None = None
    for snapshot in reversed(chain):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        export_id = summary.get(f"{SUMMARY_PREFIX}export-id")
        if summary.get(f"{SUMMARY_PREFIX}export-type") == "INCREMENTAL_EXPORT" and applies_export(summary):
            applications.append(_Application(snapshot.snapshot_id, summary[f"{SUMMARY_PREFIX}export-id"],
                                             summary.get(f"{SUMMARY_PREFIX}source", ""),
                                             summary.get(f"{SUMMARY_PREFIX}export-from-time", ""),
                                             summary.get(f"{SUMMARY_PREFIX}export-to-time", ""), mark))
            held.add(str(snapshot.snapshot_id))
        elif export_id and summary.get(OPERATION) == COMPACT:
            # A compaction applied nothing: it holds what the snapshot it names applied (and, through
            # it, every application before), also once that snapshot expired.
            if summary.get(APPLIED_BY):
                held.add(summary[APPLIED_BY])
            else:
                carried.add(export_id)
        mark = summary.get(f"{SUMMARY_PREFIX}high-water-mark") or summary.get(f"{SUMMARY_PREFIX}export-time") or mark
    oldest = chain[-1] if chain else None
    cut = oldest is not None and oldest.parent_snapshot_id is not None and \
        main.snapshot_by_id(oldest.parent_snapshot_id) is None
    return _TableState(applications, held, carried, _order(oldest) if cut else None,
                       {str(s.snapshot_id): _order(s) for s in main.snapshots()})


HELD, GONE, UNKNOWN = "held", "gone", "unknown"


def _holds(summary: dict[str, str], state: _TableState) -> str:
    """Does a history snapshot (its summary) record an application the table's state holds? By the
    table's snapshot it names (one written before that was recorded, by its export id). HELD; GONE
    when the table's chain shows it does not (a rollback, a rebuild); UNKNOWN when the part of the
    chain that could hold it expired and nothing left says (then it is kept: a history row is
    removed only when the table surely no longer holds its export)."""
    applied_by = summary.get(APPLIED_BY)
    export_id = summary.get(f"{SUMMARY_PREFIX}export-id")
    if applied_by in state.held or export_id in state.carried:
        return HELD
    if not applied_by and any(a.export_id == export_id for a in state.applications):
        return HELD
    if state.cut_after is None:
        return GONE  # the whole chain is there, and it is not in it
    order = state.known.get(applied_by or "")
    if order is not None and order > state.cut_after:
        return GONE  # committed after the chain's oldest snapshot left, yet not in the chain: rolled back
    return UNKNOWN


def _follow_the_table(history: Any, state: _TableState) -> Any:
    """The history with its current snapshot following the table's chain: when the table was rolled
    back past applications the history records (or replaced since: a rebuild), the history is
    rolled back to its newest snapshot that records an application the table still holds (the
    others stay readable as earlier snapshots), or emptied when it records none."""
    current = history.current_snapshot()
    snapshot = None
    for candidate in ancestors(history):
        summary = candidate.summary.additional_properties if candidate.summary else {}
        if f"{SUMMARY_PREFIX}export-id" in summary and _holds(summary, state) != GONE:
            snapshot = candidate
            break
    if current is None or (snapshot is not None and snapshot.snapshot_id == current.snapshot_id):
        return history
    if snapshot is not None:
        history.manage_snapshots().rollback_to_snapshot(snapshot.snapshot_id).commit()
    else:
        from pyiceberg.expressions import AlwaysTrue

        # No application it records is held any more: a snapshot without rows, which records no export.
        history.delete(AlwaysTrue(), snapshot_properties={EMPTIED: "the table was rolled back or rebuilt past "
                                                                   "every export recorded"})
    history.refresh()
    return history


def _pending(history: Any, applications: list[_Application], export: Export) -> list[_Application]:
    """The applications to append, oldest first: those of the table's chain after the newest one the
    history records (only ``export``'s for a history not yet made; for a history recording none of
    them, those whose window ends after the history's first window began)."""
    if history is None:
        return [a for a in applications if a.export_id == export.export_id][-1:]
    recorded = _Recorded.of(history)
    held = [index for index, a in enumerate(applications) if recorded.records(a)]
    if held:
        return applications[held[-1] + 1:]
    began = _history_began(history)
    return [a for a in applications if began is None or (a.export_to_time and instant(a.export_to_time) > instant(began))]


@dataclass(frozen=True)
class _Recorded:
    """The applications a history's current chain records: by the table's snapshot that applied
    each (``snapshots``), or, for a history snapshot written before that was recorded, by its
    export id (``exports``). Read in one walk of the chain, then asked once per application (a
    walk per application grew with their number times the history's length)."""

    snapshots: frozenset[str]
    exports: frozenset[str]

    @classmethod
    def of(cls, history: Any) -> "_Recorded":
        snapshots, exports = set(), set()
        for summary in lineage(history):
            export_id = summary.get(f"{SUMMARY_PREFIX}export-id")
            if export_id is None:
                continue
            if summary.get(APPLIED_BY):
                snapshots.add(summary[APPLIED_BY])
            else:
                exports.add(export_id)
        return cls(frozenset(snapshots), frozenset(exports))

    def records(self, application: _Application) -> bool:
        return str(application.snapshot_id) in self.snapshots or application.export_id in self.exports


def _recorded(history: Any, application: _Application) -> bool:
    """Does the history's current chain record ``application`` (by the table's snapshot that
    applied it; one written before that was recorded, by its export id)?"""
    return _Recorded.of(history).records(application)


def _history_began(history: Any) -> str | None:
    """The start of the first window the history ever recorded (its oldest snapshot's)."""
    for snapshot in sorted(history.snapshots(), key=lambda s: s.timestamp_ms):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get(f"{SUMMARY_PREFIX}export-from-time"):
            return summary[f"{SUMMARY_PREFIX}export-from-time"]
    return None


def _append(catalog: Any, identifier: tuple[str, str], main: Any, stored: TableSchema, export: Export,
            application: _Application, s3: S3Options | None, compression: str,
            piece_bytes: int) -> tuple[Any, int | None]:
    """One snapshot of ``identifier`` holding ``export``'s changes as ``application`` applied them;
    (table, rows), rows None when the history recorded that application already."""
    from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError, ValidationError

    from ddb_assets import __version__
    from ddb_assets.lake.catalog import load_table
    from ddb_assets.lake.convert import export_record

    dictionary_keys = stored.options.dictionary_keys
    profile, kept = _profile(export, piece_bytes, dictionary_keys)
    plan = plan_table(profile, stored.options, stored.partition, stored)
    keys = [_key_column(plan, attribute) for attribute in profile.key_names]
    wanted = _schema(plan, keys)
    record = export_record(export)
    location = main.location().rstrip("/").rsplit("/", 1)[0] + f"/{identifier[1]}"
    for attempt in range(COMMIT_ATTEMPTS):
        history = load_table(catalog, *identifier)
        # Changes written before the table's mark when the export was applied were skipped by its
        # merge (an overlapping window): skipped here too.
        mark = application.mark_before
        if history is not None:
            if _recorded(history, application):  # a concurrent run appended it first
                return history, None
            transaction = history.transaction()
            try:
                with transaction.update_schema() as update:
                    update.union_by_name(wanted)
            except (ValueError, ValidationError) as exc:
                raise HistoryError(f"{identifier[1]} cannot take the columns of {identifier[0]}.{main.name()[-1]} "
                                   f"as it is now ({exc}; was the table rebuilt?): drop {identifier[1]} to start the "
                                   f"history anew") from None
        else:
            transaction = catalog.create_table_transaction(
                identifier, schema=wanted, location=location,
                properties={**TABLE_PROPERTIES, HISTORY_OF: main.name()[-1]})
        schema = transaction.table_metadata.schema().as_arrow()
        target = FileTarget(data=f"{location}/data", run=f"{export.export_id}-{uuid.uuid4().hex[:12]}",
                            compression=compression,
                            metrics=metrics_properties(transaction.table_metadata.properties))
        writer = PartitionedWriter(resolve(target.data, s3), schema, target, worker=0)
        rows = 0
        try:
            skip_before = int(instant(mark) * 1_000_000) if mark else None
            for piece in kept if kept is not None else _pieces(export, piece_bytes, dictionary_keys):
                table = _rows(piece, plan, keys, export, record.export_to_time, skip_before)
                if table.num_rows:
                    writer.write(_conform(table, schema))
                    rows += table.num_rows
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        summary = {**record.summary(__version__, "history"), f"{SUMMARY_PREFIX}history-rows": str(rows),
                   APPLIED_BY: str(application.snapshot_id)}
        append_files(transaction, written, summary)
        try:
            transaction.commit_transaction()
        except (CommitFailedException, TableAlreadyExistsError):
            for w in written:  # someone committed first: again, against the table as it is then
                location_ = resolve(w.path, s3)
                location_.fs.delete_file(location_.path)
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
            continue
        return load_table(catalog, *identifier), rows
    raise HistoryError(f"{identifier[1]} kept changing under this run; gave up after {COMMIT_ATTEMPTS} attempts "
                       f"(nothing was appended; run again)")


# The parsed pieces of an export kept from the profile pass for the rows pass, up to this many
# bytes of Arrow data: a window's export is usually far smaller (and then read once for the
# history, not twice); a bigger one is read again rather than held, so memory stays bounded.
KEPT_BYTES = 256 << 20


def _profile(export: Export, piece_bytes: int, dictionary_keys: int) -> tuple[Profile, list["_Piece"] | None]:
    """The profile of both images and the keys of ``export``'s changes, and its parsed pieces
    when they fit in KEPT_BYTES (else None: the rows pass reads the export again)."""
    profile = Profile()
    kept: list[_Piece] | None = []
    size = 0
    for piece in _pieces(export, piece_bytes, dictionary_keys):
        profile.key_names = profile.key_names or piece.images.columns.key_names
        for items in (piece.new, piece.old, piece.keys):
            profile.merge(profile_items(items, 0))
        if kept is not None:
            size += piece.new.nbytes + piece.old.nbytes + piece.keys.nbytes
            if size > KEPT_BYTES:
                kept = None
            else:  # the images' item lines were for the parse; the rows need the change columns only
                kept.append(_Piece(piece.new, piece.old, piece.keys,
                                   replace(piece.images, new=b"", old=b"", keys=b"")))
    return profile, kept


@dataclass
class _Piece:
    new: pa.StructArray
    old: pa.StructArray
    keys: pa.StructArray
    images: ChangeImages


def _pieces(export: Export, piece_bytes: int, dictionary_keys: int) -> Iterator[_Piece]:
    """Every piece of the export's data files as its changes' parsed images (md5s checked)."""
    from ddb_assets.exports.buffers import gunzip_pieces

    arena = ByteArena()
    known: dict[str, pa.Schema | None] = {"new": None, "old": None, "keys": None}
    maps: dict[str, frozenset] = {}
    for data_file in export.files:
        compressed = data_file.stream_verified()
        for text, _ in gunzip_pieces(compressed, arena, obj=data_file.name, piece_bytes=piece_bytes):
            images = incremental_images(text.view(), obj=data_file.name, ion=data_file.output_format == "ION")
            parsed = {}
            for side, lines in (("new", images.new), ("old", images.old), ("keys", images.keys)):
                if side not in maps:
                    maps[side] = detect_dictionary_maps(Text.of(lines), dictionary_keys)
                table, known[side] = parse_items(lines, output_format="DYNAMODB_JSON", obj=data_file.name,
                                                 known=known[side], dictionary_maps=maps[side])
                # Bounded depth, and profiled as the conversion profiles: see carry_deep_values.
                parsed[side] = carry_deep_values(table.column("Item").combine_chunks())
            yield _Piece(parsed["new"], parsed["old"], parsed["keys"], images)
        compressed.verify()


def _rows(piece: _Piece, plan: TablePlan, keys: list[str], export: Export, export_to_time: str | None,
          skip_before: int | None) -> pa.Table:
    """A piece's history rows (unconformed: the plan's types, no field ids)."""
    columns = piece.images.columns
    count = len(columns.operation)
    new = flatten_items(piece.new, plan)
    old = flatten_items(piece.old, plan)
    key_values = flatten_items(piece.keys, plan).select(keys)
    deleted = pc.equal(columns.operation, DELETE)
    if (export.summary.output_view or "NEW_AND_OLD_IMAGES") == "NEW_IMAGE":
        upsert = pa.array(["UPSERT"] * count, pa.string())
    else:
        upsert = pc.if_else(piece.images.has_old, "MODIFY", "INSERT")
    arrays = {name: key_values.column(name) for name in keys}
    arrays.update({
        "operation": pc.if_else(deleted, "REMOVE", upsert),
        "write_time": columns.write_micros.cast(TIME),
        "export_id": pa.array([export.export_id] * count, pa.string()),
        "export_arn": pa.array([export.summary.export_arn] * count, pa.string()),
        "export_to_time": pa.array([_micros(export_to_time)] * count, pa.int64()).cast(TIME)})
    arrays.update({NEW + name: new.column(name) for name in new.column_names})
    arrays.update({OLD + name: old.column(name) for name in old.column_names})
    table = pa.table(arrays)
    if skip_before is not None:
        table = table.filter(pc.greater_equal(columns.write_micros, skip_before))
    return table


def _schema(plan: TablePlan, keys: list[str]) -> pa.Schema:
    """The history's columns for ``plan`` (every one nullable, no field ids: the catalog numbers them)."""
    types = {f.name: f.type for f in plan.arrow_schema}
    fields = [pa.field(name, _plain(types[name])) for name in keys]
    fields += [pa.field("operation", pa.string()), pa.field("write_time", TIME), pa.field("export_id", pa.string()),
               pa.field("export_arn", pa.string()), pa.field("export_to_time", TIME)]
    image = [pa.field(f.name, _plain(f.type)) for f in plan.arrow_schema]
    fields += [pa.field(NEW + f.name, f.type) for f in image] + [pa.field(OLD + f.name, f.type) for f in image]
    names = [f.name for f in fields]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise HistoryError(f"the change history would hold two columns named {', '.join(clash)} (a key attribute "
                           f"named like a history column): the history cannot be kept for this table")
    return pa.schema(fields)


def _plain(kind: pa.DataType) -> pa.DataType:
    """``kind`` without field-id metadata on list elements."""
    if pa.types.is_list(kind):
        return pa.list_(pa.field("element", _plain(kind.value_type)))
    return kind


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in the history's schema: its columns in order and types (with field ids), the
    columns it lacks (added by another export's attributes) null."""
    arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _key_column(plan: TablePlan, attribute: str) -> str:
    for column in plan.columns:
        if column.path == (attribute,) and column.encoding == "scalar":
            return column.name
    raise HistoryError(f"the key attribute {attribute!r} has no column in the table")


def _micros(text: str | None) -> int | None:
    if not text:
        return None
    return int(round(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
                     * 1_000_000))


__all__ = ["HistoryError", "HistoryResult", "NEW", "OLD", "SUFFIX", "history_name", "record_history"]
