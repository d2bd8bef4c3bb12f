"""Small partitions' files merged into one per partition before the commit (lake/writer.py
``merge_small_files``): every row kept, one file per partition, the small files gone; a failure
keeps the small files and leaves no merged file behind."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddb_assets.exports.storage import resolve
from ddb_assets.lake.partitioning import PartitionBy
from ddb_assets.lake.writer import FileTarget, PartitionedWriter, WrittenFile, merge_small_files

pytestmark = pytest.mark.fast

SCHEMA = pa.schema([pa.field("pk", pa.string(), metadata={b"PARQUET:field_id": b"1"}),
                    pa.field("year", pa.int64(), metadata={b"PARQUET:field_id": b"2"})])
YEARS = list(range(2001, 2011))  # ten partitions: more than the merge's threads


def _written_by_two_workers(data: Path) -> tuple[list[WrittenFile], FileTarget]:
    """Two workers' files, one per year each: 20 files of 10 small partitions."""
    target = FileTarget(data=str(data), run="20261201T000000-run", partition=PartitionBy.parse("year"),
                        source_column="year")
    written = []
    for worker in (0, 1):
        writer = PartitionedWriter(resolve(str(data)), SCHEMA, target, worker=worker)
        writer.write(pa.table({"pk": [f"w{worker}-{y}-{i}" for y in YEARS for i in range(3)],
                               "year": [y for y in YEARS for _ in range(3)]}, schema=SCHEMA))
        written += writer.close()
    return written, target


def _files(data: Path) -> set[str]:
    return {str(p) for p in data.rglob("*.parquet")}


def test_each_small_partition_becomes_one_file_holding_all_its_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    written, target = _written_by_two_workers(data)
    assert len(written) == 20

    merged = merge_small_files(written, resolve(str(data)), SCHEMA, target)

    assert sorted(w.key for w in merged) == YEARS  # one file per partition
    assert _files(data) == {w.path for w in merged}  # the small files are gone
    for w in merged:
        rows = pq.read_table(w.path)
        assert w.rows == rows.num_rows == 6
        assert set(rows.column("year").to_pylist()) == {w.key}
        assert sorted(rows.column("pk").to_pylist()) == sorted(f"w{k}-{w.key}-{i}" for k in (0, 1) for i in range(3))


def test_a_failed_merge_keeps_the_small_files_and_leaves_no_merged_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    written, target = _written_by_two_workers(data)
    before = _files(data)
    broken = next(w for w in written if w.key == 2007)
    Path(broken.path).write_bytes(b"not parquet")  # read back by one of the threads

    with pytest.raises(pa.ArrowInvalid):
        merge_small_files(written, resolve(str(data)), SCHEMA, target)

    assert _files(data) == before  # nothing merged stays; nothing the caller holds was deleted
