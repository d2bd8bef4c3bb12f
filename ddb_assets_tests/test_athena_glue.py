"""Athena and the Glue catalog, against the local world's Glue and Athena APIs over HTTP."""

from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from ddb_assets.lake.catalog import CatalogConfig
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.local.world import ACCOUNT_ID, LocalWorld
from ddb_assets.query.athena_engine import AthenaEngine, AthenaQueryError, AthenaQueryTimeout
from ddb_assets_tests import doctor
from ddb_assets_tests.conftest import unique


@pytest.fixture
def athena(world: LocalWorld, s3: Any) -> AthenaEngine:
    results = unique("athena-results")
    s3.create_bucket(Bucket=results)
    glue = world.client("glue")
    try:
        glue.create_database(DatabaseInput={"Name": "ddb_lake"})
    except glue.exceptions.AlreadyExistsException:
        pass
    return AthenaEngine(world.client("athena"), database="ddb_lake", output_location=f"s3://{results}/q/",
                        timeout_seconds=2, first_poll_seconds=0.05, max_poll_seconds=0.2)


@pytest.fixture
def slow_athena(world: LocalWorld) -> Iterator[None]:
    """Queries stay RUNNING (moto's state manager), as a long Athena query would."""
    url = f"{world.endpoint}/moto-api/state-manager"
    requests.post(f"{url}/set-transition", json={"model_name": "athena::execution",
                                                 "transition": {"progression": "manual", "times": 10_000}}).raise_for_status()
    yield
    requests.post(f"{url}/unset-transition", json={"model_name": "athena::execution"}).raise_for_status()


def _queue_results(world: LocalWorld, rows: list[list[str]], columns: list[tuple[str, str]]) -> None:
    header = {"Data": [{"VarCharValue": name} for name, _ in columns]}
    body = {"account_id": ACCOUNT_ID, "region": "us-east-1", "results": [{
        "rows": [header] + [{"Data": [{"VarCharValue": v} for v in row]} for row in rows],
        "column_info": [{"Name": name, "Type": kind, "Precision": 10 if kind == "decimal" else 0,
                         "Scale": 2 if kind == "decimal" else 0} for name, kind in columns]}]}
    requests.post(f"{world.endpoint}/moto-api/static/athena/query-results", json=body).raise_for_status()


def test_a_query_succeeds_with_typed_results_and_the_right_context(world: LocalWorld, athena: AthenaEngine) -> None:
    _queue_results(world, [["17431877", "565", "4.11"], ["79586413", "258", "4.00"]],
                   [("customer_id", "varchar"), ("reviews", "bigint"), ("average_stars", "decimal")])
    result = athena.query('SELECT customer_id, count(*) AS reviews FROM "ddb_lake"."reviews" GROUP BY 1')
    assert result.table.to_pylist() == [
        {"customer_id": "17431877", "reviews": 565, "average_stars": Decimal("4.11")},
        {"customer_id": "79586413", "reviews": 258, "average_stars": Decimal("4.00")}]
    assert result.bytes_scanned == 0
    [query_id] = [q for q in world.client("athena").list_query_executions()["QueryExecutionIds"]
                  if world.client("athena").get_query_execution(QueryExecutionId=q)["QueryExecution"]["Query"]
                  .startswith('SELECT customer_id, count(*) AS reviews')]
    execution = world.client("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert execution["QueryExecutionContext"]["Database"] == "ddb_lake"
    assert execution["ResultConfiguration"]["OutputLocation"].startswith(athena.output_location)


def test_a_query_past_the_timeout_is_cancelled(world: LocalWorld, athena: AthenaEngine, slow_athena: None) -> None:
    with pytest.raises(AthenaQueryTimeout) as raised:
        athena.query("SELECT 1")
    state = world.client("athena").get_query_execution(QueryExecutionId=raised.value.query_id)
    assert state["QueryExecution"]["Status"]["State"] == "CANCELLED"
    assert raised.value.query_id in str(raised.value) and "cancelled" in str(raised.value)


def test_a_failed_query_raises_with_its_id_and_reason(world: LocalWorld, athena: AthenaEngine) -> None:
    query_id = athena.start('SELECT missing_column FROM "ddb_lake"."no_such_table"')
    with pytest.raises(AthenaQueryError) as raised:
        athena.wait(query_id)
    assert raised.value.state == "FAILED" and raised.value.query_id == query_id
    assert query_id in str(raised.value) and "no_such_table" in raised.value.reason


def test_the_glue_catalog_is_the_lake_catalog_and_athena_reads_each_commit(world: LocalWorld, tmp_path: Path,
                                                                             s3: Any, athena: AthenaEngine) -> None:
    """With catalog glue, a conversion's commit is the Glue registration: the Glue table's
    metadata_location is the new snapshot's, and Athena reads it with no step in between."""
    lake_bucket = unique("lake")
    s3.create_bucket(Bucket=lake_bucket)
    glue = world.client("glue")
    export = doctor.make_export(tmp_path / "export", items=300)
    root = f"s3://{lake_bucket}/reviews"
    options = ConvertOptions(workers=1, partition_by="year", catalog=CatalogConfig("glue", namespace="ddb_lake"))
    with world.environment():
        first = convert_export(export, root, options)
    table = glue.get_table(DatabaseName="ddb_lake", Name="reviews")["Table"]
    assert table["Parameters"]["table_type"].upper() == "ICEBERG"
    assert table["Parameters"]["metadata_location"] == first.commit.metadata_location
    assert table["StorageDescriptor"]["Location"] == root
    counts = athena.query('SELECT year, count(*) AS n FROM "ddb_lake"."reviews" GROUP BY year ORDER BY year').table
    assert sum(counts.column("n").to_pylist()) == 300

    # A newer export: one commit moves the Glue table to the new snapshot, nothing else to update.
    from ddb_assets.local.bulk_export import generate_folder_export
    newer = generate_folder_export(tmp_path / "newer", items=200, files=2, seed=9).parent
    with world.environment():
        second = convert_export(newer, root, options)
    table = glue.get_table(DatabaseName="ddb_lake", Name="reviews")["Table"]
    assert table["Parameters"]["metadata_location"] == second.commit.metadata_location
    assert table["Parameters"]["previous_metadata_location"] == first.commit.metadata_location
    total = athena.query('SELECT count(*) AS n FROM "ddb_lake"."reviews"').table.to_pylist()
    assert total == [{"n": 200}]


def test_the_athena_profile_registers_glue_and_runs_checks_and_reports_on_athena(
        world: LocalWorld, ddb: Any, s3: Any, tmp_path: Path) -> None:
    import dagster as dg

    from ddb_assets.definitions import build_definitions
    from ddb_assets.defs.names import TableNames
    from ddb_assets.local.loader import batch_write
    from ddb_assets.local.pipeline import local_settings
    from ddb_assets.local.sample_data import ReviewGenerator
    from ddb_assets.local.tables import create_reviews_table
    from ddb_assets.settings import AthenaSettings, CatalogSettings
    from ddb_assets_tests.conftest import wait_done

    table, bucket, lake_bucket, results = unique("reviews"), unique("exports"), unique("lake"), unique("results")
    for name in (bucket, lake_bucket, results):
        s3.create_bucket(Bucket=name)
    arn = create_reviews_table(ddb, table)
    batch_write(ddb, table, ReviewGenerator(200, seed=2))
    started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix=f"exports/{table}")
    export_id = wait_done(ddb, started["ExportDescription"]["ExportArn"])["ExportArn"].rsplit("/", 1)[1]
    database = unique("db").replace("-", "_")
    settings = local_settings(world.endpoint, f"s3://{lake_bucket}/lake", table=table, bucket=bucket,
                              convert_workers=1).model_copy(update={
                                  "query_engine": AthenaSettings(output_location=f"s3://{results}/q/"),
                                  "catalog": CatalogSettings(kind="glue", namespace=database)})
    names = TableNames(settings, settings.tables[0])
    defs = build_definitions(settings)
    assets = {a.key: a for a in defs.assets if isinstance(a, dg.AssetsDefinition)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(names.export_partitions.name, [export_id])
        dg.materialize([assets[names.raw_export_key]], partition_key=export_id, instance=instance,
                       resources=defs.resources)
        partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)
        # No queued results: the local Athena runs every query for real over the Glue catalog.
        result = dg.materialize([assets[names.raw_export_key], assets[names.parquet_key]],
                                selection=[names.parquet_key], instance=instance, resources=defs.resources,
                                tags={"dagster/asset_partition_range_start": partitions[0],
                                      "dagster/asset_partition_range_end": partitions[-1]})
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["keys_not_null_and_unique"].passed and checks["row_count_matches_export"].passed
        assert checks["keys_not_null_and_unique"].metadata["rows"].value == 200
        glue = world.client("glue")
        registered = glue.get_table(DatabaseName=database, Name=names.name)["Table"]
        [mat] = result.asset_materializations_for_node(f"{names.name}__parquet")[:1]
        assert registered["Parameters"]["metadata_location"] == mat.metadata["metadata_location"].value
        assert "| product_id |" in mat.metadata["preview"].value

        for attempt in range(2):  # twice: the second overwrites the first in a new snapshot
            report = dg.materialize([assets[names.parquet_key], assets[names.key("top_customers")]],
                                    selection=[names.key("top_customers")], instance=instance,
                                    resources=defs.resources)
        [mat] = report.asset_materializations_for_node(f"{names.name}__top_customers")
        counts: dict[str, int] = {}
        for item in ReviewGenerator(200, seed=2):
            counts[item["customer_id"]["S"]] = counts.get(item["customer_id"]["S"], 0) + 1
        best = max(counts.values())
        assert mat.metadata["dagster/row_count"].value == min(100, len(counts))
        assert mat.metadata["bytes_scanned"].value > 0
        top = [c for c, n in counts.items() if n == best]
        assert any(customer in mat.metadata["preview"].value for customer in top)
        stable = glue.get_table(DatabaseName=database, Name=f"{names.name}_top_customers")["Table"]
        location = stable["StorageDescriptor"]["Location"]
        assert stable["Parameters"]["table_type"].upper() == "ICEBERG"
        assert location == mat.metadata["dagster/uri"].value and location.startswith(f"s3://{lake_bucket}/lake/reports/")
        assert stable["Parameters"]["metadata_location"] == mat.metadata["metadata_location"].value
        best_rows = AthenaEngine(world.client("athena"), database=database, output_location=f"s3://{results}/q/") \
            .query(f'SELECT count(*) AS n FROM "{database}"."{names.name}_top_customers"').table.to_pylist()
        assert best_rows == [{"n": min(100, len(counts))}]  # the second run replaced the first's rows


def test_results_are_read_across_pages(world: LocalWorld, athena: AthenaEngine) -> None:
    rows = [[str(i), f"customer-{i}"] for i in range(2_500)]  # three pages of at most 1,000
    _queue_results(world, rows, [("n", "bigint"), ("customer_id", "varchar")])
    result = athena.query("SELECT n, customer_id FROM many")
    assert result.table.num_rows == 2_500
    assert result.table.column("n").to_pylist() == list(range(2_500))
    first_page = world.client("athena").get_query_results(
        QueryExecutionId=world.client("athena").list_query_executions()["QueryExecutionIds"][-1], MaxResults=1000)
    assert len(first_page["ResultSet"]["Rows"]) == 1000 and first_page["NextToken"]


def test_odd_names_and_partition_values_cannot_break_or_inject(world: LocalWorld, tmp_path: Path, s3: Any) -> None:
    """Glue naming keeps attribute names as they are: quotes, spaces and dots reach the SQL we write."""
    from ddb_assets.query.athena_lake import AthenaLakeEngine
    from ddb_assets.query.duckdb_engine import DuckDBEngine, quote_identifier
    from ddb_assets_tests.test_schema_rules import export_of

    items = [{'we"ird name': {"S": "x"}, "cat": {"S": "a'b\"c; DROP TABLE t; --"}},
             {'we"ird name': {"S": "y"}, "cat": {"S": "plain"}}]
    lake_bucket = unique("lake")
    s3.create_bucket(Bucket=lake_bucket)
    root = f"s3://{lake_bucket}/odd"
    database = unique("db").replace("-", "_")
    with world.environment():
        result = convert_export(export_of(tmp_path / "export", items), root,
                                ConvertOptions(workers=1, naming="glue", partition_by="cat",
                                               catalog=CatalogConfig("glue", namespace=database)))
        duck = DuckDBEngine()
        duck.register_table("odd", result.commit.table)
        column = quote_identifier('item.we"ird name.s')
        rows = duck.query(f"SELECT {column} AS v, \"item.cat.s\" AS cat FROM odd ORDER BY v").table.to_pylist()
    assert rows == [{"v": "x", "cat": "a'b\"c; DROP TABLE t; --"}, {"v": "y", "cat": "plain"}]

    athena = AthenaLakeEngine(athena=world.client("athena"), glue=world.client("glue"), database=database,
                              output_location=f"s3://{lake_bucket}/results/")
    athena.register_table("odd")
    result = athena.query(f"SELECT {column} AS v FROM {athena.table_reference('odd')} "
                          f"WHERE \"item.cat.s\" = 'a''b\"c; DROP TABLE t; --'")
    assert result.table.to_pylist() == [{"v": "x"}]
