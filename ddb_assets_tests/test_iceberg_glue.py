"""Iceberg on the local world's Glue catalog, over HTTP: pyiceberg's GlueCatalog, Glue's optimistic
locking (``VersionId``), and the local Athena reading Iceberg tables."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.table import StaticTable

from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import unique

ROWS_SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("price", pa.decimal128(10, 2)),
                         ("tags", pa.list_(pa.string()))])


def _rows(ids: range, schema: pa.Schema = ROWS_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist([{"id": i, "name": f"item-{i}", "price": Decimal(f"{i}.{i % 100:02d}"),
                                  "tags": [f"t{i}", "x"] if i % 2 else None} for i in ids], schema)


class Lake:
    """A bucket, a Glue database, and pyiceberg GlueCatalogs over them (each its own boto3 client)."""

    def __init__(self, world: LocalWorld):
        self.world = world
        self.bucket = unique("iceberg")
        self.database = unique("db").replace("-", "_")
        world.client("s3").create_bucket(Bucket=self.bucket)
        self.properties = world.iceberg_catalog_properties(f"s3://{self.bucket}/lake")
        self.catalog().create_namespace(self.database)

    def catalog(self, name: str = "local") -> GlueCatalog:
        return GlueCatalog(name, **self.properties)

    def create(self, name: str, schema: pa.Schema = ROWS_SCHEMA, **properties: str) -> Any:
        return self.catalog().create_table(f"{self.database}.{name}", schema=schema,
                                           location=f"s3://{self.bucket}/lake/{name}", properties=properties)

    def data_bytes(self, name: str) -> int:
        """The bytes of the table's data files, as S3 lists them (not as Iceberg says)."""
        listed = self.world.client("s3").list_objects_v2(Bucket=self.bucket, Prefix=f"lake/{name}/data/")
        return sum(o["Size"] for o in listed.get("Contents", []) if o["Key"].endswith(".parquet"))


@pytest.fixture
def lake(world: LocalWorld) -> Lake:
    return Lake(world)


def _by_id(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: row["id"])


# ---------------------------------------------------------------------------------------------
# 1. pyiceberg's GlueCatalog against the local world


def test_a_glue_catalog_table_round_trips_over_http(world: LocalWorld, lake: Lake) -> None:
    table = lake.create("t")
    table.append(_rows(range(0, 5)))
    table.append(_rows(range(5, 8)))

    loaded = lake.catalog("again").load_table(f"{lake.database}.t")
    assert len(loaded.metadata.snapshots) == 2
    assert _by_id(loaded.scan().to_arrow()) == _rows(range(0, 8)).to_pylist()

    glue_table = world.client("glue").get_table(DatabaseName=lake.database, Name="t")["Table"]
    assert glue_table["Parameters"]["table_type"] == "ICEBERG"
    assert glue_table["Parameters"]["metadata_location"] == loaded.metadata_location
    assert loaded.metadata_location.startswith(f"s3://{lake.bucket}/lake/t/metadata/")

    # An independent read: the metadata file alone, no catalog.
    static = StaticTable.from_metadata(loaded.metadata_location, lake.properties)
    assert _by_id(static.scan().to_arrow()) == _rows(range(0, 8)).to_pylist()
    assert lake.data_bytes("t") > 0
