"""Export -> partitioned Parquet table: the two-stage, parallel, bounded-memory conversion.

Stage 1, one task per data file: read, verify the md5 and the item count, then gunzip a piece
(about 32 MiB, ending at a line end) at a time, parse it into Arrow, validate, profile every item
and spill the parsed piece to a local Arrow IPC file.
Between stages, the profiles of all files are merged and one schema is planned for the table.
Stage 2, one task per worker over its share of the spilled files: flatten to the planned columns,
split by partition, write Parquet. Then the new version is published atomically.

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
import tempfile
import threading
import time
import uuid
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.buffers import ByteArena, Text, count_lines_before, gunzip_pieces
from ddb_assets.exports.decode import (
    detect_dictionary_maps,
    first_item_names,
    ion_to_json_lines,
    parse_items,
)
from ddb_assets.exports.errors import ChecksumMismatch, ExportFormatError, ItemCountMismatch
from ddb_assets.exports.reader import DataFile, Export, open_export
from ddb_assets.exports.storage import Location, S3Options, resolve
from ddb_assets.lake.flatten import ItemColumns, flatten_items, partition_values
from ddb_assets.lake.paths import partition_folder
from ddb_assets.lake.profile import Profile, profile_items
from ddb_assets.lake.publish import (
    PartitionEntry,
    clear_inflight,
    mark_inflight,
    publish_next,
    TableMetadata,
    collect_garbage,
    new_version,
    read_metadata,
    schema_to_b64,
)
from ddb_assets.lake.plan_checks import ProfileMismatch, check_partial_rewrite, check_profile
from ddb_assets.lake.schema import SchemaOptions, TablePlan, plan_table
from ddb_assets.lake.writer import PartitionedWriter, WrittenFile, parquet_options

ProgressCallback = Callable[[str, dict[str, Any]], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ConvertOptions:
    partition_by: str | None = "year"
    naming: str = "snake"
    workers: int = 0  # 0: one per core
    max_depth: int = 3
    dictionary_keys: int = 64
    only_partitions: frozenset[str] | None = None  # rewrite just these; keep the others as published
    work_dir: str | None = None  # where parsed files are spilled between the stages
    buffer_bytes: int = 64 << 20  # per worker, for partition buffers
    piece_bytes: int = 32 << 20  # decompressed JSON parsed at a time per worker: bounds memory
    compression: str = "zstd"  # Parquet codec: zstd, lz4, snappy, gzip or none (lake/writer.py)
    table_name: str | None = None
    s3: S3Options | None = None  # explicit S3 endpoint/region (else the environment's)

    def __post_init__(self) -> None:
        parquet_options(self.compression)  # a bad codec fails here, before any work

    @property
    def schema_options(self) -> SchemaOptions:
        return SchemaOptions(naming=self.naming, max_depth=self.max_depth, dictionary_keys=self.dictionary_keys,
                             partition_by=self.partition_by)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass
class ConvertResult:
    metadata: TableMetadata
    profile: Profile
    plan: TablePlan
    export: Export
    written: list[WrittenFile]
    compressed_bytes: int
    uncompressed_bytes: int
    seconds: float
    deleted: list[str] = field(default_factory=list)
    scratch_bytes: int = 0  # the most the work folder held (every parsed piece, before stage 2)
    one_pass: bool = False  # converted in one pass from a known profile (no work folder)


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


def _read_file(index: int, data_file: DataFile, conversion: str, dictionary_keys: int, partition_by: str | None,
               piece_bytes: int, use: Callable[[int, pa.StructArray], None]) -> _Parsed:
    """Stream one data file a piece at a time: parse, validate and profile each piece and hand its
    items to ``use(piece number, items)``; the md5 and the item count are checked at the end."""
    _worker.begin(conversion)
    compressed = data_file.stream_verified()  # read as the pieces need it, md5 checked at the end
    profile, raw_size = Profile(), 0
    try:
        pieces = gunzip_pieces(compressed, _worker.decompressed, obj=data_file.name, piece_bytes=piece_bytes)
        for number, (text, offset) in enumerate(pieces):
            raw_size += len(text)
            try:
                table, first_line = _parse_piece(text, data_file, first=number == 0,
                                                 dictionary_keys=dictionary_keys)
            except ExportFormatError as error:
                raise _in_file(error, data_file, offset) from None
            del text
            if first_line:
                profile.first_line = (index, first_line)
            item = table.column("Item").combine_chunks()
            del table
            piece_profile = profile_items(item, index)
            if partition_by is not None:
                values = partition_values(ItemColumns(item).wrapper((partition_by,)), len(item))
                piece_profile.partition_values = set(pc.unique(values).to_pylist())
            profile.merge(piece_profile)
            if len(item):
                use(number, item)
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
    return _Parsed(index, [], profile, compressed.size, raw_size)


def _parse_file(index: int, data_file: DataFile, spill_dir: str | None, dictionary_keys: int,
                conversion: str, partition_by: str | None = None, piece_bytes: int = 32 << 20) -> _Parsed:
    """Stage 1 of two: read a data file, spilling its parsed pieces to ``spill_dir`` (if any)."""
    spills: list[str] = []
    spilled = 0

    def spill(number: int, item: pa.StructArray) -> None:
        nonlocal spilled
        if spill_dir is not None:
            # One IPC file per piece: a later piece may bring attributes (a wider schema).
            spills.append(os.path.join(spill_dir, f"{index:06d}-{number:04d}.arrow"))
            spilled += _spill(pa.table({"Item": item}), spills[-1])

    parsed = _read_file(index, data_file, conversion, dictionary_keys, partition_by, piece_bytes, spill)
    return replace(parsed, spills=spills, spilled=spilled)


class ScratchSpaceError(OSError):
    """The work folder cannot take the parsed pieces (full disk, quota, file size limit)."""


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


def _parse_piece(text: Text, data_file: DataFile, *, first: bool,
                 dictionary_keys: int) -> tuple[pa.Table, tuple[str, ...]]:
    """One piece of a data file -> (its items, the attribute names of its first item if ``first``)."""
    output_format = data_file.output_format
    if output_format == "ION":
        # Ion lines become DynamoDB JSON lines first, so both formats take the same fast path.
        text, output_format = Text.of(ion_to_json_lines(text, obj=data_file.name)), "DYNAMODB_JSON"
    if _worker.dictionary_maps is None:
        _worker.dictionary_maps = detect_dictionary_maps(text, dictionary_keys)
    first_line = first_item_names(text) if first else ()
    table, _worker.schema = parse_items(text, output_format=output_format, obj=data_file.name,
                                        known=_worker.schema, dictionary_maps=_worker.dictionary_maps)
    return table, first_line


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

def _partition_writer(worker: int, plan: TablePlan, root_uri: str, version: str, only: frozenset[str] | None,
                      buffer_bytes: int, s3: S3Options | None, compression: str) -> PartitionedWriter:
    root = resolve(root_uri, s3)
    column = plan.partition_column
    folder_of = (lambda value: partition_folder(column, value)) if column else (lambda value: "")
    return PartitionedWriter(root, plan.arrow_schema, version, worker, folder_of, buffer_bytes,
                             keep=(lambda value: value in only) if only is not None else (lambda value: True),
                             compression=compression)


def _write_group(worker: int, spills: list[str], plan: TablePlan, root_uri: str, version: str,
                 only: frozenset[str] | None, buffer_bytes: int, s3: S3Options | None,
                 compression: str = "zstd") -> tuple[list[WrittenFile], int]:
    writer = _partition_writer(worker, plan, root_uri, version, only, buffer_bytes, s3, compression)
    try:
        for spill in spills:
            # Mapped, the table's buffers are the page cache's pages: no copy into fresh memory.
            with pa.memory_map(spill, "r") as source:
                table = pa.ipc.open_file(source).read_all()
            item = table.column("Item").combine_chunks()
            flat, partitions = flatten_items(item, plan)
            writer.write(flat, partitions)
            del table, item, flat, partitions
            os.remove(spill)  # its disk and page cache are free as soon as it is written out
            _release_memory()
        return writer.close(), writer.skipped_rows
    except BaseException:
        writer.abort()
        raise


# -- one pass, when the profile is known ---------------------------------------------------------

def _convert_files(worker: int, files: list[tuple[int, DataFile]], plan: TablePlan, root_uri: str, version: str,
                   options: ConvertOptions, conversion: str, export_id: str) -> tuple[list[WrittenFile], list[_Parsed]]:
    """Read, check, profile, flatten and write a worker's share of the data files in one pass."""
    writer = _partition_writer(worker, plan, root_uri, version, options.only_partitions, options.buffer_bytes,
                               options.s3, options.compression)

    def write(number: int, item: pa.StructArray) -> None:
        try:
            flat, partitions = flatten_items(item, plan)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            # Loudly wrong (a decimal where the profile saw integers): the profile is not this
            # export's. Quietly wrong (a type the plan has no column for) is found by the end check.
            raise ProfileMismatch(f"the items of export {export_id} do not fit the schema planned from the "
                                  f"profile given ({exc}). Profile the export again (inspect --save-profile), "
                                  f"or convert without a profile") from None
        writer.write(flat, partitions)

    try:
        reads = [_read_file(index, data_file, conversion, options.dictionary_keys, options.partition_by,
                            options.piece_bytes, write) for index, data_file in files]
        return writer.close(), reads
    except BaseException:
        writer.abort()
        raise


def _run_one_pass(pool: Executor, export: Export, plan: TablePlan, root: Location, version: str,
                  options: ConvertOptions, workers: int,
                  notify: ProgressCallback) -> tuple[list[_Parsed], list[WrittenFile]]:
    conversion = uuid.uuid4().hex
    # Each worker keeps its partitions' files open across its data files (one file per partition
    # and worker, not per data file): so the shares are fixed up front, biggest files first.
    shares = _balance(list(enumerate(export.files)), workers, lambda indexed: indexed[1].manifest.item_count)
    futures = [pool.submit(_convert_files, worker, share, plan, root.uri, version, options, conversion,
                           export.export_id)
               for worker, share in enumerate(shares) if share]
    reads: list[_Parsed] = []
    written: list[WrittenFile] = []
    try:
        for future in futures:
            files, share_reads = future.result()
            reads.extend(share_reads)
            written.extend(files)
            for read in share_reads:
                notify("parsed", {"index": read.index, "rows": read.rows, "bytes": read.uncompressed,
                                  "compressed": read.compressed})
            notify("written", {"files": len(files), "rows": sum(f.rows for f in files)})
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return reads, written


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
    if workers <= 1:
        return _InlineExecutor()
    if threading.active_count() == 1:
        # fork: workers start at once with everything already imported. Only safe when no other
        # thread could hold a lock at fork time.
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    # Inside a threaded host (Dagster, a web server): forkserver, with our modules preloaded once.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def convert_export(source: str | os.PathLike[str] | Export, dest: str | os.PathLike[str],
                   options: ConvertOptions = ConvertOptions(), progress: ProgressCallback | None = None,
                   known: Profile | None = None) -> ConvertResult:
    """Convert an export into the table at ``dest`` and publish it atomically.

    With ``known``, the export's profile from an earlier read (``profile_export``: the Dagster
    ``raw_export`` asset, ``inspect --save-profile``), the schema is planned up front and the
    export is converted in one pass: no spill, no work folder. Every item is profiled again on
    the way, and a profile that turns out not to be this export's fails the run (ProfileMismatch).
    """
    notify = progress or (lambda kind, info: None)
    started = time.monotonic()
    options = replace(options, s3=(options.s3 or S3Options()).with_environment())
    export = source if isinstance(source, Export) else open_export(source, options.s3)
    root = resolve(dest, options.s3)
    table_name = options.table_name or export.summary.table_arn.rsplit("/", 1)[-1]
    notify("opened", {"files": len(export.files), "items": export.summary.item_count,
                      "export_id": export.export_id})
    workers = min(options.worker_count, max(1, len(export.files)))
    if known is not None and known.items != export.summary.item_count:
        raise ProfileMismatch(f"the profile given describes {known.items:,} items; export {export.export_id} "
                              f"holds {export.summary.item_count:,}: it is another export's")
    spill_dir = None
    if known is None:
        if options.work_dir:
            os.makedirs(options.work_dir, exist_ok=True)
        spill_dir = tempfile.mkdtemp(prefix="ddb-assets-", dir=options.work_dir)
    version = new_version()
    mark_inflight(root, version)
    try:
        with _executor(workers) as pool:
            if known is None:
                parsed, profile, plan, written = _run_two_stages(pool, export, spill_dir, root, version, options,
                                                                 workers, notify)
            else:
                plan = plan_table(known, options.schema_options)
                _check_partial_rewrite(read_metadata(root), plan, export, options)  # before writing anything
                notify("planned", {"columns": len(plan.columns), "variants": plan.variants})
                parsed, written = _run_one_pass(pool, export, plan, root, version, options, workers, notify)
                profile = Profile.merged(p.profile for p in sorted(parsed, key=lambda p: p.index))
                check_profile(plan_table(profile, options.schema_options), plan, export.export_id)
    except BaseException:
        clear_inflight(root, version)
        _discard_version(root, version)
        raise
    finally:
        if spill_dir is not None:
            shutil.rmtree(spill_dir, ignore_errors=True)
        _worker.release()  # workers=1 ran the files in this process

    try:
        # Read, derive and switch as one step among concurrent runs (a lock locally, a
        # compare-and-swap on S3): see lake.publish.publish_next.
        metadata, deleted = publish_next(
            root, lambda previous: _next_metadata(previous, table_name, version, plan, export, written, options),
            options.s3)
    except BaseException:
        clear_inflight(root, version)
        _discard_version(root, version)  # only what the published metadata does not reference
        raise
    # The marker goes only after the switch: cleared before it, a concurrent run publishing in
    # between would take this run's files for orphans and delete them.
    clear_inflight(root, version)
    notify("published", {"version": version, "rows": metadata.rows, "deleted": len(deleted)})
    return ConvertResult(metadata, profile, plan, export, written, sum(p.compressed for p in parsed),
                         sum(p.uncompressed for p in parsed), time.monotonic() - started, deleted,
                         sum(p.spilled for p in parsed), one_pass=known is not None)


def _run_two_stages(pool: Executor, export: Export, spill_dir: str | None, root: Location, version: str,
                    options: ConvertOptions, workers: int,
                    notify: ProgressCallback) -> tuple[list[_Parsed], Profile, TablePlan, list[WrittenFile]]:
    parsed = _run_stage_one(pool, export, spill_dir, options, notify)
    profile = Profile.merged(p.profile for p in sorted(parsed, key=lambda p: p.index))
    plan = plan_table(profile, options.schema_options)
    _check_partial_rewrite(read_metadata(root), plan, export, options)  # before writing anything
    notify("planned", {"columns": len(plan.columns), "variants": plan.variants})
    groups = [sorted(group, key=lambda p: p.index)  # each worker writes its files in export order
              for group in _balance([p for p in parsed if p.rows], workers, lambda p: p.uncompressed)]
    futures = [pool.submit(_write_group, worker, [spill for p in group for spill in p.spills], plan,
                           root.uri, version, options.only_partitions, options.buffer_bytes, options.s3,
                           options.compression)
               for worker, group in enumerate(groups) if group]
    written: list[WrittenFile] = []
    for future in futures:
        files, _ = future.result()
        written.extend(files)
        notify("written", {"files": len(files), "rows": sum(f.rows for f in files)})
    return parsed, profile, plan, written


def profile_export(source: str | os.PathLike[str] | Export, options: ConvertOptions = ConvertOptions(),
                   progress: ProgressCallback | None = None) -> tuple[Export, Profile]:
    """Read and validate every item of an export and profile it, writing nothing."""
    notify = progress or (lambda kind, info: None)
    export = source if isinstance(source, Export) else open_export(source, options.s3)
    notify("opened", {"files": len(export.files), "items": export.summary.item_count,
                      "export_id": export.export_id})
    try:
        with _executor(min(options.worker_count, max(1, len(export.files)))) as pool:
            parsed = _run_stage_one(pool, export, None, options, notify)
    finally:
        _worker.release()
    return export, Profile.merged(p.profile for p in sorted(parsed, key=lambda p: p.index))


def _run_stage_one(pool: Executor, export: Export, spill_dir: str | None, options: ConvertOptions,
                   notify: ProgressCallback) -> list[_Parsed]:
    conversion = uuid.uuid4().hex
    # Biggest files first (hot partition keys make some hash ranges much larger): no worker is
    # left with a big file at the end while the others idle.
    order = sorted(range(len(export.files)), key=lambda i: -export.files[i].manifest.item_count)
    futures = [pool.submit(_parse_file, index, export.files[index], spill_dir, options.dictionary_keys, conversion,
                           options.partition_by, options.piece_bytes)
               for index in order]
    parsed = []
    try:
        for future in futures:
            result = future.result()
            parsed.append(result)
            notify("parsed", {"index": result.index, "rows": result.rows, "bytes": result.uncompressed,
                              "compressed": result.compressed})
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return parsed


def _balance(items: list[_T], workers: int, size: Callable[[_T], int]) -> list[list[_T]]:
    """Greedy: biggest first, each to the least loaded worker."""
    groups: list[list[_T]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for item in sorted(items, key=lambda i: -size(i)):
        target = loads.index(min(loads))
        groups[target].append(item)
        loads[target] += size(item)
    return groups


def _check_partial_rewrite(previous: TableMetadata | None, plan: TablePlan, export: Export,
                           options: ConvertOptions) -> None:
    if options.only_partitions is not None and previous is not None:
        check_partial_rewrite(previous, plan, export.export_id, options.only_partitions)


def _next_metadata(previous: TableMetadata | None, table_name: str, version: str, plan: TablePlan,
                   export: Export, written: Iterable[WrittenFile], options: ConvertOptions) -> TableMetadata:
    # Checked again against what is published now: another run may have changed it meanwhile.
    _check_partial_rewrite(previous, plan, export, options)
    by_partition: dict[str, list[WrittenFile]] = {}
    for w in written:
        by_partition.setdefault(w.partition, []).append(w)
    partitions: dict[str, PartitionEntry] = {}
    if options.only_partitions is not None and previous is not None:
        partitions = {k: v for k, v in previous.partitions.items() if k not in options.only_partitions}
    for value, files in sorted(by_partition.items()):
        folder = partition_folder(plan.partition_column, value) if plan.partition_column else ""
        partitions[value] = PartitionEntry(
            value=value, folder=folder, version=version, export_id=export.export_id,
            files=[{"path": f.path, "rows": f.rows, "bytes": f.bytes} for f in sorted(files, key=lambda f: f.path)])
    summary = export.summary
    return TableMetadata(
        table=table_name,
        version=version,
        published_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        partition_column=plan.partition_column,
        partition_attribute=plan.partition_attribute,
        partition_type=str(plan.partition_type) if plan.partition_type is not None else None,
        naming=plan.options.naming,
        schema_b64=schema_to_b64(plan.arrow_schema),
        columns=plan.mapping(),
        variants=plan.variants,
        source={"export_arn": summary.export_arn, "export_id": summary.export_id,
                "export_time": summary.export_time, "table_arn": summary.table_arn,
                "item_count": summary.item_count, "output_format": summary.output_format,
                "location": export.folder.uri},
        partitions=dict(sorted(partitions.items())),
    )


def _discard_version(root: Location, version: str) -> None:
    """Best effort: remove what a failed run wrote. Anything left is collected by the next publish."""
    current = read_metadata(root)
    if current is not None:
        try:
            collect_garbage(root, current)
        except OSError:
            pass


__all__ = ["ConvertOptions", "ConvertResult", "convert_export", "profile_export", "ExportFormatError",
           "ProfileMismatch", "ScratchSpaceError"]
