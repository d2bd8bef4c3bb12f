"""Iceberg on the local world's Glue catalog, over HTTP: pyiceberg's GlueCatalog, Glue's optimistic
locking (``VersionId``), and the local Athena reading Iceberg tables."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import StaticTable
from pyiceberg.types import DoubleType

from ddb_assets.local.athena_sql import iceberg_metadata_location
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


# ---------------------------------------------------------------------------------------------
# 2. Glue UpdateTable checks VersionId


def test_update_table_refuses_a_stale_version_and_counts_versions(world: LocalWorld) -> None:
    glue = world.client("glue")
    database = unique("db").replace("-", "_")
    glue.create_database(DatabaseInput={"Name": database})
    glue.create_table(DatabaseName=database, TableInput={"Name": "v", "Parameters": {"n": "0"}})

    def current() -> tuple[int, str]:
        found = glue.get_table(DatabaseName=database, Name="v")["Table"]
        return int(found["VersionId"]), found["Parameters"]["n"]

    first, _ = current()
    glue.update_table(DatabaseName=database, TableInput={"Name": "v", "Parameters": {"n": "1"}},
                      VersionId=str(first))
    assert current() == (first + 1, "1")

    with pytest.raises(glue.exceptions.ConcurrentModificationException) as raised:
        glue.update_table(DatabaseName=database, TableInput={"Name": "v", "Parameters": {"n": "lost"}},
                          VersionId=str(first))
    assert "concurrent modifications" in str(raised.value)
    assert current() == (first + 1, "1")  # refused: nothing changed

    glue.update_table(DatabaseName=database, TableInput={"Name": "v", "Parameters": {"n": "2"}})  # no VersionId
    assert current() == (first + 2, "2")

    def archived() -> set[int]:
        listed = glue.get_table_versions(DatabaseName=database, TableName="v")["TableVersions"]
        return {int(v["VersionId"]) for v in listed}

    assert archived() == {first, first + 1, first + 2}
    glue.update_table(DatabaseName=database, TableInput={"Name": "v", "Parameters": {"n": "3"}},
                      VersionId=str(first + 2), SkipArchive=True)
    assert current() == (first + 3, "3")
    assert archived() == {first, first + 1, first + 3}  # the replaced version was not archived

    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.update_table(DatabaseName=database, TableInput={"Name": "missing"}, VersionId="1")


# pyiceberg retries a failed append on the refreshed table (commit.retry.num-retries, 4 by default);
# with none, the losing writer sees the CommitFailedException itself.
NO_RETRIES = {"commit.retry.num-retries": "0"}


def test_the_second_of_two_racing_appends_fails_and_loses_nothing(lake: Lake) -> None:
    lake.create("race", **NO_RETRIES).append(_rows(range(0, 2)))
    first = lake.catalog("writer-a").load_table(f"{lake.database}.race")
    second = lake.catalog("writer-b").load_table(f"{lake.database}.race")  # both from the same state

    first.append(_rows(range(10, 13)))
    with pytest.raises(CommitFailedException):
        second.append(_rows(range(20, 24)))
    reader = lake.catalog("reader")
    assert _by_id(reader.load_table(f"{lake.database}.race").scan().to_arrow()) == \
        _rows(range(0, 2)).to_pylist() + _rows(range(10, 13)).to_pylist()

    retried = reader.load_table(f"{lake.database}.race")
    retried.append(_rows(range(20, 24)))
    assert _by_id(reader.load_table(f"{lake.database}.race").scan().to_arrow()) == \
        _rows(range(0, 2)).to_pylist() + _rows(range(10, 13)).to_pylist() + _rows(range(20, 24)).to_pylist()


@pytest.mark.parametrize("retries", [False, True], ids=["no-retries", "pyiceberg-retries"])
def test_glue_refuses_a_commit_raced_between_its_read_and_its_update(lake: Lake, retries: bool) -> None:
    """pyiceberg re-reads the table before it commits, so a writer that starts after another has
    committed fails on Iceberg's own checks. The race only Glue can catch: the other commit lands
    after that re-read, just before this writer's UpdateTable. moto alone lets the stale update
    win and the other commit's rows vanish; here it fails, and pyiceberg's retry (when on) then
    commits on top of the other, so nothing is lost either way."""
    name = f"tight_{retries}".lower()
    lake.create(name, **({} if retries else NO_RETRIES)).append(_rows(range(0, 2)))
    catalog_b = lake.catalog("writer-b")
    first = lake.catalog("writer-a").load_table(f"{lake.database}.{name}")
    second = catalog_b.load_table(f"{lake.database}.{name}")
    landed: list[int] = []

    def first_commits_now(**_: Any) -> None:
        if not landed:
            landed.append(1)
            first.append(_rows(range(10, 13)))

    catalog_b.glue.meta.events.register("before-call.glue.UpdateTable", first_commits_now)
    reader = lake.catalog("reader")
    if retries:
        second.append(_rows(range(20, 24)))
        assert landed
        assert _by_id(reader.load_table(f"{lake.database}.{name}").scan().to_arrow()) == \
            _rows(range(0, 2)).to_pylist() + _rows(range(10, 13)).to_pylist() + _rows(range(20, 24)).to_pylist()
        return

    with pytest.raises(CommitFailedException, match="concurrent update"):
        second.append(_rows(range(20, 24)))
    assert landed
    assert _by_id(reader.load_table(f"{lake.database}.{name}").scan().to_arrow()) == \
        _rows(range(0, 2)).to_pylist() + _rows(range(10, 13)).to_pylist()
    catalog_b.load_table(f"{lake.database}.{name}").append(_rows(range(20, 24)))
    assert reader.load_table(f"{lake.database}.{name}").scan().to_arrow().num_rows == 2 + 3 + 4


# ---------------------------------------------------------------------------------------------
# 3. The local Athena reads Iceberg tables registered in Glue


def _run(lake: Lake, sql: str) -> dict[str, Any]:
    """Start through boto3 Athena as a client would and poll; returns the final QueryExecution."""
    athena = lake.world.client("athena")
    query_id = athena.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Database": lake.database},
        ResultConfiguration={"OutputLocation": f"s3://{lake.bucket}/athena-results/"})["QueryExecutionId"]
    deadline = time.monotonic() + 30
    while True:
        execution: dict[str, Any] = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] in ("SUCCEEDED", "FAILED", "CANCELLED") or time.monotonic() > deadline:
            return execution
        time.sleep(0.05)


def _athena(lake: Lake, sql: str) -> tuple[list[dict[str, Any]], list[list[str | None]], int]:
    """Run a query that must succeed; returns (ColumnInfo, rows as text, bytes scanned)."""
    execution = _run(lake, sql)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"].get("StateChangeReason")
    result = lake.world.client("athena").get_query_results(
        QueryExecutionId=execution["QueryExecutionId"])["ResultSet"]
    rows = [[cell.get("VarCharValue") for cell in row["Data"]] for row in result["Rows"]]
    columns = result["ResultSetMetadata"]["ColumnInfo"]
    assert rows[0] == [c["Name"] for c in columns]  # the header row
    return columns, rows[1:], execution["Statistics"]["DataScannedInBytes"]


def test_athena_reads_an_iceberg_table_from_glue(lake: Lake) -> None:
    table = lake.create("items")
    table.append(_rows(range(1, 4)))
    table.append(_rows(range(4, 6)))

    columns, rows, scanned = _athena(lake, 'SELECT id, name, price, tags FROM "items" ORDER BY id')
    assert [(c["Name"], c["Type"]) for c in columns] == [
        ("id", "bigint"), ("name", "varchar"), ("price", "decimal"), ("tags", "array")]
    assert (columns[2]["Precision"], columns[2]["Scale"]) == (10, 2)
    assert rows == [["1", "item-1", "1.01", "[t1, x]"], ["2", "item-2", "2.02", None],
                    ["3", "item-3", "3.03", "[t3, x]"], ["4", "item-4", "4.04", None],
                    ["5", "item-5", "5.05", "[t5, x]"]]
    assert scanned == lake.data_bytes("items") > 0

    _, [[count, total]], _ = _athena(lake, f'SELECT count(*), sum(price) FROM "{lake.database}"."items" WHERE id > 1')
    assert (count, Decimal(total)) == ("4", Decimal("14.14"))


def test_athena_reads_an_evolved_iceberg_table_by_its_current_schema(lake: Lake) -> None:
    simple = pa.schema([("id", pa.int64()), ("name", pa.string())])
    table = lake.create("evolving", simple)
    table.append(pa.table({"id": [1, 2], "name": ["a", "b"]}, simple))
    with table.update_schema() as update:
        update.add_column("score", DoubleType())
        update.move_first("score")
        update.rename_column("name", "title")  # old files still say "name": Iceberg reads by field id
    evolved = pa.schema([("score", pa.float64()), ("id", pa.int64()), ("title", pa.string())])
    table.append(pa.table({"score": [0.5], "id": [3], "title": ["c"]}, evolved))

    columns, rows, scanned = _athena(lake, "SELECT * FROM evolving ORDER BY id")
    assert [(c["Name"], c["Type"]) for c in columns] == [("score", "double"), ("id", "bigint"), ("title", "varchar")]
    assert rows == [[None, "1", "a"], [None, "2", "b"], ["0.5", "3", "c"]]
    assert scanned == lake.data_bytes("evolving")


def test_an_empty_iceberg_table_reads_as_no_rows_with_its_columns(lake: Lake) -> None:
    lake.create("empty")
    columns, rows, scanned = _athena(lake, "SELECT * FROM empty")
    assert [c["Name"] for c in columns] == ["id", "name", "price", "tags"] and rows == [] and scanned == 0


@pytest.mark.fast
def test_which_glue_tables_are_iceberg() -> None:
    location = "s3://b/t/metadata/00001-x.metadata.json"
    assert iceberg_metadata_location({"Parameters": {"table_type": "iceberg", "metadata_location": location}}) == location
    assert iceberg_metadata_location({"Parameters": {"table_type": "ICEBERG"}}) is None
    assert iceberg_metadata_location({"Parameters": {"table_type": "EXTERNAL_TABLE", "metadata_location": location}}) is None
    assert iceberg_metadata_location({"TableType": "EXTERNAL_TABLE"}) is None


# ---------------------------------------------------------------------------------------------
# 4. Athena's Iceberg CTAS creates an Iceberg table in Glue


def test_an_iceberg_ctas_creates_an_iceberg_table_in_glue(world: LocalWorld, lake: Lake) -> None:
    table = lake.create("source")
    table.append(_rows(range(1, 7)))
    location = f"s3://{lake.bucket}/lake/odd_items/"
    execution = _run(lake, f"""CREATE TABLE odd_items WITH (table_type = 'ICEBERG', location = '{location}',
                                   is_external = false) AS SELECT id, price, tags FROM source WHERE id % 2 = 1""")
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"].get("StateChangeReason")
    assert execution["Statistics"]["DataScannedInBytes"] == lake.data_bytes("source")

    glue_table = world.client("glue").get_table(DatabaseName=lake.database, Name="odd_items")["Table"]
    assert glue_table["Parameters"]["table_type"] == "ICEBERG"
    created = lake.catalog().load_table(f"{lake.database}.odd_items")
    assert created.location() == location.rstrip("/") and len(created.metadata.snapshots) == 1
    expected = [{k: row[k] for k in ("id", "price", "tags")} for row in _rows(range(1, 7, 2)).to_pylist()]
    assert _by_id(created.scan().to_arrow()) == expected

    columns, rows, _ = _athena(lake, "SELECT * FROM odd_items ORDER BY id")
    assert [(c["Name"], c["Type"]) for c in columns] == [("id", "bigint"), ("price", "decimal"), ("tags", "array")]
    assert rows == [["1", "1.01", "[t1, x]"], ["3", "3.03", "[t3, x]"], ["5", "5.05", "[t5, x]"]]

    again = _run(lake, f"CREATE TABLE odd_items WITH (table_type = 'ICEBERG', location = '{location}', "
                       "is_external = false) AS SELECT 1 AS id")
    assert again["Status"]["State"] == "FAILED" and "already exists" in again["Status"]["StateChangeReason"]


def test_an_iceberg_ctas_needs_is_external_false_and_a_location(lake: Lake) -> None:
    lake.create("base").append(_rows(range(1, 3)))
    for props, reason in ((f"table_type = 'ICEBERG', location = 's3://{lake.bucket}/lake/x/'", "is_external = false"),
                          ("table_type = 'ICEBERG', is_external = false", "location = 's3://...'")):
        failed = _run(lake, f"CREATE TABLE x WITH ({props}) AS SELECT id FROM base")
        assert failed["Status"]["State"] == "FAILED" and reason in failed["Status"]["StateChangeReason"]
    assert "x" not in {t["Name"] for t in lake.world.client("glue").get_tables(DatabaseName=lake.database)["TableList"]}
