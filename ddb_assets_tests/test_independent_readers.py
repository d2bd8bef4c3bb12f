"""Every table the demo makes is read by two Iceberg readers that are not our code, from its
metadata_location: pyiceberg's StaticTable, and DuckDB's C++ iceberg extension (its own venv,
``make readers``). Both must see the same rows, and the rows the export holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ddb_assets.exports.storage import resolve
from ddb_assets.lake.catalog import list_tables, load_table, open_catalog
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.local.loader import batch_write
from ddb_assets.local.pipeline import local_settings, run_pipeline
from ddb_assets.local.sample_data import ReviewGenerator
from ddb_assets.local.tables import create_reviews_table
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.lake_reader import expected_item, read_rows, rebuild_items
from ddb_assets_tests.readers import duckdb_iceberg_scan
from ddb_assets_tests.test_schema_rules import export_of

READERS_PYTHON = Path(__file__).resolve().parent.parent / ".venv-readers" / "bin" / "python"
SCRIPT = Path(duckdb_iceberg_scan.__file__)


def _duckdb_rows(metadata_locations: list[str]) -> dict[str, dict[str, Any]]:
    if not READERS_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{READERS_PYTHON} is missing: `make test` creates it (make readers)")
        pytest.skip("the second reader's venv is missing: run `make readers`")
    output = subprocess.run([str(READERS_PYTHON), str(SCRIPT), *metadata_locations], capture_output=True, text=True,
                            timeout=300)
    assert output.returncode == 0, output.stderr
    documents = [json.loads(line) for line in output.stdout.splitlines()]
    return {d["metadata"]: d for d in documents}


def _key(row: list[Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def _compare(tables: dict[str, Any]) -> None:
    """For each table (name -> pyiceberg Table), pyiceberg's rows equal DuckDB's, value for value."""
    from pyiceberg.table import StaticTable

    scanned = _duckdb_rows([t.metadata_location for t in tables.values()])
    for name, table in tables.items():
        static = StaticTable.from_metadata(table.metadata_location)
        arrow = static.scan().to_arrow()
        theirs = scanned[table.metadata_location]
        assert theirs["columns"] == arrow.column_names, name
        mine = [[duckdb_iceberg_scan.plain(v) for v in row.values()] for row in arrow.to_pylist()]
        assert sorted(map(_key, theirs["rows"])) == sorted(map(_key, mine)), name


@pytest.fixture(scope="module")
def demo_lake(world: LocalWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("readers")
    table, bucket = unique("reviews"), unique("exports")
    ddb, s3 = world.client("dynamodb"), world.client("s3")
    create_reviews_table(ddb, table)
    s3.create_bucket(Bucket=bucket)
    batch_write(ddb, table, ReviewGenerator(600, seed=21))
    settings = local_settings(world.endpoint, str(tmp / "lake"), table=table, bucket=bucket, convert_workers=2)
    with dg.instance_for_test() as instance:
        run = run_pipeline(settings, instance, quiet=True)
    catalog = open_catalog(settings.catalog.config(), resolve(tmp / "lake"))
    return {"tmp": tmp, "catalog": catalog, "name": run.names.name, "items": list(ReviewGenerator(600, seed=21))}


def test_every_table_of_the_demo_reads_the_same_in_two_independent_readers(demo_lake: dict[str, Any]) -> None:
    catalog = demo_lake["catalog"]
    names = list_tables(catalog, "ddb_lake")
    assert demo_lake["name"] in names and len(names) >= 6  # the lake table and its reports
    tables = {name: load_table(catalog, "ddb_lake", name) for name in names}
    _compare(tables)
    # And the lake table holds the export's items, value for value (pyiceberg, through the mapping).
    meta, rows = read_rows(str(demo_lake["tmp"] / "lake" / demo_lake["name"]))
    key = lambda item: repr(item.get("review_id"))  # noqa: E731
    assert sorted(rebuild_items(meta, rows), key=key) == sorted((expected_item(i, meta) for i in demo_lake["items"]),
                                                                key=key)


def test_evolved_and_transformed_tables_read_the_same_in_both(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    evolving = [[{"qty": {"N": "5"}, "tags": {"SS": ["a"]}, "blob": {"B": "AAE="}}],
                [{"qty": {"N": "2.5"}, "note": {"S": "new"}, "tags": {"SS": ["b", "c"]}}]]
    for number, items in enumerate(evolving):
        convert_export(export_of(tmp_path / f"e{number}", items), lake / "evolved", ConvertOptions(workers=1))
    convert_export(export_of(tmp_path / "t", [{"ts": {"N": str(1440979200 + 86400 * i)}} for i in range(40)]),
                   lake / "by_day", ConvertOptions(workers=2, partition_by="day(ts)"))
    convert_export(export_of(tmp_path / "b", [{"c": {"S": f"c{i}"}} for i in range(30)]), lake / "bucketed",
                   ConvertOptions(workers=2, partition_by="bucket(8, c)", naming="glue"))
    catalog = open_catalog(__import__("ddb_assets.lake.catalog", fromlist=["CatalogConfig"]).CatalogConfig(),
                           resolve(lake))
    tables = {name: load_table(catalog, "ddb_lake", name) for name in ("evolved", "by_day", "bucketed")}
    assert tables["evolved"].scan().to_arrow().num_rows == 1 and len(tables["evolved"].snapshots()) == 2
    _compare(tables)
    # An older snapshot of the evolved table (before "note" existed) reads the same in both too.
    first = tables["evolved"].snapshots()[0]
    older = tables["evolved"].scan(snapshot_id=first.snapshot_id).to_arrow()
    assert older.num_rows == 1 and older.column("qty").to_pylist() == [5]
    assert sys.executable  # the comparison above ran the second reader in its own interpreter


def test_a_rebuilt_table_reads_the_same_in_both(tmp_path: Path) -> None:
    """A rebuild changing the partitioning and the schema commits one snapshot over files of the
    old spec and schema; both readers read it, and it alone: the rebuilt rows, none of the old."""
    from datetime import datetime, timedelta, timezone

    from ddb_assets.lake.catalog import CatalogConfig

    lake = tmp_path / "lake"
    then = datetime.now(timezone.utc) - timedelta(hours=1)
    old = [{"year": {"N": str(2000 + i % 3)}, "qty": {"N": str(i)}} for i in range(30)]
    convert_export(export_of(tmp_path / "old", old, at=then), lake / "t",
                   ConvertOptions(workers=2, partition_by="year"))
    new = [{"year": {"N": str(2000 + i % 3)}, "qty": {"N": str(i)}, "note": {"S": f"n{i}"}} for i in range(20)]
    convert_export(export_of(tmp_path / "new", new), lake / "t",
                   ConvertOptions(workers=2, partition_by="bucket(4, note)", naming="glue", rebuild=True))
    table = load_table(open_catalog(CatalogConfig(), resolve(lake)), "ddb_lake", "t")
    assert len(table.snapshots()) == 2 and len(table.specs()) == 2
    rows = table.scan().to_arrow()
    assert rows.num_rows == 20 and sorted(rows.column("item.note.s").to_pylist()) == sorted(f"n{i}" for i in range(20))
    _compare({"t": table})
