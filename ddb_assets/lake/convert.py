"""Export -> Iceberg table: the two-stage, parallel, bounded-memory conversion, committed once.

Stage 1, one task per data file: read, verify the md5 and the item count, then gunzip a piece
(about 32 MiB, ending at a line end) at a time, parse it into Arrow, validate, profile every item
and spill the parsed piece to a local Arrow IPC file.
Between stages, the profiles of all files are merged and the table schema is planned: the stored
schema of the Iceberg table (if it exists) extended by what the export asks for (lake/evolution.py).
Stage 2, one task per worker over its share of the spilled files: flatten to the planned columns,
split by partition, write Parquet data files. Then one Iceberg commit makes them a snapshot
(lake/commit.py).

When the export's profile is known already (``known``: the Dagster ``raw_export`` asset read every
item before, or ``inspect --save-profile``), the schema is planned first and each worker reads,
checks, flattens and writes its share of the data files in one pass: no spill, no work folder.

Each stage runs on ``workers`` processes; a worker holds one piece at a time, so peak memory is
about workers x one piece (plus the writer's buffer budget), independent of the export's size and
of how skewed its files are (a hot partition key can make one data file several times the others).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait as wait_for
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.buffers import ByteArena, Text, count_lines_before, gunzip_pieces
from ddb_assets.exports.decode import (
    carry_deep_values,
    check_key_attributes,
    check_utf8,
    detect_dictionary_maps,
    first_item_names,
    ion_to_json_lines,
    parse_items,
)
from ddb_assets.exports.json_reader import DEFAULT_JSON_READER, ReaderCounts, check_reader
from ddb_assets.exports.changes import DELETE, UPSERT, ChangeColumns, incremental_to_items
from ddb_assets.exports.errors import ChecksumMismatch, ExportFormatError, ItemCountMismatch
from ddb_assets.exports.reader import DataFile, Export, open_export
from ddb_assets.exports.storage import S3Options, remove_quietly, resolve
from ddb_assets.lake.catalog import CatalogConfig, load_table
from ddb_assets.lake.commit import (NOT_COMMITTED, TABLE_PROPERTIES, CommitResult, ExportRecord, check_written,
                                   commit_export, current_result)
from ddb_assets.lake.destination import LakeTarget, lake_target as _lake_target
from ddb_assets.lake.guards import Verdict, check_identity, check_location_free, check_state
from ddb_assets.lake.merge import MergeResult, merge_export
from ddb_assets.lake.change_history import HistoryResult, record_history
from ddb_assets.lake.evolution import TablePlan, check_options, plan_table
from ddb_assets.lake.file_stats import metrics_properties
from ddb_assets.lake.record import INCREMENTAL, high_water_mark, instant
from ddb_assets.lake.flatten import ItemColumns, flatten_items, partition_names
from ddb_assets.lake.lifetime import worker_start
from ddb_assets.lake.leftovers import RunFiles
from ddb_assets.lake.partitioning import PartitionBy
from ddb_assets.lake.plan_checks import ProfileMismatch, check_profile, plan_misfits
from ddb_assets.lake.profile import Profile, profile_items
from ddb_assets.lake.scratch import make_scratch, remove_stale_scratch
from ddb_assets.lake.shards.options import RunnerOptions
from ddb_assets.lake.schema import OptionError, SchemaOptions, TableSchema
from ddb_assets.lake.unique_keys import DuplicateFinder, check_unique_keys
from ddb_assets.lake.writer import (SMALL_PARTITION_BYTES, FileTarget, PartitionedWriter, WrittenFile,
                                    merge_small_files, parquet_options)

ProgressCallback = Callable[[str, dict[str, Any]], None]
# Below both (and with workers=0), an export is converted in this process: see workers_for.
SMALL_EXPORT_ITEMS = 20_000
SMALL_EXPORT_BYTES = 32 << 20  # the summary's billedSizeBytes (0 where an export does not say)
_T = TypeVar("_T")


@dataclass(frozen=True)
class ConvertOptions:
    """How an export becomes (or updates) a lake table. Shared by the CLI and the Dagster assets."""

    partition_by: str | None = None  # "year", "month(created_at)", "bucket(16, pk)" (lake/partitioning.py)
    naming: str = "snake"
    workers: int = 0  # 0: one per core (one, in process, for a small export: workers_for)
    max_depth: int = 3
    dictionary_keys: int = 64
    only_partitions: frozenset[str] | None = None  # rewrite just these; keep the others as they are
    rebuild: bool = False  # plan the schema from scratch (new field ids) and replace every data file
    allow_overlap: bool = False  # an incremental window may start before the table's mark (applied by write time)
    # The DynamoDB table's key attributes (partition key, then sort key), when known (the settings'
    # key_attributes, convert --key): every item must hold each as S, N or B, and a full export must
    # hold each key once (ExportFormatError otherwise). An incremental export's Keys are checked always.
    key_attributes: tuple[str, ...] = ()
    # Incremental merges: "copy-on-write" or "merge-on-read" (lake/merge.py); None: the table's
    # write.merge.mode, else copy-on-write.
    merge_mode: str | None = None
    history: bool = False  # append each incremental export's changes to <table>_changes (lake/change_history.py)
    work_dir: str | None = None  # where parsed files are spilled between the stages
    buffer_bytes: int = 64 << 20  # per worker, for partition buffers
    piece_bytes: int = 32 << 20  # decompressed JSON parsed at a time per worker: bounds memory
    compression: str = "zstd"  # Parquet codec: zstd, lz4, snappy, gzip or none (lake/writer.py)
    json_reader: str = DEFAULT_JSON_READER  # "arrow-rs" (pyarrow's where it cannot be shown exact) or "pyarrow"
    small_partition_bytes: int = SMALL_PARTITION_BYTES  # a partition's files merged into one below this (0: never)
    table_name: str | None = None  # default: the destination folder's name
    catalog: CatalogConfig = CatalogConfig()
    s3: S3Options | None = None  # explicit S3 endpoint/region (else the environment's)
    # Options to take from the table as stored, when it exists (the CLI's options not given):
    # any of "partition_by", "naming", "max_depth", "dictionary_keys".
    from_table: frozenset[str] = frozenset()
    runner: RunnerOptions = RunnerOptions()  # local: the process pool here; spark: shard tasks (lake/shards)
    # Maps carried as JSON text from every piece, whatever the piece shows (attribute paths through
    # maps), besides those detected: set by the conversion itself for an incremental export (the
    # table's JSON map columns: see _read_and_write).
    dictionary_maps: frozenset[tuple[str, ...]] = frozenset()

    def with_table(self, stored: "TableSchema | None") -> "ConvertOptions":
        """These options with those named in ``from_table`` taken from the stored table. A rebuild
        takes them too: it re-plans the columns (new field ids), and changes the partitioning or
        naming only where asked (``--partition-by ''`` for none), never by omission."""
        if stored is None or not self.from_table:
            return self
        values = {"partition_by": stored.partition.text if stored.partition else None,
                  "naming": stored.options.naming, "max_depth": stored.options.max_depth,
                  "dictionary_keys": stored.options.dictionary_keys}
        return replace(self, **{k: v for k, v in values.items() if k in self.from_table})

    def __post_init__(self) -> None:
        # Bad options fail here, before anything is read: the codec, the JSON reader, partition_by,
        # the naming options (SchemaOptions), and every count and size.
        parquet_options(self.compression)
        check_reader(self.json_reader)
        self.partition
        self.schema_options
        if self.merge_mode is not None and self.merge_mode not in ("copy-on-write", "merge-on-read"):
            raise OptionError("merge_mode", f"must be copy-on-write or merge-on-read, not {self.merge_mode!r}")
        for option, least, what in (("workers", 0, "0 (one per core) or more"),
                                    ("buffer_bytes", 1 << 10, "at least 1 KiB"),
                                    ("piece_bytes", 1 << 10, "at least 1 KiB"),
                                    ("small_partition_bytes", 0, "0 (never merge) or more")):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise OptionError(option, f"must be {what}, not {value!r}")

    @property
    def schema_options(self) -> SchemaOptions:
        return SchemaOptions(naming=self.naming, max_depth=self.max_depth, dictionary_keys=self.dictionary_keys)

    @property
    def partition(self) -> PartitionBy | None:
        return PartitionBy.parse(self.partition_by)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def workers_for(self, export: Export) -> int:
        """Worker processes for ``export``: ``workers`` if set; else one per core, but a single
        worker, in this process, for a small export. Starting a pool costs about a second (several
        inside a threaded host such as a Dagster run, where workers come from a fork server): a
        3,000-item export converts in 0.9 s inline against 4-5 s with two workers."""
        if not self.workers and export.summary.item_count < SMALL_EXPORT_ITEMS and \
                export.summary.billed_size_bytes < SMALL_EXPORT_BYTES:
            return 1
        return min(self.worker_count, max(1, len(export.files)))


@dataclass
class ConvertResult:
    commit: CommitResult
    table: str  # namespace.name in the catalog
    location: str  # the table's location (data/ and metadata/ below it)
    profile: Profile
    plan: TablePlan
    export: Export
    written: list[WrittenFile]
    compressed_bytes: int
    uncompressed_bytes: int
    seconds: float
    scratch_bytes: int = 0  # the most the work folder held (every parsed piece, before stage 2)
    one_pass: bool = False  # converted in one pass from a known profile (no work folder)
    merge: MergeResult | None = None  # an incremental export's merge (upserts, deletes, files rewritten)
    history: HistoryResult | None = None  # with options.history: what the change history appended
    history_error: str | None = None  # the history's append failed (the merge is committed; the next run appends it)
    shards: int = 0  # shard tasks an engine ran (options.runner); 0: converted by the local pool
    json_reader: str = DEFAULT_JSON_READER  # the setting the items were parsed under
    readers: ReaderCounts = field(default_factory=ReaderCounts)  # pieces parsed by each reader
    staged: bool = False  # committed from files an earlier read staged (lake/staging.py): not read here
    path: str = ""  # how the export was read and why: "one pass: planned from ...", "two stages: ..."
    warnings: list[str] = field(default_factory=list)  # what went wrong without failing the run

    @property
    def parse_path(self) -> str:
        """Which JSON reader parsed the pieces, e.g. ``arrow-rs: 38 of 40 pieces, 2 fell back to pyarrow's reader``
        (for an ION export, how its Ion text was read: ReaderCounts.describe)."""
        return self.readers.describe(self.json_reader, self.export.summary.output_format)

    @property
    def unchanged(self) -> bool:
        """The table held this export already: nothing was committed (``commit`` is the table as it is)."""
        return self.commit.unchanged

    @property
    def partitions(self) -> dict[str, dict[str, int]]:
        """Rows, bytes and files this run wrote, per partition name."""
        out: dict[str, dict[str, int]] = {}
        for w in self.written:
            entry = out.setdefault(w.partition, {"rows": 0, "bytes": 0, "files": 0})
            entry["rows"] += w.rows
            entry["bytes"] += w.bytes
            entry["files"] += 1
        return dict(sorted(out.items()))


def _release_memory() -> None:
    # Arrow's allocator keeps freed pages for reuse; a long-lived worker that has seen many files
    # would otherwise hold more memory than one file needs.
    pa.default_memory_pool().release_unused()


# -- stage 1 -----------------------------------------------------------------------------------

@dataclass
class _Parsed:
    index: int
    spills: list[str]  # the file's parsed pieces, in order
    profile: Profile
    compressed: int
    uncompressed: int
    spilled: int = 0  # bytes of the spills
    readers: ReaderCounts = field(default_factory=ReaderCounts)  # pieces parsed by each JSON reader

    @property
    def rows(self) -> int:
        return self.profile.items


class _WorkerState(threading.local):
    """Per worker process: the JSON schema learned so far and the dictionary maps detected in this
    conversion, so that later files parse with an explicit schema (see exports.decode.parse_items),
    and the byte arena each file is decompressed into (see exports.buffers). Per thread, too:
    with workers=1 the files are read in the caller's thread, and callers may convert in several."""

    def __init__(self) -> None:
        self.conversion: str | None = None
        self.schema: pa.Schema | None = None
        self.dictionary_maps: frozenset[tuple[str, ...]] | None = None  # attribute paths through maps
        self.decompressed = ByteArena()

    def begin(self, conversion: str) -> None:
        if self.conversion != conversion:
            self.conversion, self.schema, self.dictionary_maps = conversion, None, None

    def release(self) -> None:
        self.conversion, self.schema, self.dictionary_maps = None, None, None
        self.decompressed.release()


_worker = _WorkerState()


def _read_file(index: int, data_file: DataFile, conversion: str, dictionary_keys: int,
               partition: PartitionBy | None, piece_bytes: int,
               use: Callable[[int, pa.StructArray, ChangeColumns], None], incremental: bool = False,
               json_reader: str = DEFAULT_JSON_READER, key_attributes: tuple[str, ...] = (),
               dictionary_maps: frozenset[tuple[str, ...]] = frozenset()) -> _Parsed:
    """Stream one data file a piece at a time: parse, validate and profile each piece and hand its
    items and their change columns to ``use(piece number, items, changes)``; the md5 and the item
    (line) count are checked at the end. An incremental export's lines become items first (the new
    image of an upsert, the keys of a delete: exports/changes.py)."""
    _worker.begin(conversion)
    compressed = data_file.stream_verified()  # read as the pieces need it, md5 checked at the end
    profile, raw_size, readers = Profile(), 0, ReaderCounts()
    try:
        pieces = gunzip_pieces(compressed, _worker.decompressed, obj=data_file.name, piece_bytes=piece_bytes)
        for number, (text, offset) in enumerate(pieces):
            raw_size += len(text)
            try:
                table, first_line, changes = _parse_piece(text, data_file, first=number == 0,
                                                          dictionary_keys=dictionary_keys, incremental=incremental,
                                                          json_reader=json_reader, counts=readers,
                                                          key_attributes=key_attributes,
                                                          dictionary_maps=dictionary_maps)
            except ExportFormatError as error:
                raise _in_file(error, data_file, offset) from None
            del text
            if first_line:
                profile.first_line = (index, first_line)
            item = carry_deep_values(table.column("Item").combine_chunks())  # bounded depth: see there
            del table
            piece_profile = profile_items(item, index)
            piece_profile.key_names = changes.key_names
            if incremental:
                piece_profile.deletes = int(pc.sum(pc.equal(changes.operation, DELETE)).as_py() or 0)
            if partition is not None:
                piece_profile.partition_values = partition_names(ItemColumns(item), partition, len(item))
            profile.merge(piece_profile)
            if len(item):
                use(number, item, changes)
            del item
        compressed.verify()
    except ExportFormatError as error:
        if not isinstance(error, ChecksumMismatch):
            compressed.verify()  # damaged bytes explain any later error: report the mismatch
        raise
    if profile.items != data_file.manifest.item_count:
        raise ItemCountMismatch(data_file.name, f"holds {profile.items} items, manifest-files.json says "
                                                f"{data_file.manifest.item_count}")
    _release_memory()
    return _Parsed(index, [], profile, compressed.size, raw_size, readers=readers)


def _parse_file(index: int, data_file: DataFile, spill_dir: str | None, dictionary_keys: int,
                conversion: str, partition: PartitionBy | None = None, piece_bytes: int = 32 << 20,
                incremental: bool = False, json_reader: str = DEFAULT_JSON_READER,
                key_attributes: tuple[str, ...] = (),
                dictionary_maps: frozenset[tuple[str, ...]] = frozenset()) -> _Parsed:
    """Stage 1 of two: read a data file, spilling its parsed pieces to ``spill_dir`` (if any)."""
    spills: list[str] = []
    spilled = 0

    def spill(number: int, item: pa.StructArray, changes: ChangeColumns) -> None:
        nonlocal spilled
        if spill_dir is not None:
            # One IPC file per piece: a later piece may bring attributes (a wider schema).
            spills.append(os.path.join(spill_dir, f"{index:06d}-{number:04d}.arrow"))
            spilled += _spill(pa.table({"Item": item, "op": changes.operation,
                                        "write_micros": changes.write_micros}), spills[-1])

    parsed = _read_file(index, data_file, conversion, dictionary_keys, partition, piece_bytes, spill, incremental,
                        json_reader, key_attributes, dictionary_maps)
    return replace(parsed, spills=spills, spilled=spilled)


class ScratchSpaceError(OSError):
    """The work folder cannot take the parsed pieces (full disk, quota, file size limit)."""


def _make_scratch(work_dir: str | None) -> str:
    """This run's scratch folder in ``work_dir``; a work folder that cannot take it (read-only,
    full, not a folder) is named as the work folder, not mistaken for the destination."""
    try:
        return make_scratch(work_dir)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise ScratchSpaceError(
            f"cannot make a scratch folder in the work folder {work_dir or tempfile.gettempdir()} ({reason}). A "
            f"conversion keeps the parsed export there between its two stages: give a writable folder with room "
            f"(convert --work-dir, or convert_work_dir in the settings)") from None


def _spill(table: pa.Table, path: str) -> int:
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return os.path.getsize(path)
    except OSError as exc:
        raise ScratchSpaceError(
            f"cannot write parsed items to the work folder {os.path.dirname(os.path.dirname(path))} ({exc}). "
            f"A conversion keeps the parsed export there between its two stages, about 0.8x the size of "
            f"its decompressed JSON at most: free space there or choose a bigger folder (convert --work-dir, "
            f"or convert_work_dir in the settings)") from None


def _parse_piece(text: Text, data_file: DataFile, *, first: bool, dictionary_keys: int,
                 incremental: bool = False,
                 json_reader: str = DEFAULT_JSON_READER, counts: ReaderCounts | None = None,
                 key_attributes: tuple[str, ...] = (),
                 dictionary_maps: frozenset[tuple[str, ...]] = frozenset()) -> tuple[pa.Table, tuple[str, ...], ChangeColumns]:
    """One piece of a data file -> (its items, the attribute names of its first item if ``first``,
    the items' change columns)."""
    output_format = data_file.output_format
    changes = None
    if incremental:
        if output_format != "ION":
            check_utf8(text, obj=data_file.name)
        lines, changes = incremental_to_items(text.view(), obj=data_file.name, ion=output_format == "ION")
        text, output_format = Text.of(lines), "DYNAMODB_JSON"
    elif output_format == "ION":
        # Ion lines become DynamoDB JSON lines first, so both formats take the same fast path.
        text, output_format = Text.of(ion_to_json_lines(text, obj=data_file.name)), "DYNAMODB_JSON"
    if _worker.dictionary_maps is None:
        _worker.dictionary_maps = _outermost(detect_dictionary_maps(text, dictionary_keys) | dictionary_maps)
    first_line = first_item_names(text) if first else ()
    table, _worker.schema = parse_items(text, output_format=output_format, obj=data_file.name,
                                        known=_worker.schema, dictionary_maps=_worker.dictionary_maps,
                                        json_reader=json_reader, counts=counts)
    if key_attributes:
        check_key_attributes(table.column("Item"), text, key_attributes, obj=data_file.name)
    return table, first_line, changes if changes is not None else ChangeColumns.upserts(table.num_rows)


def _outermost(paths: frozenset[tuple[str, ...]]) -> frozenset[tuple[str, ...]]:
    """Map paths without those inside another (a map carried as text carries its maps too)."""
    return frozenset(p for p in paths if not any(p[:n] in paths for n in range(1, len(p))))


def _json_maps(stored: TableSchema) -> frozenset[tuple[str, ...]]:
    """The attribute paths through maps that ``stored`` holds as JSON text when they are maps."""
    return frozenset(tuple(c.path) for c in stored.columns
                     if c.encoding == "json" and c.descriptor == "M" and all(isinstance(s, str) for s in c.path))


def _in_file(error: ExportFormatError, data_file: DataFile, offset: int) -> ExportFormatError:
    """An error located in a piece, with its line number counted from the start of the file."""
    if error.line is None or offset == 0:
        return error
    stream = data_file.stream_verified()
    try:
        line = error.line + count_lines_before(stream, offset, obj=error.obj)
    finally:
        stream.close()
    return type(error)(error.obj, error.problem, line=line)


# -- stage 2 -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _WriteJob:
    """What every writing worker of one run shares (picklable)."""

    plan: TablePlan
    target: FileTarget
    only: frozenset[str] | None
    buffer_bytes: int
    s3: S3Options | None
    key_columns: tuple[str, ...] | None = None  # an incremental export's key columns: its changes' keys are kept
    skip_before_micros: int | None = None  # allow_overlap: changes written before the table's mark are skipped


def _write_items(writer: PartitionedWriter, item: pa.StructArray, changes: ChangeColumns, job: _WriteJob,
                 keys: list[pa.Table]) -> None:
    """Flatten items and write them; for an incremental export, keep every change's keys (for the
    merge) and write only the upserts' new images."""
    if job.skip_before_micros is not None:
        recent = pc.fill_null(pc.greater_equal(changes.write_micros, job.skip_before_micros), True)
        item, changes = item.filter(recent), ChangeColumns(changes.operation.filter(recent),
                                                           changes.write_micros.filter(recent), changes.key_names)
    flat = flatten_items(item, job.plan)
    if job.key_columns is not None:
        keys.append(flat.select(list(job.key_columns)).append_column("op", changes.operation)
                    .append_column("write_micros", changes.write_micros))
        flat = flat.filter(pc.equal(changes.operation, UPSERT))
    if flat.num_rows:
        writer.write(flat)


def _keys_table(keys: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(keys) if keys else None


def _partition_writer(worker: int, job: _WriteJob) -> PartitionedWriter:
    data = resolve(job.target.data, job.s3)
    only = job.only
    return PartitionedWriter(data, job.plan.arrow_schema, job.target, worker, job.buffer_bytes,
                             keep=(lambda name: name in only) if only is not None else (lambda name: True))


def _write_group(worker: int, spills: list[str], job: _WriteJob) -> tuple[list[WrittenFile], pa.Table | None]:
    writer = _partition_writer(worker, job)
    keys: list[pa.Table] = []
    try:
        for spill in spills:
            # Mapped, the table's buffers are the page cache's pages: no copy into fresh memory.
            with pa.memory_map(spill, "r") as source:
                table = pa.ipc.open_file(source).read_all()
            item = table.column("Item").combine_chunks()
            changes = ChangeColumns(table.column("op").combine_chunks(), table.column("write_micros").combine_chunks(),
                                    ())
            _write_items(writer, item, changes, job, keys)
            del table, item, changes
            os.remove(spill)  # its disk and page cache are free as soon as it is written out
            _release_memory()
        return writer.close(), _keys_table(keys)
    except BaseException:
        writer.abort()
        raise


# -- one pass, when the profile is known ---------------------------------------------------------

def _convert_files(worker: int, files: list[tuple[int, DataFile]], job: _WriteJob, options: ConvertOptions,
                   conversion: str, export_id: str,
                   incremental: bool = False) -> tuple[list[WrittenFile], list[_Parsed], pa.Table | None]:
    """Read, check, profile, flatten and write a worker's share of the data files in one pass."""
    writer = _partition_writer(worker, job)
    keys: list[pa.Table] = []

    def write(number: int, item: pa.StructArray, changes: ChangeColumns) -> None:
        try:
            _write_items(writer, item, changes, job, keys)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            # Loudly wrong (a decimal where the profile saw integers): the profile is not this
            # export's. Quietly wrong (a type the plan has no column for) is found by the end check.
            error = ProfileMismatch(f"the items of export {export_id} do not fit the schema planned from the "
                                    f"profile given ({exc}). Profile the export again (inspect --save-profile), "
                                    f"or convert without a profile")
            error.detail = str(exc)  # type: ignore[attr-defined] - kept when pickled from a worker
            raise error from None

    try:
        reads = [_read_file(index, data_file, conversion, options.dictionary_keys, options.partition,
                            options.piece_bytes, write, incremental, options.json_reader, options.key_attributes,
                            options.dictionary_maps)
                 for index, data_file in files]
        return writer.close(), reads, _keys_table(keys)
    except BaseException:
        writer.abort()
        raise


def convert_share(worker: int, files: list[tuple[int, DataFile]], options: ConvertOptions, *, conversion: str,
                  export_id: str, incremental: bool = False, plan: TablePlan | None = None,
                  target: FileTarget | None = None) -> tuple[list[WrittenFile], list[_Parsed]]:
    """One share of an export's data files (``(index in the manifest, file)`` pairs), in this
    process: each read, checked (md5, item count) and profiled, as a local worker does; with a
    ``plan`` and its file ``target``, also flattened and written in one pass, ``worker`` numbering
    the files. What a shard task runs (lake/shards). Returns (files written, one read per file:
    ``index``, ``profile``, ``compressed`` and ``uncompressed`` bytes). Raises ExportFormatError
    (bad input: the files written so far are removed) or ProfileMismatch (items ``plan`` cannot hold)."""
    try:
        if plan is None:
            return [], [_parse_file(index, data_file, None, options.dictionary_keys, conversion, options.partition,
                                    options.piece_bytes, incremental, options.json_reader, options.key_attributes)
                        for index, data_file in files]
        if incremental or target is None:
            raise ValueError("writing a share needs a file target, and a full export (incremental ones merge locally)")
        job = _WriteJob(plan, target, options.only_partitions, options.buffer_bytes, options.s3)
        written, reads, _ = _convert_files(worker, files, job, options, conversion, export_id)
        return written, reads
    finally:
        _worker.release()  # a long-lived worker (a Spark executor's Python) runs other shards next


def _run_one_pass(pool: Executor, export: Export, job: _WriteJob, options: ConvertOptions, workers: int,
                  notify: ProgressCallback) -> tuple[list[_Parsed], list[WrittenFile], list[pa.Table]]:
    conversion = uuid.uuid4().hex
    # Each worker keeps its partitions' files open across its data files (one file per partition
    # and worker, not per data file): so the shares are fixed up front, biggest files first.
    shares = _balance(list(enumerate(export.files)), workers, lambda indexed: indexed[1].manifest.item_count)
    futures = [pool.submit(_convert_files, worker, share, job, options, conversion, export.export_id,
                           export.summary.export_type == INCREMENTAL)
               for worker, share in enumerate(shares) if share]
    reads: list[_Parsed] = []
    written: list[WrittenFile] = []
    keys: list[pa.Table] = []
    try:
        for future in futures:
            files, share_reads, share_keys = future.result()
            reads.extend(share_reads)
            written.extend(files)
            if share_keys is not None:
                keys.append(share_keys)
            for read in share_reads:
                notify("parsed", {"index": read.index, "rows": read.rows, "bytes": read.uncompressed,
                                  "compressed": read.compressed, "readers": read.readers})
            notify("written", {"files": len(files), "rows": sum(f.rows for f in files)})
    except BaseException:
        _discard(futures, written, options.s3, lambda result: result[0], pool)
        raise
    return reads, written, keys


# -- orchestration -----------------------------------------------------------------------------

class _InlineExecutor(Executor):
    """Runs tasks in this process (workers=1): simple to debug, nothing to pickle."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def _executor(workers: int) -> Executor:
    # Workers end with the process that owns them (lake/lifetime.py): a conversion killed with
    # kill -9 must not leave workers behind, writing files that no commit will ever reference.
    if workers <= 1:
        return _InlineExecutor()
    if threading.active_count() == 1:
        # fork: workers start at once with everything already imported. Only safe when no other
        # thread could hold a lock at fork time.
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=worker_start, initargs=(os.getpid(), None))
    # Inside a threaded host (Dagster, a web server): forkserver, with our modules preloaded once.
    # The workers' parent is then the fork server (which exits when this process does); they
    # also watch this process itself.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=worker_start,
                               initargs=(None, os.getpid()))


def lake_target(dest: str | os.PathLike[str], options: ConvertOptions) -> LakeTarget:
    """The table at ``dest`` in the catalog of ``options`` (lake/destination.py)."""
    return _lake_target(dest, options.table_name, options.catalog, options.s3)


def stored_schema(table: Any) -> TableSchema | None:
    if table is None:
        return None
    return TableSchema.from_iceberg(table.schema(), table.properties, table.metadata.last_column_id)


def convert_export(source: str | os.PathLike[str] | Export, dest: str | os.PathLike[str],
                   options: ConvertOptions = ConvertOptions(), progress: ProgressCallback | None = None,
                   known: Profile | None = None) -> ConvertResult:
    """Convert an export into the Iceberg table at ``dest`` (its location) in one commit.

    Everything the manifests and the catalog can tell is checked before a data file is read
    (``preflight``: the destination, the table's location and source table, its options, the
    export's order or chain); an export the table holds already changes nothing (the result is
    ``unchanged``). With ``known``, the export's profile from an earlier read (``profile_export``:
    the Dagster ``raw_export`` asset, ``inspect --save-profile``), the schema is planned up front
    and the export is converted in one pass: no spill, no work folder. Every item is profiled
    again on the way, and a profile that turns out not to be this export's fails the run
    (ProfileMismatch). Raises ExportFormatError (bad input: nothing committed), Refused (lake/guards.py),
    SchemaConflict, PartitionError, CommitConflict.
    """
    from ddb_assets.lake.leftovers import folders_removed_on_failure

    with folders_removed_on_failure(dest):  # a run that fails leaves no folder it made
        return _convert_export(source, dest, options, progress, known)


def _convert_export(source: str | os.PathLike[str] | Export, dest: str | os.PathLike[str], options: ConvertOptions,
                    progress: ProgressCallback | None, known: Profile | None) -> ConvertResult:
    notify = progress or (lambda kind, info: None)
    started = time.monotonic()
    options = replace(options, s3=(options.s3 or S3Options()).with_environment())
    export = source if isinstance(source, Export) else open_export(source, options.s3)
    if known is not None and known.items != export.summary.item_count:
        raise ProfileMismatch(f"the profile given describes {known.items:,} items; export {export.export_id} "
                              f"holds {export.summary.item_count:,}: it is another export's")
    target, table, stored, options, verdict = preflight(dest, export, options)
    if verdict.unchanged:
        # An incremental export applied before may still be missing from the change history (an
        # append that failed after its merge): this run catches it up.
        history, history_error = _history(target, export, options, notify) if export.summary.incremental \
            else (None, None)
        return ConvertResult(current_result(table), f"{target.namespace}.{target.name}", target.location.uri,
                             Profile(), TablePlan(stored or TableSchema([]), frozenset()), export, [], 0, 0,
                             time.monotonic() - started, history=history, history_error=history_error)
    notify("opened", {"files": len(export.files), "items": export.summary.item_count,
                      "export_id": export.export_id})
    if options.runner.kind != "local" and export.summary.export_type != INCREMENTAL:
        # Incremental exports merge on the local runner (their changes' keys are not shard results yet).
        from ddb_assets.lake.shards.driver import convert_in_shards

        return convert_in_shards(export, target, table, stored, options, notify, known, started,
                                 guess=saved_guess(dest, export.export_id, options.s3) if known is None else None)
    # The run ids _read_and_write names its files with (a replanned read takes a second).
    runs = _run_files(target, options.s3)
    converted: _Converted | None = None
    try:
        converted = _read_and_write(export, target, table, stored, options, notify, known,
                                    # An incremental export's lines are changes: planned from its own profile only.
                                    guess=saved_guess(dest, export.export_id, options.s3)
                                    if known is None and not export.summary.incremental else None, runs=runs)
        plan, written, job, parsed, profile = converted.plan, converted.written, converted.job, converted.parsed, \
            converted.profile
        keys = converted.keys
        merged = None
        if job.key_columns is None:  # a merge says so itself, after its scan (which may take long)
            notify("committing", {"files": len(written)})  # the CLI holds Ctrl-C back from here (cli_interrupts.py)
    except BaseException:
        # Failed or interrupted before the commit (also just as the files came back): no snapshot
        # will refer to them. _read_and_write removes its own on its failures (not listed again
        # here); this is the rest, in one listing of data/.
        runs.remove(converted.written if converted is not None else [], options.s3)
        raise
    committing = job.key_columns is None  # a merge's commit begins with its own "committing" event

    def merge_progress(kind: str, info: dict[str, Any]) -> None:
        nonlocal committing
        committing = committing or kind == "committing"
        notify(kind, info)

    try:
        if job.key_columns is not None:
            merged = merge_export(target.catalog, target.identifier, plan, written, _keys_or_empty(keys, job),
                                  export_record(export), job.target, location=target.location.uri,
                                  allow_overlap=options.allow_overlap, stored_at_plan=stored, s3=options.s3,
                                  merge_mode=options.merge_mode, progress=merge_progress)
            commit = merged.commit or current_result(load_table(target.catalog, *target.identifier))
        else:
            check_written([w.path for w in written], options.s3, table=target.name)
            commit = commit_export(target.catalog, target.identifier, target.location.uri, plan, written,
                                   export_record(export), only_partitions=options.only_partitions,
                                   rebuild=options.rebuild, stored_at_plan=stored)
        if commit.unchanged:  # a concurrent run committed this export first: these files are not needed
            _remove_files(written, options.s3)
    except NOT_COMMITTED:
        _remove_run(written, target, job.target.run, options.s3)  # a merge's own files too ("<run>-merge-...")
        raise
    except BaseException:
        if not committing:  # stopped in the merge's scan or rewrite, before its commit began
            _remove_run(written, target, job.target.run, options.s3)
        raise
    # Any other failure leaves the files: the commit may have landed (an answer lost on the way).
    notify("committed", {"snapshot_id": commit.snapshot_id, "rows": commit.rows, "files": commit.added,
                         "delete_files": commit.delete_files})
    warnings = []
    if merged is None:
        warnings += [w for w in [keep_profile(dest, export.export_id, profile, options.s3)] if w]
    history, history_error = _history(target, export, options, notify) if merged is not None else (None, None)
    return ConvertResult(commit, f"{target.namespace}.{target.name}", target.location.uri, profile, plan, export,
                         written, sum(p.compressed for p in parsed), sum(p.uncompressed for p in parsed),
                         time.monotonic() - started, sum(p.spilled for p in parsed), one_pass=converted.one_pass,
                         merge=merged, history=history, history_error=history_error,
                         json_reader=options.json_reader, readers=ReaderCounts.total(p.readers for p in parsed),
                         path=converted.path, warnings=warnings)


def saved_guess(dest: str | os.PathLike[str], export_id: str, s3: S3Options | None) -> tuple[str, Profile] | None:
    """A profile to plan a one pass from, saved beside the table at ``dest``: this export's own
    (saved by an earlier read of it), else the newest of an earlier export; None if none is."""
    from ddb_assets.lake.saved_profiles import latest_profile, load_profile

    try:
        root = resolve(str(dest), s3)
    except (OSError, ValueError):
        return None
    own = load_profile(root, export_id)
    if own is not None:
        return "this export's profile, saved by an earlier read", own
    latest = latest_profile(root, other_than=export_id)
    return (f"export {latest[0]}'s profile", latest[1]) if latest is not None else None


def keep_profile(dest: str | os.PathLike[str], export_id: str, profile: Profile, s3: S3Options | None) -> str | None:
    """Save the profile of a converted export beside the table (best effort): the next export of
    the table plans its one pass from it (saved_guess). Returns why it could not be saved, or None."""
    from ddb_assets.lake.saved_profiles import save_profile

    try:
        save_profile(resolve(str(dest), s3), export_id, profile)
    except (OSError, ValueError) as exc:
        # Costs the next conversion a spill, never this one its commit: said, not raised.
        return f"the export's profile could not be saved beside the table ({exc}): the next export of the " \
               f"table will be read in two stages"
    return None


@dataclass
class _Converted:
    """An export read, checked, profiled and written as data files, not committed yet."""

    profile: Profile
    plan: TablePlan
    job: _WriteJob
    written: list[WrittenFile]
    keys: list[pa.Table]  # an incremental export's change keys (for the merge)
    parsed: list[_Parsed]  # one per data file: bytes read, readers used
    one_pass: bool
    path: str = ""  # how the export was read and why, in words (ConvertResult.path)


def _run_id() -> str:
    """A new run id (the time, then random: names sort by run)."""
    return f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


def _run_files(target: LakeTarget, s3: S3Options | None) -> RunFiles:
    """The run ids of a conversion into ``target``, its files under the table's ``data/`` (none yet)."""
    return RunFiles(resolve(target.location.join("data").uri, s3))


class _Misfit(Exception):
    """A speculative one pass met items its plan cannot hold (the message says which columns)."""


def _read_and_write(export: Export, target: LakeTarget, table: Any, stored: TableSchema | None,
                    options: ConvertOptions, notify: ProgressCallback, known: Profile | None,
                    guess: tuple[str, Profile] | None = None, runs: RunFiles | None = None) -> _Converted:
    """The local runner's read of ``export``: each data file fetched and decompressed once, then
    written as data files under the table's ``data/``. With ``known`` (this export's profile) in
    one pass; else, with ``guess`` (an earlier export's profile, by export id) and the table's
    stored schema, in one pass planned from both, which falls back to the two stages if the items
    need another plan (the export is then read a second time; the path says why); else in two
    stages through the work folder. On any failure the files written are removed. Each run id
    taken (the files' names begin with it) is taken in ``runs``: files that come back as the
    caller is interrupted are the caller's to remove (lake/leftovers.RunFiles)."""
    workers = options.workers_for(export)
    if export.summary.incremental and stored is not None and not options.rebuild:
        # The maps the table holds as JSON text (dictionaries, deep maps) are carried as text from
        # every piece, as its full export's conversion carried them: a window's small pieces show
        # too few keys to detect a dictionary, and each would bring new fields (one per key) that
        # keep arrow-rs's reader from the piece. The plan keeps them JSON text either way.
        options = replace(options, dictionary_maps=options.dictionary_maps | _json_maps(stored))
    # Runs killed before they could clean up left their scratch here: this run removes it.
    cleaned = remove_stale_scratch(options.work_dir)
    if cleaned:
        notify("scratch_removed", {"folders": [c.path for c in cleaned], "bytes": sum(c.bytes for c in cleaned)})
    runs = runs if runs is not None else _run_files(target, options.s3)  # the caller's to clean up after
    run = runs.take(_run_id())
    if known is not None:
        return _one_pass(export, target, table, stored, options, notify, known, workers, runs, run, strict=True,
                         path="one pass: planned from this export's profile")
    why = "two stages: an incremental export is planned from its own profile" if export.summary.incremental else \
        "two stages: a new table (no stored schema to plan from)" if stored is None else \
        "two stages: the table is rebuilt" if options.rebuild else \
        "two stages: no readable profile of an earlier export of this table is saved beside it"
    if guess is not None and stored is not None and not options.rebuild:
        source, profile = guess
        try:
            return _one_pass(export, target, table, stored, options, notify, profile, workers, runs, run, strict=False,
                             path=f"one pass: planned from the table's schema and {source}")
        except _Misfit as misfit:
            why = f"two stages: {misfit}; the export was read again"
            notify("replanned", {"why": str(misfit)})
            run = runs.take(_run_id())
    spill_dir = _make_scratch(options.work_dir)
    written: list[WrittenFile] = []
    try:
        with _executor(workers) as pool:
            parsed = _run_stage_one(pool, export, spill_dir, options, notify)
            profile = Profile.merged(p.profile for p in sorted(parsed, key=lambda p: p.index))
            plan = _plan(profile, options, stored, export)
            notify("planned", {"columns": len(plan.columns), "variants": plan.variants})
            job = _write_job(plan, target, run, options, export, profile, table)
            written, keys = _run_stage_two(pool, parsed, job, workers, notify)
        written = _finish_files(written, plan, job, export, options)
    except BaseException:
        runs.remove(written, options.s3)
        raise
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
        _worker.release()  # workers=1 ran the files in this process
    return _Converted(profile, plan, job, written, keys, parsed, one_pass=False, path=why)


def _one_pass(export: Export, target: LakeTarget, table: Any, stored: TableSchema | None, options: ConvertOptions,
              notify: ProgressCallback, planned_from: Profile, workers: int, runs: RunFiles, run: str, *,
              strict: bool, path: str) -> _Converted:
    """Plan from ``planned_from``, then read, check, profile and write in one pass (``run``, taken
    in ``runs``). ``strict``: the items must need exactly that plan (ProfileMismatch); else they
    must fit it (_Misfit)."""
    written: list[WrittenFile] = []
    try:
        with _executor(workers) as pool:
            plan = _plan(planned_from, options, stored, export)
            notify("planned", {"columns": len(plan.columns), "variants": plan.variants})
            job = _write_job(plan, target, run, options, export, planned_from, table)
            try:
                parsed, written, keys = _run_one_pass(pool, export, job, options, workers, notify)
            except ProfileMismatch as exc:
                if strict:
                    raise
                raise _Misfit(f"its items do not fit the planned columns ({getattr(exc, 'detail', exc)})") from None
            profile = Profile.merged(p.profile for p in sorted(parsed, key=lambda p: p.index))
            seen = _plan(profile, options, stored, export)
            if strict:
                check_profile(seen, plan, export.export_id)
            else:
                misfits = plan_misfits(seen, plan)
                if misfits:
                    raise _Misfit(f"its items need columns the plan lacked ({'; '.join(misfits)})")
                # The files hold the planned columns; what vanished is this export's own account.
                plan.vanished, plan.variants = seen.vanished, seen.variants
        written = _finish_files(written, plan, job, export, options)
    except BaseException:
        runs.remove(written, options.s3)
        raise
    finally:
        _worker.release()  # workers=1 ran the files in this process
    return _Converted(profile, plan, job, written, keys, parsed, one_pass=True, path=path)


def _finish_files(written: list[WrittenFile], plan: TablePlan, job: _WriteJob, export: Export,
                  options: ConvertOptions, find: DuplicateFinder | None = None) -> list[WrittenFile]:
    """A conversion's written files made ready to commit: small partitions' files merged, then
    (a full export) each key checked to be there once: by ``find`` (an engine's), else here."""
    written = merge_small_files(written, resolve(job.target.data, options.s3), plan.arrow_schema, job.target,
                                options.small_partition_bytes)
    if job.key_columns is None:  # a full export: each key once (an incremental one's Keys are its own)
        try:
            check_unique_keys(written, plan, options.key_attributes, export=export, s3=options.s3,
                              work_dir=options.work_dir, find=find)
        except BaseException:
            _remove_files(written, options.s3)  # the merged files: the caller holds only the ones before
            raise
    return written


def _history(target: LakeTarget, export: Export, options: ConvertOptions,
             notify: ProgressCallback) -> tuple[HistoryResult | None, str | None]:
    """With ``options.history``: append an applied incremental export (and any the history lacks
    before it) to ``<table>_changes``. Returns (what was appended, or None; why the append failed,
    or None): the merge is committed whatever the history's trouble."""
    if not options.history:
        return None, None
    try:
        history = record_history(target.catalog, target.identifier, export, s3=options.s3,
                                 compression=options.compression, piece_bytes=options.piece_bytes)
    except Exception as exc:  # noqa: BLE001 - the merge is committed whatever the history's trouble
        return None, (f"the change history {target.name}_changes was not appended ({type(exc).__name__}: "
                      f"{exc}); the merge is committed, and the next run with the history on appends it")
    notify("history", {"appended": history.appended})
    return history, None


def preflight(dest: str | os.PathLike[str], export: Export, options: ConvertOptions, *,
              ahead: bool = False) -> tuple[LakeTarget, Any, TableSchema | None, ConvertOptions, Verdict]:
    """Everything that can be known before a data file is read, from the export's manifests and
    the catalog: the destination (lake/destination.py), the table's location and source table,
    the options against the stored ones, and whether the export is new to the table and follows
    what it holds (lake/guards.py). Returns (the target, the table or None, its stored schema,
    the options completed from the table, the verdict); raises the refusals. The commit checks
    the table again (a concurrent run may change it meanwhile). ``ahead``: an incremental export
    may start after the table's mark (lake/staging.py stages it before the windows between)."""
    target = lake_target(dest, options)
    table = load_table(target.catalog, *target.identifier)
    record = export_record(export)
    if table is not None:
        check_identity(table, record, target.location.uri, options.rebuild)
        # Data files go under the table's location as the catalog records it, always.
        target = replace(target, location=resolve(table.location(), options.s3))
    else:
        check_location_free(target.catalog, target.namespace, target.name, target.location.uri)
    stored = stored_schema(table)
    options = options.with_table(stored)
    if stored is not None and not options.rebuild:
        check_options(stored, options.schema_options, options.partition)
    verdict = check_state(table, record, rebuild=options.rebuild, allow_overlap=options.allow_overlap,
                          only_partitions=options.only_partitions, name=target.name, ahead=ahead)
    return target, table, stored, options, verdict


def _keys_or_empty(keys: list[pa.Table], job: _WriteJob) -> pa.Table:
    if keys:
        return pa.concat_tables(keys)
    schema = job.plan.arrow_schema
    fields = [schema.field(name).remove_metadata() for name in job.key_columns or ()]
    return pa.schema([*fields, pa.field("op", pa.int8()), pa.field("write_micros", pa.int64())]).empty_table()


def _plan(profile: Profile, options: ConvertOptions, stored: TableSchema | None, export: Export) -> TablePlan:
    plan = plan_table(profile, options.schema_options, options.partition, stored, rebuild=options.rebuild)
    # An incremental export holds only the items that changed (none, in a quiet window): it says
    # nothing about which attributes the table's items have, so none vanished.
    if export.summary.incremental:
        plan.vanished = []
    return plan


def _write_job(plan: TablePlan, target: LakeTarget, run: str, options: ConvertOptions, export: Export,
               profile: Profile, table: Any) -> _WriteJob:
    source = plan.schema.partition_source()
    file_target = FileTarget(data=target.location.join("data").uri, run=run,
                             partition=plan.schema.partition if source is not None else None,
                             source_column=source.name if source is not None else None,
                             compression=options.compression,
                             # the writers compute the files' statistics as the table asks (a new one: ours)
                             metrics=metrics_properties(table.properties if table is not None else TABLE_PROPERTIES))
    key_columns = skip_before = None
    if export.summary.export_type == INCREMENTAL:
        key_columns = tuple(_key_column(plan, name) for name in profile.key_names)
        if options.allow_overlap and table is not None:
            mark, _ = high_water_mark(table)
            skip_before = int(instant(mark) * 1_000_000) if mark else None
    return _WriteJob(plan, file_target, options.only_partitions, options.buffer_bytes, options.s3, key_columns,
                     skip_before)


def _key_column(plan: TablePlan, attribute: str) -> str:
    for column in plan.columns:
        if column.path == (attribute,) and column.encoding == "scalar":
            return column.name
    raise ValueError(f"the key attribute {attribute!r} has no column in the table")


def export_record(export: Export) -> ExportRecord:
    summary = export.summary
    window = (getattr(summary, "export_from_time", None) or summary.extra.get("exportFromTime"),
              getattr(summary, "export_to_time", None) or summary.extra.get("exportToTime"))
    return ExportRecord(export_arn=summary.export_arn, export_id=summary.export_id,
                        export_time=summary.export_time or window[1], item_count=summary.item_count,
                        table_arn=summary.table_arn, export_type=summary.export_type,
                        output_format=summary.output_format, source=export.folder.uri,
                        export_from_time=window[0], export_to_time=window[1])


def _run_stage_two(pool: Executor, parsed: list[_Parsed], job: _WriteJob, workers: int,
                   notify: ProgressCallback) -> tuple[list[WrittenFile], list[pa.Table]]:
    groups = [sorted(group, key=lambda p: p.index)  # each worker writes its files in export order
              for group in _balance([p for p in parsed if p.rows], workers, lambda p: p.uncompressed)]
    futures = [pool.submit(_write_group, worker, [spill for p in group for spill in p.spills], job)
               for worker, group in enumerate(groups) if group]
    written: list[WrittenFile] = []
    keys: list[pa.Table] = []
    try:
        for future in futures:
            files, group_keys = future.result()
            written.extend(files)
            if group_keys is not None:
                keys.append(group_keys)
            notify("written", {"files": len(files), "rows": sum(f.rows for f in files)})
    except BaseException:
        _discard(futures, written, job.s3, lambda result: result[0], pool)
        raise
    return written, keys


def _discard(futures: list[Future], written: list[WrittenFile], s3: S3Options | None,
             files_of: Callable[[Any], list[WrittenFile]], pool: Executor | None = None) -> None:
    """After a worker failed: stop the others, and remove every file the run wrote (also those of
    workers that finished after the failure). Interrupted (Ctrl-C, SIGTERM, a Dagster run
    terminated: not an Exception), the running workers are ended too, not waited for: their
    shares could take minutes, and their files are found by the run id (_remove_run)."""
    _stop(futures, pool)
    for future in futures:
        if future.cancelled():
            continue
        try:
            written.extend(files_of(future.result()))
        except BaseException:  # noqa: BLE001 - that worker's own failure; its writer removed its files
            pass
    _remove_files(written, s3)


def _remove_run(written: list[WrittenFile], target: LakeTarget, run: str, s3: S3Options | None) -> None:
    """Best effort, once the run's workers have ended: every file of ``run``, a run that will not
    commit. Those handed back first; then any other whose name begins with the run id: a worker
    stopped mid-file (Ctrl-C ends workers at once) never handed its files back."""
    from ddb_assets.lake.leftovers import remove_run_files

    _remove_files(written, s3)
    try:
        remove_run_files(resolve(target.location.join("data").uri, s3), run)
    except (OSError, ValueError):
        pass  # an orphan for maintenance


def _remove_files(written: list[WrittenFile], s3: S3Options | None) -> None:
    """Best effort: the files of a run that will not commit. Anything left is an orphan that
    maintenance removes (no snapshot references it)."""
    remove_quietly((w.path for w in written), s3)
    written.clear()


def _end_workers(pool: Executor) -> None:
    """End a process pool's workers now (SIGTERM): their futures then fail (BrokenProcessPool)."""
    end = getattr(pool, "terminate_workers", None)  # Python 3.14
    if end is not None:
        end()
        return
    # Before 3.14 the pool has no public way; its processes are in ``_processes`` (3.8 to 3.13).
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, ValueError):
            pass  # ended already


def profile_export(source: str | os.PathLike[str] | Export, options: ConvertOptions = ConvertOptions(),
                   progress: ProgressCallback | None = None) -> tuple[Export, Profile]:
    """Read and validate every item of an export and profile it, writing nothing."""
    notify = progress or (lambda kind, info: None)
    export = source if isinstance(source, Export) else open_export(source, options.s3)
    notify("opened", {"files": len(export.files), "items": export.summary.item_count,
                      "export_id": export.export_id})
    try:
        with _executor(options.workers_for(export)) as pool:
            parsed = _run_stage_one(pool, export, None, options, notify)
    finally:
        _worker.release()
    return export, Profile.merged(p.profile for p in sorted(parsed, key=lambda p: p.index))


def _run_stage_one(pool: Executor, export: Export, spill_dir: str | None, options: ConvertOptions,
                   notify: ProgressCallback) -> list[_Parsed]:
    return _finish_stage_one(_start_stage_one(pool, export, spill_dir, options), notify, pool)


def _start_stage_one(pool: Executor, export: Export, spill_dir: str | None, options: ConvertOptions) -> list[Future]:
    conversion = uuid.uuid4().hex
    # Biggest files first (hot partition keys make some hash ranges much larger): no worker is
    # left with a big file at the end while the others idle.
    order = sorted(range(len(export.files)), key=lambda i: -export.files[i].manifest.item_count)
    return [pool.submit(_parse_file, index, export.files[index], spill_dir, options.dictionary_keys, conversion,
                        options.partition, options.piece_bytes, export.summary.export_type == INCREMENTAL,
                        options.json_reader, options.key_attributes, options.dictionary_maps)
            for index in order]


def _finish_stage_one(futures: list[Future], notify: ProgressCallback, pool: Executor | None = None) -> list[_Parsed]:
    parsed = []
    try:
        for future in futures:
            result = future.result()
            parsed.append(result)
            notify("parsed", {"index": result.index, "rows": result.rows, "bytes": result.uncompressed,
                              "compressed": result.compressed, "readers": result.readers})
    except BaseException:
        _stop(futures, pool)  # interrupted: the files being read are not waited for (_discard)
        raise
    return parsed


def _stop(futures: list[Future], pool: Executor | None) -> None:
    """In an ``except`` block: the futures not started are cancelled; interrupted (not an
    Exception), the pool's running workers are ended first (_end_workers)."""
    if pool is not None and not isinstance(sys.exc_info()[1], Exception):
        _end_workers(pool)
        # The pool's manager thread now fails every future it holds (BrokenProcessPool), within a
        # moment: cancelling them first would race it (before Python 3.12 its thread then dies on
        # InvalidStateError: a traceback on stderr after the one line).
        wait_for(futures, timeout=30)
    for future in futures:
        future.cancel()


def _balance(items: list[_T], workers: int, size: Callable[[_T], int]) -> list[list[_T]]:
    """Greedy: biggest first, each to the least loaded worker."""
    groups: list[list[_T]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for item in sorted(items, key=lambda i: -size(i)):
        target = loads.index(min(loads))
        groups[target].append(item)
        loads[target] += size(item)
    return groups


__all__ = ["ConvertOptions", "ConvertResult", "LakeTarget", "convert_export", "convert_share", "export_record",
           "lake_target", "preflight", "profile_export", "stored_schema", "ExportFormatError", "OptionError",
           "ProfileMismatch", "ScratchSpaceError"]
