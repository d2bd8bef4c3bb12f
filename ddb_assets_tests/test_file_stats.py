"""Iceberg column statistics computed by the writer of each data file (lake/file_stats.py) are the
ones the committer used to compute from the files' footers, reach the snapshot unchanged (through
a shard result and a staged record too), and still prune a filtered scan."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from ddb_assets.exports.storage import resolve
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.staging import StagingStale, commit_staged, load_staged, record_location, stage_export
from ddb_assets_tests.lake_reader import read_rows, read_table_metadata
from ddb_assets_tests.test_schema_rules import export_of

STATISTICS = ("record_count", "column_sizes", "value_counts", "null_value_counts", "nan_value_counts",
              "lower_bounds", "upper_bounds", "split_offsets")
REGIONS = ("eu", "us", "ap", None)  # None: the attribute is missing (the null partition)


def _items(count: int = 400, extra: bool = False) -> list[dict[str, Any]]:
    """Items of every kind of column: strings (some long and not ASCII: truncated bounds; some
    missing: nulls), decimals and integers, booleans, binary, sets and lists (list columns), a
    map (flattened) and a deeper one (JSON text), NULLs. ``qty`` ranges are apart per region."""
    items = []
    for i in range(count):
        region = REGIONS[i % 4]
        item: dict[str, Any] = {
            "qty": {"N": str((i % 4) * 100 + i % 97)},
            "price": {"N": f"{'-' if i % 5 == 0 else ''}{i}.{i % 100:02d}"},
            "flag": {"BOOL": i % 3 == 0},
            "blob": {"B": base64.b64encode(bytes([i % 256, 7])).decode()},
            "tags": {"SS": [f"t{i % 7}", f"u{i % 3}"]},
            "scores": {"L": [{"N": str(i)}, {"N": str(i * 2)}]},
            "info": {"M": {"color": {"S": f"c{i % 5}"}, "size": {"N": str(i % 11)}}},
            "deep": {"M": {"a": {"M": {"b": {"M": {"c": {"M": {"d": {"S": f"x{i}"}}}}}}}}},
        }
        if region is not None:
            item["region"] = {"S": region}
        if i % 7:
            item["name"] = {"S": f"Ünïcödé name number {i:05d} — a long string"}
        if i % 11 == 0:
            item["note"] = {"NULL": True}
        if extra:
            item["added"] = {"S": f"a{i}"}
        items.append(item)
    return items


def _footer_statistics(table: Any, path: str) -> dict[str, Any]:
    """What the committer computed before, from the file's footer and the table's schema and
    properties at commit (pyiceberg's own functions)."""
    from pyiceberg.io.pyarrow import (compute_statistics_plan, data_file_statistics_from_parquet_metadata,
                                      parquet_path_to_id_mapping)

    schema = table.schema()
    found = data_file_statistics_from_parquet_metadata(
        parquet_metadata=pq.read_metadata(path), stats_columns=compute_statistics_plan(schema, table.properties),
        parquet_column_mapping=parquet_path_to_id_mapping(schema))
    return found.to_serialized_dict()


def _committed(table: Any) -> list[Any]:
    return [task.file for task in table.scan().plan_files()]


def _assert_as_from_footers(table: Any) -> list[Any]:
    files = _committed(table)
    assert files
    for data_file in files:
        expected = _footer_statistics(table, data_file.file_path)
        assert {name: getattr(data_file, name) for name in STATISTICS} == expected, data_file.file_path
    return files


def _field_id(table: Any, name: str) -> int:
    return table.schema().find_field(name).field_id


@pytest.mark.parametrize("partition_by", [None, "region"])
def test_the_writers_statistics_are_the_ones_the_committer_computed_from_footers(tmp_path: Path,
                                                                                  partition_by: str | None) -> None:
    # two workers (a process pool) and small partitions merged into one file each (the merge's writer)
    convert_export(export_of(tmp_path / "export", _items(), files=4), tmp_path / "lake",
                   ConvertOptions(workers=2, partition_by=partition_by))
    table = read_table_metadata(str(tmp_path / "lake"))["table"]
    files = _assert_as_from_footers(table)
    assert len(files) == (4 if partition_by else 1)
    # the statistics are not empty: bounds of strings (truncated to 16 characters), decimals,
    # integers; null counts; list elements counted without bounds (nested)
    name, price, qty = (_field_id(table, n) for n in ("name", "price", "qty"))
    element = table.schema().find_field("tags").field_type.element_id
    assert all(f.null_value_counts[name] > 0 for f in files)
    assert all(len(f.lower_bounds[name].decode()) == 16 for f in files)
    assert all(price in f.lower_bounds and price in f.upper_bounds and qty in f.upper_bounds for f in files)
    assert all(f.value_counts[element] == 2 * f.record_count and element not in f.lower_bounds for f in files)
    assert sum(f.record_count for f in files) == 400


def test_a_filtered_scan_still_skips_files_by_their_statistics(tmp_path: Path) -> None:
    # partitioned by region; qty ranges are apart per region, so a filter on qty (not the partition
    # column) prunes by the files' bounds only
    convert_export(export_of(tmp_path / "export", _items(), files=4), tmp_path / "lake",
                   ConvertOptions(workers=1, partition_by="region"))
    table = read_table_metadata(str(tmp_path / "lake"))["table"]
    assert len(_committed(table)) == 4
    kept = [task.file for task in table.scan(row_filter="qty >= 250").plan_files()]
    assert len(kept) == 2  # ap (200-296) and the null partition (300-396)
    rows = table.scan(row_filter="qty >= 250").to_arrow()
    assert rows.num_rows == sum(1 for i in range(400) if (i % 4) * 100 + i % 97 >= 250)


def test_statistics_planned_before_another_run_added_columns_are_committed_unchanged(tmp_path: Path) -> None:
    """Files staged with the plan of an older schema, committed after another run added a column:
    by field id, their statistics are the footers' under the table's schema at commit."""
    now = datetime.now(timezone.utc)
    lake = tmp_path / "lake"
    options = ConvertOptions(workers=1, partition_by="region")
    convert_export(export_of(tmp_path / "a", _items(80), at=now - timedelta(hours=3)), lake, options)
    staged = stage_export(export_of(tmp_path / "c", _items(120), at=now - timedelta(hours=1), export_id="c"), lake,
                          options)
    # meanwhile, an export between the two adds a column
    convert_export(export_of(tmp_path / "b", _items(100, extra=True), at=now - timedelta(hours=2), export_id="b"),
                   lake, options)
    planned = {c.name for c in staged.stored_at_plan.columns}
    assert "added" not in planned
    result = commit_staged(staged, lake, options)
    assert result.commit.rows == 120
    table = read_table_metadata(str(lake))["table"]
    assert "added" in {f.name for f in table.schema().fields}
    files = _assert_as_from_footers(table)
    assert all(_field_id(table, "added") not in f.value_counts for f in files)


def test_a_staged_record_of_the_older_format_is_stale_and_its_export_read_again(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    options = ConvertOptions(workers=1)
    source = export_of(tmp_path / "export", _items(40))
    staged = stage_export(source, lake, options)
    # what the previous version saved: footers where the statistics are now
    location = record_location(resolve(str(lake)), staged.export_id)
    document = orjson.loads(location.read_bytes())
    document["format"] = "ddb-assets-staged-2"
    for written in document["written"]:
        written["footer"] = "UEFSMQ=="
        del written["statistics"]
    location.write_bytes(orjson.dumps(document))
    old = load_staged(resolve(str(lake)), staged.export_id)
    assert old is not None and old.written and all(w.statistics is None for w in old.written)
    with pytest.raises(StagingStale, match="older version of ddb-assets"):
        commit_staged(old, lake, options)
    assert not location.exists() and not any(Path(w.path).exists() for w in old.written)  # discarded
    convert_export(source, lake, options)  # what the caller does next: the export read again
    _, rows = read_rows(str(lake))
    assert len(rows) == 40
    _assert_as_from_footers(read_table_metadata(str(lake))["table"])


def test_the_tables_metrics_properties_reach_the_writers_local_and_shard(tmp_path: Path) -> None:
    """``write.metadata.metrics.*`` set on the table (by another engine, say) steer the statistics
    the next run's writers keep: in the local pool, and in a shard through its spec's JSON."""
    from ddb_assets.lake.catalog import load_table
    from ddb_assets.lake.convert import lake_target, profile_export
    from ddb_assets.lake.evolution import plan_table
    from ddb_assets.lake.shards.driver import shard_specs
    from ddb_assets.lake.shards.spec import ShardResult, ShardSpec
    from ddb_assets.lake.shards.worker import run_shard
    from ddb_assets.lake.writer import FileTarget

    now = datetime.now(timezone.utc)
    lake = tmp_path / "lake"
    options = ConvertOptions(workers=2)
    convert_export(export_of(tmp_path / "a", _items(40), at=now - timedelta(hours=2)), lake, options)
    target = lake_target(lake, options)
    with load_table(target.catalog, *target.identifier).transaction() as transaction:
        transaction.set_properties({"write.metadata.metrics.default": "counts",
                                    "write.metadata.metrics.column.qty": "full"})
    convert_export(export_of(tmp_path / "b", _items(60), at=now - timedelta(hours=1), export_id="b"), lake, options)
    table = read_table_metadata(str(lake))["table"]
    [data_file] = _assert_as_from_footers(table)
    assert set(data_file.lower_bounds) == {_field_id(table, "qty")} and data_file.null_value_counts

    source = export_of(tmp_path / "c", _items(30), export_id="c")
    export, profile = profile_export(source, options)
    plan = plan_table(profile, options.schema_options)
    file_target = FileTarget(target.location.join("data").uri, "run1",
                             metrics=(("write.metadata.metrics.default", "none"),))
    writing = dataclasses.replace(shard_specs(export, options, "run1")[0], schema=plan.schema, active=plan.active,
                                  target=file_target)
    spec = ShardSpec.from_json(writing.to_json(), obj="spec.json")
    assert spec == writing and spec.target is not None and spec.target.metrics == file_target.metrics
    result = ShardResult.from_json(run_shard(spec).to_json(), obj="result.json")
    assert result.written
    for written in result.written:
        statistics = written.statistics
        assert statistics is not None and statistics["record_count"] == written.rows
        assert not statistics["value_counts"] and not statistics["lower_bounds"] and statistics["column_sizes"]
