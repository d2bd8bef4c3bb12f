"""Iceberg v2 position-delete files: writing them, and reading which rows of a data file they hide.

A position-delete file is a Parquet file of two columns, ``file_path`` (string, field id
2147483546: the data file's full URI, exactly as the manifest names it) and ``pos`` (long, field
id 2147483545: the 0-based row in that file), sorted by (file_path, pos). It carries the
partition value (and spec) of the data files it references; ours write one per partition per
merge, next to the partition's data files, with the path bounds Spark writes (readers skip the
delete files whose bounds exclude a data file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ddb_assets.exports.storage import S3Options, remove_quietly, resolve
from ddb_assets.lake.writer import parquet_options

FILE_PATH_ID = 2147483546
POS_ID = 2147483545
SCHEMA = pa.schema([
    pa.field("file_path", pa.string(), nullable=False, metadata={b"PARQUET:field_id": str(FILE_PATH_ID).encode()}),
    pa.field("pos", pa.int64(), nullable=False, metadata={b"PARQUET:field_id": str(POS_ID).encode()}),
])


# {data file path: its deleted positions (int64, sorted)}: one delete file, indexed once.
PositionIndex = dict[str, np.ndarray]


@dataclass
class DeletedRows:
    """Rows of one data file to hide: ``data_file`` (a live DataFile), ``positions`` (int64, 0-based)."""

    data_file: Any
    positions: pa.Array


def write_delete_files(deleted: Iterable[DeletedRows], run: str, s3: S3Options | None,
                       compression: str = "zstd") -> list[Any]:
    """One position-delete file per (partition spec, partition value) of the data files in
    ``deleted``, written next to the first of them as ``<run>-deletes-<n>.parquet``. Returns their
    DataFiles (content POSITION_DELETES, ready for lake/row_delta.py). Files already written are
    deleted when a later one fails."""
    groups: dict[tuple[int, tuple], list[DeletedRows]] = {}
    for rows in deleted:
        if len(rows.positions):
            key = (rows.data_file.spec_id, tuple(rows.data_file.partition))
            groups.setdefault(key, []).append(rows)
    out: list[Any] = []
    try:
        for n, group in enumerate(groups.values()):
            group.sort(key=lambda r: r.data_file.file_path)
            paths = pa.chunked_array([pa.array([r.data_file.file_path] * len(r.positions), pa.string())
                                      for r in group], pa.string())
            positions = pa.chunked_array([pc.cast(r.positions, pa.int64()).take(pc.array_sort_indices(r.positions))
                                          for r in group], pa.int64())
            first = group[0].data_file
            out.append(_write(pa.Table.from_arrays([paths, positions], schema=SCHEMA), first.partition,
                              first.spec_id, first.file_path.rsplit("/", 1)[0], f"{run}-deletes-{n:05d}.parquet",
                              s3, compression))
    except BaseException:
        remove_files(out, s3)
        raise
    return out


def without_files(delete_files: Iterable[Any], removed_paths: set[str], run: str, s3: S3Options | None,
                  compression: str = "zstd") -> tuple[list[Any], list[Any]]:
    """The delete files that reference a data file of ``removed_paths`` (being removed), rewritten
    without those rows, so that no delete file outlives its data file. Returns (the delete files
    to remove, their replacements: none for a file that referenced removed files only)."""
    removed, added = [], []
    try:
        for n, delete_file in enumerate(delete_files):
            table = read_delete_file(delete_file.file_path, s3)
            gone = pc.is_in(table.column("file_path"), value_set=pa.array(sorted(removed_paths), pa.string()))
            if not pc.any(gone).as_py():
                continue
            removed.append(delete_file)
            kept = table.filter(pc.invert(gone))
            if kept.num_rows:
                added.append(_write(kept.cast(SCHEMA), delete_file.partition, delete_file.spec_id,
                                    delete_file.file_path.rsplit("/", 1)[0], f"{run}-deletes-r{n:05d}.parquet", s3,
                                    compression))
    except BaseException:
        remove_files(added, s3)
        raise
    return removed, added


def _write(table: pa.Table, partition: Any, spec_id: int, folder: str, name: str, s3: S3Options | None,
           compression: str) -> Any:
    """``table`` (file_path, pos; sorted) as a position-delete file in ``folder``: its DataFile."""
    from pyiceberg.conversions import to_bytes
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.types import LongType, StringType

    location = resolve(f"{folder}/{name}", s3)
    if location.scheme == "file":
        location.fs.create_dir(location.parent().path, recursive=True)
    pq.write_table(table, location.path, filesystem=location.fs, **parquet_options(compression))
    size = location.fs.get_file_info(location.path).size or 0
    paths, positions = table.column("file_path"), table.column("pos")
    low_path, high_path = pc.min(paths).as_py(), pc.max(paths).as_py()
    low_pos, high_pos = pc.min(positions).as_py(), pc.max(positions).as_py()
    delete_file = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES, file_path=location.uri, file_format=FileFormat.PARQUET,
        partition=partition, record_count=table.num_rows, file_size_in_bytes=size,
        column_sizes=None, value_counts={FILE_PATH_ID: table.num_rows, POS_ID: table.num_rows},
        null_value_counts={FILE_PATH_ID: 0, POS_ID: 0}, nan_value_counts=None,
        lower_bounds={FILE_PATH_ID: to_bytes(StringType(), low_path), POS_ID: to_bytes(LongType(), low_pos)},
        upper_bounds={FILE_PATH_ID: to_bytes(StringType(), high_path), POS_ID: to_bytes(LongType(), high_pos)},
        split_offsets=None, equality_ids=None, sort_order_id=None, key_metadata=None)
    delete_file.spec_id = spec_id  # not a field of the manifest entry: pyiceberg keeps it aside
    return delete_file


def deleted_positions(delete_files: Iterable[Any], data_path: str, s3: S3Options | None,
                      cache: dict[str, PositionIndex] | None = None) -> pa.Array:
    """The positions of ``data_path`` that ``delete_files`` (the scan task's, applying to it by
    sequence number) hide: int64, sorted, unique. ``cache`` keeps each delete file read, indexed
    by data file (``index_delete_file``), by its path: a delete file is read and indexed once,
    and each lookup then costs the positions of ``data_path`` alone."""
    found = []
    for delete_file in delete_files:
        index = cache.get(delete_file.file_path) if cache is not None else None
        if index is None:
            index = index_delete_file(read_delete_file(delete_file.file_path, s3))
            if cache is not None:
                cache[delete_file.file_path] = index
        positions = index.get(data_path)
        if positions is not None:
            found.append(positions)
    if not found:
        return pa.array([], pa.int64())
    return pa.array(np.unique(np.concatenate(found)), pa.int64())


def index_delete_file(table: pa.Table) -> PositionIndex:
    """A delete file's rows (``file_path``, ``pos``; any order, ``file_path`` plain or dictionary
    encoded) as {data file path: its positions (int64 numpy array, sorted)}. The arrays are views
    of one array of every position: the index holds 8 bytes per row plus each path once (the rows'
    own ``file_path`` values, a path per row, are not kept)."""
    table = table.filter(pc.is_valid(table.column("file_path"))) if table.column("file_path").null_count else table
    if table.num_rows == 0:
        return {}
    paths = table.column("file_path")
    if not pa.types.is_dictionary(paths.type):
        paths = pc.dictionary_encode(paths)
    # One dictionary for every chunk (a Parquet reader gives one per row group), then one chunk.
    paths = pa.chunked_array(paths.chunks, paths.type).unify_dictionaries().combine_chunks()
    codes = paths.indices.to_numpy(zero_copy_only=False)
    positions = pc.cast(table.column("pos"), pa.int64()).to_numpy()
    order = np.lexsort((positions, codes))  # by data file, then position
    positions, counts = positions[order], np.bincount(codes, minlength=len(paths.dictionary))
    index: PositionIndex = {}
    end = 0
    for path, count in zip(paths.dictionary.to_pylist(), counts.tolist()):
        start, end = end, end + count
        if count:
            # a path twice in the dictionary (not made by pyarrow's readers): its positions joined
            index[path] = positions[start:end] if path not in index else np.sort(
                np.concatenate([index[path], positions[start:end]]))
    return index


def read_delete_file(path: str, s3: S3Options | None) -> pa.Table:
    """A position-delete file as (file_path, pos), ``file_path`` dictionary encoded (its values
    repeat: one per data file it references)."""
    location = resolve(path, s3)
    return pq.read_table(location.path, filesystem=location.fs, columns=["file_path", "pos"],
                         read_dictionary=["file_path"])


def keep_mask(rows: int, positions: pa.Array, memory_pool: pa.MemoryPool | None = None) -> pa.Array:
    """A boolean mask of ``rows`` rows, false at ``positions`` (allocated from ``memory_pool``,
    pyarrow's default when None)."""
    mask = np.ones(rows, dtype=bool)
    if len(positions):
        mask[positions.to_numpy(zero_copy_only=False)] = False
    return pa.array(mask, memory_pool=memory_pool)


def remove_files(files: Iterable[Any], s3: S3Options | None) -> None:
    """Best effort: delete files no snapshot references (what is left is an orphan for maintenance)."""
    remove_quietly((data_file.file_path for data_file in files), s3)

__all__ = ["DeletedRows", "FILE_PATH_ID", "POS_ID", "SCHEMA", "PositionIndex", "deleted_positions", "index_delete_file",
           "keep_mask", "read_delete_file", "remove_files", "without_files", "write_delete_files"]
