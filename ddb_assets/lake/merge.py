"""Apply an incremental export to a lake table: upserts and deletes by primary key, one snapshot.

Copy-on-write (Iceberg v2 without delete files, so every engine reads the result as plain data
files, our DuckDB views included):

1. the export's changes arrive as new data files (its upserts' new images, already written by the
   conversion workers) and a key table (every change's key columns, operation and write time);
2. the data files that may hold a touched key are found by the key column's statistics (pyiceberg's
   scan planning with an ``In`` filter prunes manifests and files by their bounds), then confirmed
   by reading the key columns of the candidates only;
3. each such file is rewritten without the touched keys (in the table's current schema);
4. one overwrite snapshot removes those files and adds the rewritten ones and the upserts. An
   upsert whose partition attribute changed lands in its new partition; its old row goes with its
   old file's rewrite.

**Idempotent**: a snapshot summary records each applied export; applying one that an ancestor of the
current snapshot recorded changes nothing. **Ordered**: the table's high-water mark (the full
export's time, then each applied ``ExportToTime``) must equal the window's ``ExportFromTime``: a gap
or an overlap is refused, naming it; ``allow_overlap`` applies an overlapping window by write time
(changes written before the mark are already in the table, or superseded, and are skipped).
Deletes of keys the table never had are counted, not errors. Computed with Arrow, never with
pyiceberg's ``upsert`` (minutes per million keys).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.changes import DELETE, UPSERT
from ddb_assets.exports.storage import S3Options, resolve
from ddb_assets.lake.commit import (COMMIT_ATTEMPTS, CommitConflict, CommitResult, ExportRecord, _result,
                                    begin_transaction, replace_files, source_properties)
from ddb_assets.lake.evolution import TablePlan
from ddb_assets.lake.guards import ChainError, applied_already, check_chain, check_identity
from ddb_assets.lake.record import SUMMARY_PREFIX
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.writer import FileTarget, PartitionedWriter, WrittenFile


@dataclass
class MergeResult:
    commit: CommitResult | None  # None when the export was applied already (nothing committed)
    upserts: int = 0
    deletes: int = 0
    deletes_missing: int = 0  # deletes of keys the table did not hold
    skipped: int = 0  # changes older than the mark (allow_overlap)
    files_rewritten: int = 0
    already_applied: bool = False
    warnings: list[str] = field(default_factory=list)


def merge_export(catalog: Any, identifier: tuple[str, str], plan: TablePlan, upserts: list[WrittenFile],
                 keys: pa.Table, export: ExportRecord, target: FileTarget, *, location: str,
                 allow_overlap: bool = False, stored_at_plan: TableSchema | None = None,
                 s3: S3Options | None = None) -> MergeResult:
    """Commit an incremental export's changes (``upserts``: its new images as data files; ``keys``:
    every change's key columns plus ``op`` and ``write_micros``) as one snapshot of ``identifier``
    (at ``location``). The table is checked again as it is at commit (lake/guards.py). Raises
    ChainError, StaleExport, TableLocationConflict, SourceTableMismatch, CommitConflict."""
    from pyiceberg.exceptions import CommitFailedException

    from ddb_assets import __version__
    from ddb_assets.lake.catalog import load_table

    key_columns = [name for name in keys.column_names if name not in ("op", "write_micros")]
    summary = export.summary(__version__, "merge")
    for attempt in range(COMMIT_ATTEMPTS):
        table = load_table(catalog, *identifier)
        if table is None:
            raise ChainError(f"table {identifier[-1]} does not exist: an incremental export applies to a table "
                             f"made from a full export (convert the full export first)")
        check_identity(table, export, location, rebuild=False)
        if applied_already(table, export.export_id):
            return MergeResult(None, already_applied=True)
        warnings = check_chain(table, export, allow_overlap)
        transaction, changed = begin_transaction(table, plan, False, stored_at_plan, source_properties(export))
        touched = keys.select(key_columns)
        affected = affected_files(table, touched, key_columns, s3)
        rewritten, kept_keys = _rewrite(affected, touched, key_columns, plan, target, s3)
        deletes = int(pc.sum(pc.equal(keys.column("op"), DELETE)).as_py() or 0)
        upserted = int(pc.sum(pc.equal(keys.column("op"), UPSERT)).as_py() or 0)
        found = _present(kept_keys, keys, key_columns)
        summary = {**summary, f"{SUMMARY_PREFIX}upserts": str(upserted), f"{SUMMARY_PREFIX}deletes": str(deletes),
                   f"{SUMMARY_PREFIX}deletes-missing": str(deletes - found),
                   f"{SUMMARY_PREFIX}files-rewritten": str(len(affected))}
        replace_files(transaction, [f for f, _ in affected], [*upserts, *rewritten], summary)
        try:
            transaction.commit_transaction()
        except CommitFailedException:
            _remove(rewritten, s3)  # the next attempt rewrites from the table as it is then
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
            continue
        table.refresh()
        result = _result(table, len(upserts) + len(rewritten), len(affected), False,
                         plan.changes() if changed else [])
        return MergeResult(result, upserted, deletes, deletes - found, 0, len(affected), warnings=warnings)
    raise CommitConflict(f"table {'.'.join(identifier)} kept changing under this merge; gave up after "
                         f"{COMMIT_ATTEMPTS} attempts (nothing was committed; run again)")


def affected_files(table: Any, keys: pa.Table, key_columns: list[str], s3: S3Options | None) -> list[tuple[Any, pa.Table]]:
    """The current snapshot's data files holding at least one of ``keys``: (DataFile, the file's key
    columns), found by statistics pruning on the first key column, then by reading key columns."""
    import pyarrow.parquet as pq
    from pyiceberg.expressions import In

    if keys.num_rows == 0 or table.current_snapshot() is None:
        return []
    first = keys.column(key_columns[0]).drop_null().unique().to_pylist()
    if not first:
        return []
    out = []
    for task in table.scan(row_filter=In(key_columns[0], first), selected_fields=tuple(key_columns)).plan_files():
        location = resolve(task.file.file_path, s3)
        present = pq.read_table(location.path, filesystem=location.fs, columns=key_columns)
        if present.num_rows and pc.any(_matches(present, keys, key_columns)).as_py():
            out.append((task.file, present))
    return out


def _matches(rows: pa.Table, keys: pa.Table, key_columns: list[str]) -> pa.ChunkedArray:
    """Per row of ``rows``: is its key among ``keys``?"""
    if len(key_columns) == 1:
        column = key_columns[0]
        return pc.is_in(rows.column(column), value_set=keys.column(column).combine_chunks().cast(
            rows.schema.field(column).type))
    marked = keys.select(key_columns).append_column("__touched", pa.array([True] * keys.num_rows))
    joined = rows.select(key_columns).append_column("__row", pa.array(range(rows.num_rows))).join(
        marked, key_columns, join_type="left outer")
    order = pc.sort_indices(joined.column("__row"))
    return pc.fill_null(joined.column("__touched").take(order), False)


def _rewrite(affected: list[tuple[Any, pa.Table]], keys: pa.Table, key_columns: list[str], plan: TablePlan,
             target: FileTarget, s3: S3Options | None) -> tuple[list[WrittenFile], pa.Table]:
    """Each affected file again, without the touched keys' rows (in the plan's schema). Returns the
    new files and the touched keys the table held."""
    from ddb_assets.lake.maintenance import read_as

    if not affected:
        return [], keys.slice(0, 0)
    data = resolve(target.data, s3)
    rewrite_target = FileTarget(data=target.data, run=f"{target.run}-merge", partition=target.partition,
                                source_column=target.source_column, compression=target.compression)
    writer = PartitionedWriter(data, plan.arrow_schema, rewrite_target, worker=0)
    held = []
    try:
        for data_file, present in affected:
            rows = read_as(data_file.file_path, plan.arrow_schema, s3)
            touched = _matches(rows, keys, key_columns)
            held.append(rows.filter(touched).select(key_columns))
            kept = rows.filter(pc.invert(touched))
            if kept.num_rows:
                writer.write(kept)
        return writer.close(), pa.concat_tables(held) if held else keys.slice(0, 0)
    except BaseException:
        writer.abort()
        raise


def _present(held: pa.Table, keys: pa.Table, key_columns: list[str]) -> int:
    """How many of the export's deletes name a key the table held."""
    deletes = keys.filter(pc.equal(keys.column("op"), DELETE)).select(key_columns)
    if not deletes.num_rows or not held.num_rows:
        return 0
    return int(pc.sum(_matches(deletes, held.cast(deletes.schema), key_columns)).as_py() or 0)


def _remove(written: list[WrittenFile], s3: S3Options | None) -> None:
    for w in written:
        try:
            location = resolve(w.path, s3)
            location.fs.delete_file(location.path)
        except (OSError, ValueError):
            pass



__all__ = ["ChainError", "MergeResult", "affected_files", "applied_already", "check_chain", "merge_export"]
