"""Which rows of each data file position-delete files hide (lake/position_deletes.py:
``deleted_positions``): one delete file may name thousands of data files, and is read once."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddb_assets.lake.position_deletes import SCHEMA, DeletedRows, deleted_positions, write_delete_files

pytestmark = pytest.mark.fast


def _data_file(folder: Path, n: int) -> SimpleNamespace:
    """What write_delete_files reads of a DataFile: its path, partition and spec."""
    return SimpleNamespace(file_path=str(folder / f"data-{n:05d}.parquet"), partition=(), spec_id=0)


def test_each_of_many_data_files_gets_its_own_positions_from_one_delete_file(tmp_path: Path) -> None:
    """500 data files, each with its own deleted positions (none for every tenth), in one delete
    file; each lookup gives that file's positions, sorted, whatever the order they were deleted in."""
    generator = random.Random(7)
    data_files = [_data_file(tmp_path, n) for n in range(500)]
    expected = {f.file_path: sorted(generator.sample(range(10_000), 1 + n % 40))
                for n, f in enumerate(data_files) if n % 10}
    [delete_file] = write_delete_files(
        [DeletedRows(f, pa.array(list(reversed(expected[f.file_path])), pa.int64()))
         for f in data_files if f.file_path in expected], "test", None)
    assert delete_file.record_count == sum(len(p) for p in expected.values())

    cache: dict = {}
    for f in data_files:
        found = deleted_positions([delete_file], f.file_path, None, cache)
        assert found.type == pa.int64()
        assert found.to_pylist() == expected.get(f.file_path, [])
    assert deleted_positions([delete_file], str(tmp_path / "another.parquet"), None, cache).to_pylist() == []


def test_a_delete_file_is_read_once_for_all_the_data_files_it_names(tmp_path: Path) -> None:
    data_files = [_data_file(tmp_path, n) for n in range(3)]
    [delete_file] = write_delete_files([DeletedRows(f, pa.array([n, 10 + n], pa.int64()))
                                        for n, f in enumerate(data_files)], "test", None)
    cache: dict = {}
    assert deleted_positions([delete_file], data_files[0].file_path, None, cache).to_pylist() == [0, 10]
    Path(delete_file.file_path).unlink()  # the rest come from the index made at the first lookup
    assert deleted_positions([delete_file], data_files[2].file_path, None, cache).to_pylist() == [2, 12]
    with pytest.raises(FileNotFoundError):
        deleted_positions([delete_file], data_files[2].file_path, None)  # no cache: read again


def test_positions_from_several_delete_files_are_joined_once_each(tmp_path: Path) -> None:
    """Two merges deleted rows of the same file (one row twice, as a reader of another writer may
    find): the positions are the union, sorted, each once."""
    [data_file, other] = [_data_file(tmp_path, n) for n in range(2)]
    first = write_delete_files([DeletedRows(data_file, pa.array([9, 3], pa.int64())),
                                DeletedRows(other, pa.array([1], pa.int64()))], "first", None)
    second = write_delete_files([DeletedRows(data_file, pa.array([3, 5], pa.int64()))], "second", None)
    assert deleted_positions([*first, *second], data_file.file_path, None, {}).to_pylist() == [3, 5, 9]
    assert deleted_positions([*second, *first], other.file_path, None, {}).to_pylist() == [1]


def test_a_delete_file_of_another_writer_in_any_order_and_many_row_groups(tmp_path: Path) -> None:
    """Rows not sorted, in row groups of 7 (a dictionary of paths per row group), positions repeated."""
    rows = [(f"s3://lake/t/data/{n % 13}.parquet", p) for n in range(200) for p in (n, n)]
    random.Random(3).shuffle(rows)
    path = tmp_path / "deletes.parquet"
    pq.write_table(pa.table({"file_path": [r[0] for r in rows], "pos": pa.array([r[1] for r in rows], pa.int64())},
                            schema=SCHEMA), path, row_group_size=7)
    delete_file = SimpleNamespace(file_path=str(path))
    cache: dict = {}
    for k in range(13):
        assert deleted_positions([delete_file], f"s3://lake/t/data/{k}.parquet", None, cache).to_pylist() == \
            [n for n in range(200) if n % 13 == k]
