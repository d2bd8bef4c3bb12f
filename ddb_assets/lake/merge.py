"""Apply an incremental export to a lake table: upserts and deletes by primary key, one snapshot.

Two modes (``merge_mode``; the table property ``write.merge.mode`` remembers the last one given,
as Spark's does):

**copy-on-write** (the default: every engine reads the result as plain data files):

1. the export's changes arrive as new data files (its upserts' new images, already written by the
   conversion workers) and a key table (every change's key columns, operation and write time);
2. the data files that may hold a touched key are found by the key column's statistics (each file's
   bounds against the sorted keys), then confirmed by reading the key columns of the candidates only;
3. each such file is rewritten without the touched keys (in the table's current schema);
4. one overwrite snapshot removes those files and adds the rewritten ones and the upserts. An
   upsert whose partition attribute changed lands in its new partition; its old row goes with its
   old file's rewrite.

**merge-on-read** (Iceberg v2 position deletes; steps 1 and 2 the same): instead of rewriting the
affected files, the positions of their touched rows (rows an earlier delete file hides already left
out) go into one position-delete file per partition (lake/position_deletes.py), and one snapshot
adds them with the upserts (lake/row_delta.py). Only the touched keys' rows are written, whatever
the files hold; readers pay for the deletes until compaction folds them (lake/maintenance.py).

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
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.changes import DELETE, UPSERT
from ddb_assets.exports.storage import Location, S3Options, resolve, resolver
from ddb_assets.exports.thread_pool import io_threads
from ddb_assets.lake.commit import (COMMIT_ATTEMPTS, CommitConflict, CommitResult, ExportRecord, _result,
                                    begin_transaction, check_written, data_files_for, replace_files,
                                    source_properties)
from ddb_assets.lake.evolution import TablePlan
from ddb_assets.lake.guards import ChainError, applied_already, check_chain, check_identity
from ddb_assets.lake.position_deletes import (DeletedRows, PositionIndex, deleted_positions, keep_mask, remove_files,
                                             without_files, write_delete_files)
from ddb_assets.lake.read_ahead import ReadAhead
from ddb_assets.lake.record import SUMMARY_PREFIX
from ddb_assets.lake.row_delta import row_delta
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.writer import FileTarget, PartitionedWriter, WrittenFile


COPY_ON_WRITE = "copy-on-write"
MERGE_ON_READ = "merge-on-read"
MERGE_MODES = (COPY_ON_WRITE, MERGE_ON_READ)
MERGE_MODE_PROPERTY = "write.merge.mode"  # Iceberg's own property name (Spark reads it too)

# Data files whose key columns are read at once. On S3 each read is mostly waiting (~50-100 ms to
# the first byte): one at a time, 16,000 files take tens of minutes. pyarrow releases the GIL while
# it fetches and decodes, so threads overlap the waits; each read decodes one or two columns, so
# 16 of them keep an S3 connection pool busy without crowding out the CPU (the matching, on the
# merging thread, is the CPU part).
READ_THREADS = 16
# Files read ahead of the one being matched (results are taken in file order): memory holds at
# most this many files' key columns, however many files the table has.
READ_AHEAD = 2 * READ_THREADS
# Rows of key columns matched at once: the matcher's hash set of the changed keys is built once per
# match (Arrow's is_in builds it on every call: 0.4 s for 1,000,000 keys), so files are matched
# together, up to READ_AHEAD of them and this many rows, instead of one at a time.
MATCH_ROWS = 4_000_000

ProgressCallback = Callable[[str, dict[str, Any]], None]


def merge_mode_of(table: Any, requested: str | None) -> str:
    """The mode a merge into ``table`` uses: ``requested``, else the table's ``write.merge.mode``,
    else copy-on-write. Raises ValueError for a mode not in MERGE_MODES."""
    mode = requested or (table.properties.get(MERGE_MODE_PROPERTY) if table is not None else None) or COPY_ON_WRITE
    if mode not in MERGE_MODES:
        raise ValueError(f"merge mode must be one of {', '.join(MERGE_MODES)}, not {mode!r}")
    return mode


@dataclass
class Affected:
    """A live data file holding touched keys, reduced to what the rest of the merge needs: the
    positions of its live rows (those no delete file hides) that hold a touched key, their key
    columns, the positions its delete files hide (a copy-on-write rewrite leaves those rows out
    too), and the delete files that apply to it. Its size grows with the touched and hidden rows,
    never with the rows the file holds: with changes spread over a terabyte table every file is
    affected, and its untouched keys must not stay in memory until the commit."""

    data_file: Any
    touched_positions: pa.Array  # int64, ascending: rows of the file holding a touched key
    touched_keys: pa.Table  # the key columns of those rows, in the same order
    hidden: pa.Array = field(default_factory=lambda: pa.array([], pa.int64()))  # int64: rows delete files hide
    delete_files: frozenset = frozenset()


@dataclass
class MergeResult:
    commit: CommitResult | None  # None when the export was applied already (nothing committed)
    upserts: int = 0
    deletes: int = 0
    deletes_missing: int = 0  # deletes of keys the table did not hold
    skipped: int = 0  # changes older than the mark (allow_overlap)
    files_rewritten: int = 0
    delete_files: int = 0  # position-delete files added (merge-on-read)
    merge_mode: str = COPY_ON_WRITE
    already_applied: bool = False
    warnings: list[str] = field(default_factory=list)


def merge_export(catalog: Any, identifier: tuple[str, str], plan: TablePlan, upserts: list[WrittenFile],
                 keys: pa.Table, export: ExportRecord, target: FileTarget, *, location: str,
                 allow_overlap: bool = False, stored_at_plan: TableSchema | None = None,
                 s3: S3Options | None = None, merge_mode: str | None = None,
                 progress: ProgressCallback | None = None) -> MergeResult:
    """Commit an incremental export's changes (``upserts``: its new images as data files; ``keys``:
    every change's key columns plus ``op`` and ``write_micros``) as one snapshot of ``identifier``
    (at ``location``). ``merge_mode``: copy-on-write or merge-on-read (None: the table's
    ``write.merge.mode``, else copy-on-write); one given is recorded in that property. The table
    is checked again as it is at commit (lake/guards.py). ``progress(kind, info)`` gets ``merge``
    events, ``{"step": "scan" | "rewrite", "done": files, "total": files, "affected": files}``
    (about a hundred per step, on the calling thread), then ``committing`` (``{"files": n}``) just
    before each commit attempt. Raises ChainError, StaleExport,
    TableLocationConflict, SourceTableMismatch, CommitConflict, ValueError (an unknown mode)."""
    from pyiceberg.exceptions import CommitFailedException

    from ddb_assets import __version__
    from ddb_assets.lake.catalog import load_table

    key_columns = [name for name in keys.column_names if name not in ("op", "write_micros")]
    notify = progress or (lambda kind, info: None)
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
        mode = merge_mode_of(table, merge_mode)
        properties = {**source_properties(export), **({MERGE_MODE_PROPERTY: merge_mode} if merge_mode else {})}
        transaction, changed = begin_transaction(table, plan, False, stored_at_plan, properties)
        touched = keys.select(key_columns)
        affected = affected_files(table, touched, key_columns, s3, notify)
        deletes = int(pc.sum(pc.equal(keys.column("op"), DELETE)).as_py() or 0)
        upserted = int(pc.sum(pc.equal(keys.column("op"), UPSERT)).as_py() or 0)
        held = [a.touched_keys for a in affected]
        found = _present(pa.concat_tables(held) if held else touched.slice(0, 0), keys, key_columns)
        summary = {**summary, f"{SUMMARY_PREFIX}upserts": str(upserted), f"{SUMMARY_PREFIX}deletes": str(deletes),
                   f"{SUMMARY_PREFIX}deletes-missing": str(deletes - found),
                   f"{SUMMARY_PREFIX}merge-mode": mode}
        run = f"{target.run}-merge"
        if mode == MERGE_ON_READ:
            new_files, written = _delete_rows(transaction, affected, upserts, run, target, summary, s3)
        else:
            new_files, written = _copy_on_write(transaction, affected, upserts, run, plan, target, summary, s3,
                                                notify)
        check_written([u.path for u in upserts] + [w.file_path for w in written], s3, table=identifier[-1])
        # From here the command line holds Ctrl-C back (cli_interrupts.py): not during the scan
        # and the rewrite before, which on a big table take long and commit nothing.
        notify("committing", {"files": len(upserts) + new_files})
        try:
            transaction.commit_transaction()
        except CommitFailedException:
            remove_files(written, s3)  # the next attempt works from the table as it is then
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
            continue
        table.refresh()
        rewritten = len(affected) if mode == COPY_ON_WRITE else 0
        result = _result(table, len(upserts) + new_files, rewritten, False, plan.changes() if changed else [],
                         delete_files=new_files if mode == MERGE_ON_READ else 0)
        return MergeResult(result, upserted, deletes, deletes - found, 0, rewritten,
                           delete_files=new_files if mode == MERGE_ON_READ else 0, merge_mode=mode,
                           warnings=warnings)
    raise CommitConflict(f"table {'.'.join(identifier)} kept changing under this merge; gave up after "
                         f"{COMMIT_ATTEMPTS} attempts (nothing was committed; run again)")


def _delete_rows(transaction: Any, affected: list[Affected], upserts: list[WrittenFile], run: str,
                 target: FileTarget, summary: dict[str, str], s3: S3Options | None) -> tuple[int, list[Any]]:
    """Merge-on-read: the touched rows' positions as delete files, staged with the upserts.
    Returns (delete files, the files written)."""
    written = write_delete_files([DeletedRows(a.data_file, a.touched_positions) for a in affected],
                                 run, s3, target.compression)
    summary[f"{SUMMARY_PREFIX}files-rewritten"] = "0"
    summary[f"{SUMMARY_PREFIX}files-with-new-deletes"] = str(len(affected))
    row_delta(transaction, summary, added_data=data_files_for(transaction, upserts), added_deletes=written)
    return len(written), written


def _copy_on_write(transaction: Any, affected: list[Affected], upserts: list[WrittenFile], run: str,
                   plan: TablePlan, target: FileTarget, summary: dict[str, str],
                   s3: S3Options | None, notify: ProgressCallback) -> tuple[int, list[Any]]:
    """Copy-on-write: the affected files rewritten without their touched (and deleted) rows,
    staged with the upserts; delete files referencing them are rewritten without those rows.
    Returns (data files written, the files written)."""
    rewritten = _rewrite(affected, plan, target, s3, notify)
    summary[f"{SUMMARY_PREFIX}files-rewritten"] = str(len(affected))
    delete_files = {d for a in affected for d in a.delete_files}
    if not delete_files:
        replace_files(transaction, [a.data_file for a in affected], [*upserts, *rewritten], summary)
        return len(rewritten), [_as_data_file(w) for w in rewritten]
    try:
        gone, replacements = without_files(delete_files, {a.data_file.file_path for a in affected}, run, s3,
                                           target.compression)
    except BaseException:
        remove_files([_as_data_file(w) for w in rewritten], s3)
        raise
    row_delta(transaction, summary, added_data=data_files_for(transaction, [*upserts, *rewritten]),
              added_deletes=replacements, removed=[*(a.data_file for a in affected), *gone])
    return len(rewritten), [*(_as_data_file(w) for w in rewritten), *replacements]


def _as_data_file(written: WrittenFile) -> Any:
    """Enough of a DataFile for remove_files: its path."""
    from types import SimpleNamespace

    return SimpleNamespace(file_path=written.path)


def affected_files(table: Any, keys: pa.Table, key_columns: list[str], s3: S3Options | None,
                   notify: ProgressCallback = lambda kind, info: None) -> list[Affected]:
    """The current snapshot's data files holding at least one of ``keys`` in a live row, in scan
    order, found by statistics pruning on the first key column, then by reading key columns (rows
    that the scan task's delete files hide are left out: a key deleted before is not found again,
    and one upserted since is found in its newer file). The candidates' key columns are read by
    READ_THREADS threads, at most READ_AHEAD files ahead of the one matched; the matching runs on
    the calling thread, in file order, several files at once (MATCH_ROWS); ``notify`` gets the
    ``merge`` scan events."""
    if keys.num_rows == 0 or table.current_snapshot() is None:
        return []
    first = sorted(keys.column(key_columns[0]).drop_null().unique().to_pylist())
    if not first:
        return []
    tasks = _candidates(table, key_columns[0], first)
    matcher = KeyMatcher(keys, key_columns)
    cache: dict[str, PositionIndex] = {}  # delete files by path, indexed once: one applies to many data files
    locate = resolver(s3)  # one S3 client for every file: connections are reused
    steps = _Steps(notify, "scan", len(tasks))
    out: list[Affected] = []
    with io_threads(READ_THREADS, "merge-keys") as pool:  # Ctrl-C is not held up by a stuck read
        pending: deque[tuple[Any, Future]] = deque()
        waiting = iter(tasks)
        try:
            for task in waiting:
                pending.append((task, pool.submit(_read_keys, task.file, key_columns, locate)))
                if len(pending) >= READ_AHEAD:
                    break
            while pending:
                batch: list[tuple[Any, _Live]] = []
                rows = 0
                while pending and len(batch) < READ_AHEAD and (not batch or rows < MATCH_ROWS):
                    task, read = pending.popleft()
                    following = next(waiting, None)
                    if following is not None:
                        pending.append((following, pool.submit(_read_keys, following.file, key_columns, locate)))
                    live = _live_rows(task, read.result(), s3, cache)
                    batch.append((task, live))
                    rows += live.present.num_rows
                touched = matcher.touched_many([live.present for _, live in batch])
                for (task, live), mask in zip(batch, touched):
                    found = _found(task, live, mask)
                    if found is not None:
                        out.append(found)
                    steps.advance(len(out))
        finally:
            for _, future in pending:  # a read failed (or Ctrl-C): the rest are not needed
                future.cancel()
    return out


def _read_keys(data_file: Any, key_columns: list[str], locate: Callable[[str], Location]) -> pa.Table:
    """A data file's key columns, read on a pool thread (one fragment: no dataset discovery; the
    file's size from the manifest: no request for it). Single threaded, into the system allocator:
    pyarrow's default (mimalloc) keeps a heap per thread that touched it, about 8 MiB each, which
    the merge's peak memory would carry for every read thread."""
    import pyarrow.dataset as ds

    location = locate(data_file.file_path)
    fragment = ds.ParquetFileFormat().make_fragment(location.path, location.fs,
                                                    file_size=data_file.file_size_in_bytes or None)
    return fragment.to_table(columns=key_columns, use_threads=False, memory_pool=pa.system_memory_pool())


@dataclass
class _Live:
    """A candidate's live rows: their key columns, their positions in the file (None: every row is
    live, a row's position is its index) and the positions its delete files hide."""

    present: pa.Table
    positions: pa.Array | None
    hidden: pa.Array


def _live_rows(task: Any, present: pa.Table, s3: S3Options | None, cache: dict[str, PositionIndex]) -> _Live:
    """The live rows of a candidate whose key columns are ``present``: the rows its delete files
    hide left out (their positions read here, delete files kept in ``cache`` by path)."""
    hidden = pa.array([], pa.int64())
    if task.delete_files:
        hidden = deleted_positions(task.delete_files, task.file.file_path, s3, cache)
        if len(hidden):
            live = keep_mask(present.num_rows, hidden)
            return _Live(present.filter(live), pc.indices_nonzero(live), hidden)
    return _Live(present, None, hidden)


def _found(task: Any, live: _Live, touched: pa.Array) -> Affected | None:
    """The Affected of a candidate whose live rows ``touched`` marks (bool per row), or None when
    none holds a touched key."""
    if not live.present.num_rows:
        return None
    at = pc.indices_nonzero(touched)
    if not len(at):
        return None
    # take() copies: what is kept does not hold on to the buffers of the whole file's key columns.
    positions = (at if live.positions is None else live.positions.take(at)).cast(pa.int64())
    return Affected(task.file, positions, live.present.take(at), live.hidden, frozenset(task.delete_files))


class _Steps:
    """``merge`` progress events for one step over ``total`` files: the first, then one per
    hundredth of the files (a Dagster run logs each), and the last."""

    def __init__(self, notify: ProgressCallback, step: str, total: int):
        self.notify, self.step, self.total, self.done, self.shown = notify, step, total, 0, -1
        self._send(0)

    def advance(self, affected: int) -> None:
        self.done += 1
        if self.done == self.total or self.done * 100 // self.total != self.shown * 100 // self.total:
            self._send(affected)

    def _send(self, affected: int) -> None:
        self.shown = self.done
        self.notify("merge", {"step": self.step, "done": self.done, "total": self.total, "affected": affected})


def _candidates(table: Any, column: str, values: list[Any]) -> list[Any]:
    """The current snapshot's scan tasks whose bounds on ``column`` admit one of ``values``
    (sorted). A bisection per file: pyiceberg's scan planning with an ``In`` filter of the same
    values binds and evaluates the whole list per file (seconds for 11,000 keys over 110 files)."""
    from bisect import bisect_left

    from pyiceberg.conversions import from_bytes

    field_ = table.schema().find_field(column)
    out = []
    for task in table.scan().plan_files():
        lower = (task.file.lower_bounds or {}).get(field_.field_id)
        upper = (task.file.upper_bounds or {}).get(field_.field_id)
        # Bounds are inclusive (a truncated string's lower bound is a prefix, its upper bound
        # rounded up); a file without them may hold anything.
        at = bisect_left(values, from_bytes(field_.field_type, lower)) if lower is not None else 0
        if at < len(values) and (upper is None or values[at] <= from_bytes(field_.field_type, upper)):
            out.append(task)
    return out


class KeyMatcher:
    """Which rows hold one of ``keys`` (a table with ``key_columns``), for many tables of rows.

    Each key column's values are looked up in a hash set of that column's values first (one pass
    per column, no copy): a row passes when each of its values is one the keys hold (either column
    alone may pass most rows: a product's many reviews, a sort key shared across items). Only the
    rows that pass, about as many as the keys however many rows a file holds, are then matched on
    the whole key: in a Python set of key tuples while they are few (a hash join costs about 7 ms
    a file, whatever its size), by a hash join beyond. The sets are built once for all the files
    a merge reads."""

    # Candidate rows up to which the Python set is the cheaper way (about 1 µs a row).
    SET_ROWS = 20_000

    def __init__(self, keys: pa.Table, key_columns: list[str]):
        self.key_columns = key_columns
        self.values = {name: pc.unique(keys.column(name).combine_chunks()) for name in key_columns}
        self.keys = keys.select(key_columns)
        self._tuples: dict[tuple[pa.DataType, ...], set[tuple[Any, ...]]] = {}
        self._cast: dict[tuple[str, pa.DataType], pa.Array] = {}

    def _values(self, name: str, kind: pa.DataType) -> pa.Array:
        """The keys' distinct values of column ``name`` as ``kind`` (cast once per type)."""
        if (name, kind) not in self._cast:
            self._cast[(name, kind)] = self.values[name].cast(kind)
        return self._cast[(name, kind)]

    def touched_many(self, tables: list[pa.Table]) -> list[pa.Array]:
        """``touched`` of each of ``tables``, matched together: consecutive tables whose key columns
        have the same types are concatenated and looked up at once (the lookup's hash set is built
        per call, so one call for many files instead of one each)."""
        out: list[pa.Array] = []
        start = 0
        while start < len(tables):
            end = start + 1
            schema = tables[start].select(self.key_columns).schema
            while end < len(tables) and tables[end].select(self.key_columns).schema.equals(schema):
                end += 1
            group = [t.select(self.key_columns) for t in tables[start:end]]
            mask = self.touched(pa.concat_tables(group)) if len(group) > 1 else self.touched(group[0])
            offset = 0
            for t in group:
                out.append(mask.slice(offset, t.num_rows))
                offset += t.num_rows
            start = end
        return out

    def _key_set(self, types: tuple[pa.DataType, ...]) -> set[tuple[Any, ...]]:
        """The keys as tuples of Python values, cast to ``types`` first (a file's key column types)."""
        if types not in self._tuples:
            columns = [self.keys.column(name).cast(kind).to_pylist() for name, kind in zip(self.key_columns, types)]
            self._tuples[types] = {key for key in zip(*columns) if None not in key}  # null matches nothing
        return self._tuples[types]

    def touched(self, rows: pa.Table) -> pa.Array:
        """Per row of ``rows`` (holding the key columns): is its key among the keys? (bool, no nulls)"""
        maybe = None
        for name in self.key_columns:
            found = pc.is_in(rows.column(name), value_set=self._values(name, rows.schema.field(name).type))
            maybe = found if maybe is None else pc.and_(maybe, found)
        if isinstance(maybe, pa.ChunkedArray):
            maybe = maybe.combine_chunks()
        maybe = pc.fill_null(maybe, False)
        if len(self.key_columns) == 1 or not pc.any(maybe).as_py():
            return maybe
        at = pc.indices_nonzero(maybe)
        mask = np.zeros(rows.num_rows, dtype=bool)
        if len(at) <= self.SET_ROWS:
            wanted = self._key_set(tuple(rows.schema.field(name).type for name in self.key_columns))
            values = zip(*(rows.column(name).take(at).to_pylist() for name in self.key_columns))
            mask[[row for row, key in zip(at.to_pylist(), values) if key in wanted]] = True
            return pa.array(mask)
        candidates = pa.table({name: rows.column(name).take(at) for name in self.key_columns}).append_column("__row", at)
        marked = pa.table({name: self.keys.column(name).cast(candidates.schema.field(name).type)
                           for name in self.key_columns})
        found = candidates.join(marked, self.key_columns, join_type="left semi").column("__row")
        mask[found.to_numpy()] = True
        return pa.array(mask)


def _matches(rows: pa.Table, keys: pa.Table, key_columns: list[str]) -> pa.Array:
    """Per row of ``rows``: is its key among ``keys``?"""
    return KeyMatcher(keys, key_columns).touched(rows)


def _rewrite(affected: list[Affected], plan: TablePlan, target: FileTarget, s3: S3Options | None,
             notify: ProgressCallback = lambda kind, info: None) -> list[WrittenFile]:
    """Each affected file again, in the plan's schema, without its touched rows and without the
    rows its delete files hid. Files are read and filtered ahead on threads (lake/read_ahead.py:
    READ_AHEAD_BYTES of Parquet at most) while the one before is written, and written in their
    order; the writer flushes its buffers by size. ``notify`` gets the ``merge`` rewrite events,
    one step per file in order."""
    if not affected:
        return []
    data = resolve(target.data, s3)
    rewrite_target = FileTarget(data=target.data, run=f"{target.run}-merge", partition=target.partition,
                                source_column=target.source_column, compression=target.compression,
                                metrics=target.metrics)
    writer = PartitionedWriter(data, plan.arrow_schema, rewrite_target, worker=0)
    steps = _Steps(notify, "rewrite", len(affected))
    locate = resolver(s3)  # one S3 client for every file read: connections are reused
    try:
        with ReadAhead(affected, lambda a: _kept_rows(a, plan.arrow_schema, s3, locate),
                       size=lambda a: a.data_file.file_size_in_bytes, thread_name_prefix="merge-rewrite") as kept_rows:
            for kept in kept_rows:
                if kept.num_rows:
                    writer.write(kept)
                del kept  # not held while the next file is waited for
                steps.advance(len(affected))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _kept_rows(a: Affected, schema: pa.Schema, s3: S3Options | None, locate: Callable[[str], Location]) -> pa.Table:
    """An affected file's rows in ``schema`` but its touched and hidden ones, on a read-ahead thread
    (only the rows kept wait for the writer), allocated as read_data_file's are (the system allocator)."""
    from ddb_assets.lake.maintenance import read_data_file

    pool = pa.system_memory_pool()
    rows = read_data_file(a.data_file, schema, s3, locate)
    gone = pa.concat_arrays([a.touched_positions, a.hidden.cast(pa.int64())], memory_pool=pool)
    return pc.filter(rows, keep_mask(rows.num_rows, gone, memory_pool=pool), memory_pool=pool)


def _present(held: pa.Table, keys: pa.Table, key_columns: list[str]) -> int:
    """How many of the export's deletes name a key the table held."""
    deletes = keys.filter(pc.equal(keys.column("op"), DELETE)).select(key_columns)
    if not deletes.num_rows or not held.num_rows:
        return 0
    return int(pc.sum(_matches(deletes, held.cast(deletes.schema), key_columns)).as_py() or 0)


__all__ = ["COPY_ON_WRITE", "ChainError", "MERGE_MODES", "MERGE_MODE_PROPERTY", "MERGE_ON_READ", "MergeResult",
           "merge_mode_of", "affected_files", "applied_already", "check_chain", "merge_export"]
