"""May this export be applied to this lake table? Decided before any data file is read.

Everything that can be known from the export's manifests and the catalog is checked up front by
the conversion (lake/convert.py), so a refusal costs a manifest read and a catalog lookup, never a
parse of the export; the commit checks the same again against the table as it is then, for a run
that lost a race (lake/commit.py, lake/merge.py).

- **Where** (``check_identity``): a table is written only at its catalog location. A destination
  whose folder name maps to an existing table at another location (``lake/My-Table`` and
  ``lake/my_table`` are both ``my_table``), or a ``--table-name`` already given to another folder,
  is refused: two folders never become one table, and no data file lands outside its table.
- **What** (``check_identity``): a table holds the exports of one DynamoDB table (table property
  ``ddb_assets.source_table_arn``, lake/record.py). An export of another table is refused; a full
  one replaces the table only with ``rebuild``.
- **When** (``check_state``): a full export older than the table's high-water mark is refused
  (``StaleExport``); an incremental one must start at the mark (``ChainError``: gap, overlap).
- **Again?** (``check_state``): an export the table holds already (a full export that is the
  current snapshot's, an incremental one an ancestor applied) changes nothing: ``unchanged``.

"Ancestor" and "mark" mean the table's current state only: back to its latest whole-table
replacement (lake/record.py ``lineage``). After a rebuild from a full export the windows merged
before it are not held any more, and apply again in order.
"""

from __future__ import annotations

import os
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any

from ddb_assets.lake.record import FULL, SUMMARY_PREFIX, ExportRecord, current_summary, high_water_mark, instant, \
    lineage, source_table_arn

PITR_DAYS = 35
PITR_WARNING_DAYS = 3  # warn when the mark is this close to leaving the PITR window


class Refused(ValueError):
    """The export cannot be applied to the table as it stands; the message says why and what to do.
    Nothing was written."""


class StaleExport(Refused):
    """The export is older than what the table already holds."""


class ChainError(Refused):
    """An incremental export that does not continue the table's chain of exports (gap, overlap,
    no base table); the message names the times and exports involved."""


class TableLocationConflict(Refused):
    """The table name is taken by a table at another location."""


class SourceTableMismatch(Refused):
    """The export is of another DynamoDB table than the one the lake table holds."""


@dataclass
class Verdict:
    """What applying the export would do: nothing (``unchanged``), or go ahead (with warnings)."""

    unchanged: bool = False
    warnings: list[str] = field(default_factory=list)


def normal_location(uri: str) -> str:
    """A table location in one spelling: ``s3://bucket/key`` or an absolute local path, with no
    ``.``/``..`` segments, doubled or trailing slashes."""
    text = uri[len("file://"):] if uri.startswith("file://") else uri
    scheme, sep, rest = text.partition("://")
    if sep:
        return f"{'s3' if scheme in ('s3', 's3a', 's3n') else scheme}://{posixpath.normpath('/' + rest)[1:]}"
    return os.path.normpath(os.path.abspath(text))


def _name(table: Any) -> str:
    return ".".join(table.name())


def check_location(table: Any, location: str) -> None:
    """Refuse to write ``table`` anywhere but at its catalog location."""
    held = table.location()
    if normal_location(held) != normal_location(location):
        raise TableLocationConflict(
            f"table {_name(table)} exists already, at {held}, not at {location}: convert into {held} to update "
            f"it, or give the table at {location} another name (--table-name)")


def check_location_free(catalog: Any, namespace: str, name: str, location: str) -> None:
    """Refuse to create table ``name`` at ``location`` when another table of the namespace lives
    there, or around it: two tables in one folder would share data/ and metadata/, and one's
    maintenance would remove the other's files as orphans. Called only when ``name`` is new (it
    loads each table of the namespace once)."""
    from ddb_assets.lake.catalog import list_tables, load_table

    wanted = normal_location(location).rstrip("/")
    for other in list_tables(catalog, namespace):
        if other == name:
            continue
        table = load_table(catalog, namespace, other)
        if table is None:
            continue
        held = normal_location(table.location()).rstrip("/")
        if held == wanted or wanted.startswith(held + "/") or held.startswith(wanted + "/"):
            raise TableLocationConflict(
                f"{location} is {'the location of' if held == wanted else 'inside or around the location of'} "
                f"table {_name(table)} ({held}): give table {name} a folder of its own")


def check_source(table: Any, export: ExportRecord, rebuild: bool) -> None:
    """Refuse an export of another DynamoDB table than the one ``table`` holds (a full export may
    replace the table with ``rebuild``, on purpose)."""
    held = source_table_arn(table)
    if held is None or held == export.table_arn:
        return
    if export.incremental:
        raise SourceTableMismatch(
            f"table {_name(table)} holds exports of {held}; incremental export {export.export_id} is of "
            f"{export.table_arn}: its changes belong to another table (convert that table's full export into "
            f"a table of its own first)")
    if not rebuild:
        raise SourceTableMismatch(
            f"table {_name(table)} holds exports of {held}; export {export.export_id} is of {export.table_arn}: "
            f"convert it into a table of its own (another folder or --table-name), or replace this table with "
            f"it on purpose (--rebuild)")


def check_identity(table: Any, export: ExportRecord, location: str, rebuild: bool) -> None:
    """Where and what: the table's location and source table (see the module's docstring)."""
    check_location(table, location)
    check_source(table, export, rebuild)


def check_state(table: Any | None, export: ExportRecord, *, rebuild: bool = False, allow_overlap: bool = False,
                only_partitions: frozenset[str] | None = None, name: str = "", ahead: bool = False) -> Verdict:
    """When and again: is the export new to ``table`` (None: no table ``name`` yet), and does it
    follow what the table holds? ``ahead``: an incremental export may start after the table's mark
    (staged before the windows between are applied; its merge checks the chain again). Raises
    StaleExport, ChainError, Refused."""
    if export.incremental:
        if rebuild:
            raise Refused(f"incremental export {export.export_id} holds changes, not a table: --rebuild replaces a "
                          f"table with a full export, then incremental exports are merged into it")
        if table is None:
            raise ChainError(f"table {name or '?'} does not exist: incremental export {export.export_id} applies to "
                             f"a table made from a full export (convert the full export into it first)")
        if applied_already(table, export.export_id):
            return Verdict(unchanged=True)
        return Verdict(warnings=check_chain(table, export, allow_overlap, ahead=ahead))
    if table is None or rebuild:
        return Verdict()
    if holds_export(table, export, only_partitions):
        return Verdict(unchanged=True)
    check_order(table, export)
    return Verdict()


def holds_export(table: Any, export: ExportRecord, only_partitions: frozenset[str] | None) -> bool:
    """Is ``export`` (a full export) what the table's current snapshot holds, in every partition
    asked for (``only_partitions``; None: all)? Then converting it again changes nothing."""
    summary = current_summary(table)
    get = lambda key: summary.get(f"{SUMMARY_PREFIX}{key}", "")  # noqa: E731
    if (get("export-arn"), get("export-time"), get("export-type") or FULL) != \
            (export.export_arn, export.export_time or "", FULL) or get("table-arn") != export.table_arn:
        return False
    held = get("partitions")
    return held == "all" or (only_partitions is not None and only_partitions <= set(held.split(",")))


def check_order(table: Any, export: ExportRecord) -> None:
    """A full export never replaces a newer state (two runs finishing out of order, or an old
    export after incremental ones)."""
    if not export.export_time:
        return
    held, held_id = high_water_mark(table)
    if held and instant(held) > instant(export.export_time):
        raise StaleExport(f"export {export.export_id} ({export.export_time}) is older than what "
                          f"{table.name()[-1]} already holds (up to {held}, export {held_id}); convert a newer "
                          f"export, or rebuild the table from this one on purpose (--rebuild)")


def check_chain(table: Any, export: ExportRecord, allow_overlap: bool, *, ahead: bool = False) -> list[str]:
    """The table's high-water mark, checked against an incremental export's window. Returns
    warnings; raises ChainError for a gap (unless ``ahead``) or an overlap (unless allowed) and
    StaleExport for a window wholly behind the mark."""
    mark, held_id = high_water_mark(table)
    if mark is None:
        raise ChainError(f"table {table.name()[-1]} has no applied export: an incremental export applies to a "
                         f"table made from a full export (convert the full export first)")
    start, end = export.export_from_time or "", export.export_to_time or ""
    if instant(end) <= instant(mark):
        raise StaleExport(f"incremental export {export.export_id} ({start} to {end}) ends "
                          f"{'at' if instant(end) == instant(mark) else 'before'} the table's "
                          f"high-water mark {mark} (export {held_id}): nothing in it is new")
    if instant(start) > instant(mark) and not ahead:
        raise ChainError(f"incremental export {export.export_id} starts at {start}, but the table holds changes "
                         f"up to {mark} (export {held_id}): the changes from {mark} to {start} are missing. "
                         f"Apply the export of that window first (a gap cannot be merged)")
    if instant(start) < instant(mark) and not allow_overlap:
        raise ChainError(f"incremental export {export.export_id} starts at {start}, before the table's "
                         f"high-water mark {mark} (export {held_id}): the windows overlap. Apply it by write time "
                         f"with --allow-overlap (allow_overlap), or export the window from {mark}")
    warnings = []
    age_days = (time.time() - instant(end)) / 86400
    if age_days > PITR_DAYS - PITR_WARNING_DAYS:
        warnings.append(f"the table's high-water mark will be {end}, {age_days:.1f} days ago: near the end of the "
                        f"{PITR_DAYS}-day PITR window, after which the next incremental export cannot start there "
                        f"(continuous chains break at the window's edge; a new full export restarts it)")
    return warnings


def applying_snapshot(table: Any, export_id: str) -> int | None:
    """The snapshot of the current lineage that applied ``export_id`` (not a compaction carrying
    its record along), None when none did."""
    from ddb_assets.lake.record import applies_export, state_snapshots

    found = None
    for snapshot in state_snapshots(table):  # newest first: the last one found applied it
        summary = dict(snapshot.summary.additional_properties) if snapshot.summary else {}
        if summary.get(f"{SUMMARY_PREFIX}export-id") == export_id and applies_export(summary):
            found = snapshot.snapshot_id
    return found


def applied_already(table: Any, export_id: str) -> bool:
    """Does the current snapshot or one of its ancestors since the table's latest whole-table
    replacement (lake/record.py ``lineage``) record ``export_id``?"""
    return any(summary.get(f"{SUMMARY_PREFIX}export-id") == export_id for summary in lineage(table))


def applied_exports(table: Any) -> set[str]:
    """The export ids ``applied_already`` finds, read in one walk: to ask about many exports."""
    return {export_id for export_id in (s.get(f"{SUMMARY_PREFIX}export-id") for s in lineage(table)) if export_id}
