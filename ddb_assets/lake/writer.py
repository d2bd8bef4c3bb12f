"""Write flattened batches as the Parquet data files of an Iceberg table, with bounded memory.

Each worker keeps one open Parquet file per partition it has seen and buffers rows per
partition; when the buffers together pass ``buffer_bytes`` the largest is written out as a row
group. Memory is therefore bounded by the budget, whatever the export size, and row groups stay
large enough for scans. Files carry the Iceberg field ids (``PARQUET:field_id``), and each closed
file is handed back with the column statistics an Iceberg commit records, computed here from its
footer (lake/file_stats.py): nothing is read back, and no footer travels to the committer.

Files go to ``<table>/data/<partition path>/<run>-<attempt>-<worker>[-<n>].parquet``: a run's
files never collide with another run's or another attempt's, and files no snapshot references
(a failed or killed run) are orphans that maintenance removes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ddb_assets.exports.storage import Location
from ddb_assets.lake.file_stats import Statistics, StatisticsPlan
from ddb_assets.lake.partitioning import (PartitionBy, human_string, partition_field_name, partition_name,
                                          transform_values)

# zstd level 1 by default: the smallest files for the CPU (Athena bills bytes scanned). snappy is
# for readers without zstd; lz4 is Parquet's LZ4_RAW (check that every engine you use reads it).
# On the benchmark's reviews snappy files are about 50% bigger and the write alone a third cheaper
# (zstd is two thirds of it), but parsing dominates, so a whole conversion takes about as long with
# any codec. The other options below were measured against their alternatives (dictionary by
# cardinality, page sizes, fewer statistics: bench/parquet_write.py) and none saved 10% of the write.
COMPRESSIONS = {"zstd": 1, "lz4": None, "snappy": None, "gzip": 6, "none": None}
PARQUET_OPTIONS = dict(write_statistics=True, use_dictionary=True,
                       dictionary_pagesize_limit=128 << 10,  # high-cardinality columns fall back early
                       data_page_size=1 << 20)


def parquet_options(compression: str = "zstd") -> dict:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
    return dict(PARQUET_OPTIONS, compression=compression, compression_level=COMPRESSIONS[compression])


ROW_GROUP_ROWS = 256 * 1024
# An open Parquet writer keeps every row group's metadata (statistics included) until it closes:
# measured at about 28 KB per row group of the reviews' 31 columns, 200 MB per worker at 100M
# items. So a file is closed after this many row groups and the partition goes on in a new one,
# which keeps memory independent of the export's size.
ROW_GROUPS_PER_FILE = 16


@dataclass(frozen=True)
class FileTarget:
    """What every worker of one run needs to name and partition its files and to compute their
    statistics (picklable and JSON-able: no pyiceberg objects)."""

    data: str  # URI of the table's data folder: <table location>/data
    run: str  # unique per run and attempt: no two runs' files share a name
    partition: PartitionBy | None = None
    source_column: str | None = None  # the column the partition transform reads
    compression: str = "zstd"
    # The table's write.metadata.metrics.* properties when the run was planned (file_stats.metrics_properties):
    # which column statistics the files' commit records.
    metrics: tuple[tuple[str, str], ...] = ()


@dataclass
class WrittenFile:
    """A closed data file and what the commit needs to add it to a snapshot: its Iceberg column
    statistics as JSON (lake/file_stats.py ``StatisticsPlan.statistics_of``), computed by the
    writer from its footer."""

    partition: str  # partition name ("" when unpartitioned; NULL_PARTITION for the null partition)
    key: Any  # the partition value in Iceberg's representation (None: the null partition)
    path: str  # full URI (s3://... or an absolute local path)
    rows: int
    bytes: int
    statistics: Statistics | None = None  # None only in a staged record of an older version (lake/staging.py)


@dataclass
class _Open:
    """One partition's buffered rows and its current file (``writer`` is None between files)."""

    key: Any
    name: str
    writer: pq.ParquetWriter | None = None
    location: Location | None = None
    buffer: list[pa.Table] = field(default_factory=list)
    buffered_rows: int = 0
    buffered_bytes: int = 0
    rows: int = 0  # in the current file
    row_groups: int = 0  # in the current file
    files: int = 0  # files of this partition opened so far


@contextmanager
def _naming(location: Location | None) -> Iterator[None]:
    """A local file system's error (a full disk, a quota) names the file being written: Arrow's
    says only ``Error writing bytes to file`` and the errno."""
    try:
        yield
    except OSError as exc:
        if location is None or location.scheme != "file" or exc.filename or not exc.errno:
            raise
        raise OSError(exc.errno, os.strerror(exc.errno), location.path) from exc


class PartitionedWriter:
    """Writes one worker's rows into per-partition Parquet files under ``target.data``."""

    def __init__(self, data: Location, schema: pa.Schema, target: FileTarget, worker: int,
                 buffer_bytes: int = 256 << 20, keep: Callable[[str], bool] = lambda name: True):
        self.data = data
        self.schema = schema
        self.target = target
        self.worker = worker
        self.buffer_bytes = buffer_bytes
        self.keep = keep
        self._options = parquet_options(target.compression)
        self._open: dict[Any, _Open] = {}
        self._written: list[WrittenFile] = []
        self._statistics: StatisticsPlan | None = None  # made at the first file closed
        self._files: list[Location] = []  # every file opened, for abort()
        self._buffered = 0
        self.skipped_rows = 0

    def write(self, table: pa.Table) -> None:
        if self.target.partition is None or self.target.source_column is None:
            self._add(None, table)
            return
        source = table.column(self.target.source_column).combine_chunks()
        keys = transform_values(self.target.partition, source)
        encoded = pc.dictionary_encode(keys, null_encoding="encode")
        values = encoded.dictionary.to_pylist()
        if len(values) == 1:
            self._route(values[0], table)
            return
        order = pc.sort_indices(encoded.indices)
        sorted_codes = encoded.indices.take(order)
        counts = pc.value_counts(sorted_codes)  # in order of first appearance, i.e. sorted
        offset = 0
        for entry in counts:
            code, count = entry["values"].as_py(), entry["counts"].as_py()
            # One take per partition: each buffered piece owns its memory. Slices of one sorted
            # table would keep the whole table alive while any small partition waits in a buffer,
            # and memory would grow with the number of files.
            self._route(values[code], table.take(order.slice(offset, count)))
            offset += count

    def _name(self, key: Any) -> str:
        return partition_name(self.target.partition, key)

    def _route(self, key: Any, table: pa.Table) -> None:
        if not self.keep(self._name(key)):
            self.skipped_rows += table.num_rows
            return
        self._add(key, table)

    def _add(self, key: Any, table: pa.Table) -> None:
        target = self._open.get(key)
        if target is None:
            target = self._open[key] = _Open(key, self._name(key) if self.target.partition else "")
        size = table.nbytes
        target.buffer.append(table)
        target.buffered_rows += table.num_rows
        target.buffered_bytes += size
        self._buffered += size
        if target.buffered_rows >= ROW_GROUP_ROWS:
            self._flush(target)
        while self._buffered > self.buffer_bytes:
            self._flush(max(self._open.values(), key=lambda o: o.buffered_bytes))

    def _folder(self, key: Any) -> str:
        partition = self.target.partition
        if partition is None or self.target.source_column is None:
            return ""
        human = human_string(partition, key)
        field_name = partition_field_name(partition, self.target.source_column)
        return f"{quote_plus(field_name, safe='')}={quote_plus(human, safe='')}"

    def _file_for(self, target: _Open) -> pq.ParquetWriter:
        if target.writer is None:
            folder = self._folder(target.key)
            name = f"{self.target.run}-{self.worker:05d}" + (f"-{target.files}" if target.files else "") + ".parquet"
            target.location = self.data.join(folder, name) if folder else self.data.join(name)
            if target.location.scheme == "file":
                target.location.fs.create_dir(target.location.parent().path, recursive=True)
            self._files.append(target.location)
            with _naming(target.location):
                target.writer = pq.ParquetWriter(target.location.path, self.schema, filesystem=target.location.fs,
                                                 **self._options)
            target.files += 1
        return target.writer

    def _flush(self, target: _Open) -> None:
        if not target.buffer:
            return
        table = pa.concat_tables(target.buffer)
        writer = self._file_for(target)
        with _naming(target.location):
            writer.write_table(table, row_group_size=max(1, table.num_rows))
        target.rows += table.num_rows
        target.row_groups += 1
        self._buffered -= target.buffered_bytes
        target.buffer, target.buffered_rows, target.buffered_bytes = [], 0, 0
        if target.row_groups >= ROW_GROUPS_PER_FILE:
            self._close_file(target)

    def _close_file(self, target: _Open) -> None:
        if target.writer is None or target.location is None:
            return
        with _naming(target.location):
            target.writer.close()
        size = target.location.fs.get_file_info(target.location.path).size or 0
        if self._statistics is None:
            self._statistics = StatisticsPlan(self.schema, self.target.metrics)
        statistics = self._statistics.statistics_of(target.writer.writer.metadata)
        self._written.append(WrittenFile(target.name, target.key, target.location.uri, target.rows, size, statistics))
        target.writer, target.location, target.rows, target.row_groups = None, None, 0, 0

    def close(self) -> list[WrittenFile]:
        for target in self._open.values():
            self._flush(target)
            self._close_file(target)
        self._open.clear()
        written, self._written = self._written, []
        return written

    def abort(self) -> None:
        """Close and delete every file this writer made (best effort: a run that fails commits
        nothing, and what cannot be deleted here is an orphan for maintenance)."""
        for target in self._open.values():
            if target.writer is None or target.location is None:
                continue
            try:
                target.writer.close()
            except Exception:  # noqa: BLE001 - best effort on the failure path
                pass
        for location in self._files:
            self._delete(location)
        self._open.clear()
        self._files = []
        self._written = []

    @staticmethod
    def _delete(location: Location) -> None:
        try:
            location.fs.delete_file(location.path)
        except OSError:
            pass


# Partitions whose files together stay under this are written as one file before the commit:
# each worker writes its own file per partition, so a small table would otherwise hold one file
# per partition and worker (5 rows per year in 2 files per year), which every scan pays for.
SMALL_PARTITION_BYTES = 4 << 20
MERGE_THREADS = 4  # pyarrow's read and write release the GIL; on S3 the threads also overlap requests


def merge_small_files(written: list[WrittenFile], data: Location, schema: pa.Schema, target: FileTarget,
                      threshold: int = SMALL_PARTITION_BYTES, threads: int = MERGE_THREADS) -> list[WrittenFile]:
    """``written`` with each partition's files merged into one where they are several and small
    together (read back once, written once, the small ones deleted). The partitions are merged on
    ``threads`` threads, each with its own writer: this runs after the workers, in the one process
    that commits, so done one at a time it left every other core idle (about a second of wall time
    on the benchmark's export, 12 of 21 partitions merged). On a failure every merged file written
    is removed and the small ones are kept: the caller still holds them."""
    by_partition: dict[Any, list[WrittenFile]] = {}
    for w in written:
        by_partition.setdefault((w.partition, w.key), []).append(w)
    small = {k: files for k, files in by_partition.items()
             if len(files) > 1 and sum(f.bytes for f in files) < threshold}
    if not small:
        return written
    merged = [w for k, files in by_partition.items() if k not in small for w in files]
    groups = list(small.values())
    shares = [groups[i::threads] for i in range(max(1, min(threads, len(groups))))]

    def merge_share(share: list[list[WrittenFile]]) -> list[WrittenFile]:
        # One writer per thread: its files are named by the same worker number, but each partition
        # is merged by one thread only, and the files live in the partitions' own folders.
        writer = PartitionedWriter(data, schema, target, worker=99_999, buffer_bytes=threshold * 2)
        try:
            for files in share:
                for w in files:
                    source = _under(data, w.path)
                    writer.write(pq.read_table(source.path, filesystem=source.fs).cast(schema))
            return writer.close()
        except BaseException:
            writer.abort()
            raise

    if len(shares) == 1:
        merged.extend(merge_share(shares[0]))
    else:
        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="merge-small") as pool:
            futures = [pool.submit(merge_share, share) for share in shares]
            wait(futures)
        failed = [f.exception() for f in futures if f.exception() is not None]
        if failed:
            for f in futures:
                if f.exception() is None:
                    _delete_quietly(data, f.result())
            raise failed[0]
        for f in futures:
            merged.extend(f.result())
    for files in groups:
        _delete_quietly(data, files)
    return merged


def _delete_quietly(data: Location, files: list[WrittenFile]) -> None:
    for w in files:
        location = _under(data, w.path)
        try:
            location.fs.delete_file(location.path)
        except OSError:
            pass  # an orphan for maintenance


def _under(data: Location, uri: str) -> Location:
    """A file this writer made (its URI is below the data folder's) as a Location."""
    assert uri.startswith(data.uri), (uri, data.uri)
    return data.join(uri[len(data.uri):])
