"""Write flattened batches into hive partitions as Parquet, with bounded memory.

Each worker keeps one open Parquet file per partition it has seen and buffers rows per
partition; when the buffers together pass ``buffer_bytes`` the largest is written out as a row
group. Memory is therefore bounded by the budget, whatever the export size, and row groups stay
large enough for scans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ddb_assets.exports.storage import Location

# zstd level 1 by default: the smallest files for the CPU (Athena bills bytes scanned). snappy is
# for readers without zstd; lz4 is Parquet's LZ4_RAW (check that every engine you use reads it).
# On the benchmark's reviews snappy files are about 50% bigger and their write stage a quarter
# cheaper, but parsing dominates, so a whole conversion takes about as long with any codec.
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


@dataclass
class WrittenFile:
    partition: str  # partition value (text); "" when unpartitioned
    path: str  # relative to the table root
    rows: int
    bytes: int


@dataclass
class _Open:
    """One partition's buffered rows and its current file (``writer`` is None between files)."""

    value: str
    writer: pq.ParquetWriter | None = None
    relative: str = ""
    buffer: list[pa.Table] = field(default_factory=list)
    buffered_rows: int = 0
    buffered_bytes: int = 0
    rows: int = 0  # in the current file
    row_groups: int = 0  # in the current file
    files: int = 0  # files of this partition opened so far


class PartitionedWriter:
    """Writes ``<root>/<folder(value)>/<version>/part-<worker>[-<n>].parquet`` per partition value."""

    def __init__(self, root: Location, schema: pa.Schema, version: str, worker: int,
                 folder_of: "callable[[str], str]", buffer_bytes: int = 256 << 20,
                 keep: "callable[[str], bool]" = lambda value: True, compression: str = "zstd"):
        self.root = root
        self.schema = schema
        self.version = version
        self.worker = worker
        self.folder_of = folder_of
        self.buffer_bytes = buffer_bytes
        self.keep = keep
        self._options = parquet_options(compression)
        self._open: dict[str, _Open] = {}
        self._written: list[WrittenFile] = []
        self._buffered = 0
        self.skipped_rows = 0

    def write(self, table: pa.Table, partitions: pa.Array | None) -> None:
        if partitions is None:
            self._add("", table)
            return
        encoded = pc.dictionary_encode(partitions).combine_chunks() if isinstance(partitions, pa.ChunkedArray) \
            else pc.dictionary_encode(partitions)
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

    def _route(self, value: str, table: pa.Table) -> None:
        if not self.keep(value):
            self.skipped_rows += table.num_rows
            return
        self._add(value, table)

    def _add(self, value: str, table: pa.Table) -> None:
        target = self._open.get(value)
        if target is None:
            target = self._open[value] = _Open(value)
        size = table.nbytes
        target.buffer.append(table)
        target.buffered_rows += table.num_rows
        target.buffered_bytes += size
        self._buffered += size
        if target.buffered_rows >= ROW_GROUP_ROWS:
            self._flush(target)
        while self._buffered > self.buffer_bytes:
            self._flush(max(self._open.values(), key=lambda o: o.buffered_bytes))

    def _file_for(self, target: _Open) -> pq.ParquetWriter:
        if target.writer is None:
            folder = self.folder_of(target.value)
            name = f"part-{self.worker:04d}" + (f"-{target.files}" if target.files else "") + ".parquet"
            target.relative = f"{folder}/{self.version}/{name}" if folder else f"{self.version}/{name}"
            location = self.root.join(target.relative)
            if location.scheme == "file":
                location.fs.create_dir(location.parent().path, recursive=True)
            target.writer = pq.ParquetWriter(location.path, self.schema, filesystem=location.fs, **self._options)
            target.files += 1
        return target.writer

    def _flush(self, target: _Open) -> None:
        if not target.buffer:
            return
        table = pa.concat_tables(target.buffer)
        self._file_for(target).write_table(table, row_group_size=max(1, table.num_rows))
        target.rows += table.num_rows
        target.row_groups += 1
        self._buffered -= target.buffered_bytes
        target.buffer, target.buffered_rows, target.buffered_bytes = [], 0, 0
        if target.row_groups >= ROW_GROUPS_PER_FILE:
            self._close_file(target)

    def _close_file(self, target: _Open) -> None:
        if target.writer is None:
            return
        target.writer.close()
        info = self.root.join(target.relative)
        size = info.fs.get_file_info(info.path).size or 0
        self._written.append(WrittenFile(target.value, target.relative, target.rows, size))
        target.writer, target.rows, target.row_groups = None, 0, 0

    def close(self) -> list[WrittenFile]:
        for target in self._open.values():
            self._flush(target)
            self._close_file(target)
        self._open.clear()
        written, self._written = self._written, []
        return written

    def abort(self) -> None:
        for target in self._open.values():
            if target.writer is None:
                continue
            try:
                target.writer.close()
            except Exception:  # noqa: BLE001 - best effort on the failure path
                pass
        self._open.clear()
