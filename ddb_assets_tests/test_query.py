"""SQL over the lake with DuckDB: the AWS walkthrough's queries as written, and the query CLI."""

import collections
import json

import pytest
from pathlib import Path

from ddb_assets.exports.reader import open_export
from ddb_assets.exports.storage import resolve
from ddb_assets.lake.catalog import CatalogConfig, load_table, namespaces_named_in, open_catalog
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.raw_table import crawler_shape
from ddb_assets.local.sample_data import ReviewGenerator
from ddb_assets.local.walkthrough import write_walkthrough_tables
from ddb_assets.query.duckdb_engine import DuckDBEngine, quote_identifier
from ddb_assets_tests import doctor
from ddb_assets_tests.cli_helpers import run_cli

GLUE_TABLE = "ddbs3_parquetpartitioned__output_flat_partitioned"
WALKTHROUGH_RAW = ('SELECT item.customer_id.s AS customer, COUNT(item.customer_id.s) AS Count FROM "default"."data" '
                   'GROUP BY item.customer_id.s ORDER BY Count DESC limit 10;')
WALKTHROUGH_FLAT = (f'SELECT * FROM "default"."{GLUE_TABLE}" WHERE "item.product_title.s" = \'Dune\' '
                    'ORDER BY "item.year.n" asc limit 100;')


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("query")
    export = doctor.make_export(tmp / "export", items=1500, seed=5)
    convert_export(export, tmp / "lake" / GLUE_TABLE, ConvertOptions(workers=1, naming="glue", partition_by="year"))
    convert_export(export, tmp / "lake" / "reviews", ConvertOptions(workers=1, partition_by="year"))
    catalog = open_catalog(CatalogConfig(), resolve(tmp / "lake"))
    return {"export": export, "lake": tmp / "lake", "items": list(ReviewGenerator(1500, seed=5)),
            "catalog": catalog, "tables": {name: load_table(catalog, "ddb_lake", name) for name in (GLUE_TABLE, "reviews")}}


def test_the_walkthrough_queries_run_as_written(lake: dict) -> None:
    engine = DuckDBEngine()
    engine.register_raw_export("data", open_export(lake["export"]), schema="default")
    engine.register_table(GLUE_TABLE, lake["tables"][GLUE_TABLE], schema="default")

    counts = collections.Counter(item["customer_id"]["S"] for item in lake["items"])
    top = engine.query(WALKTHROUGH_RAW).table.to_pylist()
    assert len(top) == 10
    assert [row["Count"] for row in top] == [count for _, count in counts.most_common(10)]
    assert all(counts[row["customer"]] == row["Count"] for row in top)

    dune = engine.query(WALKTHROUGH_FLAT).table
    expected = sorted(int(i["year"]["N"]) for i in lake["items"] if i["product_title"]["S"] == "Dune")[:100]
    assert dune.num_rows == len(expected) > 0
    assert dune.column("item.year.n").to_pylist() == expected
    assert set(dune.column("item.product_title.s").to_pylist()) == {"Dune"}


def test_partition_filters_read_only_the_partitions_row_groups(lake: dict) -> None:
    engine = DuckDBEngine()
    engine.register_table("reviews", lake["tables"]["reviews"])
    count = engine.query("SELECT count(*) AS n FROM reviews WHERE year = 2015").table.to_pylist()[0]["n"]
    assert count == sum(1 for i in lake["items"] if i["year"]["N"] == "2015")
    plan = engine.query("EXPLAIN ANALYZE SELECT count(*) FROM reviews WHERE year = 2015").table.to_pylist()
    text = "\n".join(str(v) for row in plan for v in row.values())
    assert f"Scanning Files: {len(engine.tables['reviews'].files)}" not in text or "Filters" in text


@pytest.mark.fast
def test_identifiers_are_quoted_so_odd_names_cannot_inject() -> None:
    assert quote_identifier('a"; DROP TABLE x; --') == '"a""; DROP TABLE x; --"'
    engine = DuckDBEngine()
    name = quote_identifier('we"ird name')
    engine.connection.execute(f"CREATE TABLE {name} AS SELECT 1 AS v")
    assert engine.query(f"SELECT v FROM {name}").table.to_pylist() == [{"v": 1}]


def test_query_and_tables_cli(lake: dict) -> None:
    result = run_cli("query", "SELECT year, count(*) AS n FROM reviews GROUP BY year ORDER BY year",
                     "--lake", str(lake["lake"]), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.strip().splitlines()
    assert rows[0] == '"year","n"'
    years = collections.Counter(int(i["year"]["N"]) for i in lake["items"])
    assert rows[1:] == [f"{y},{n}" for y, n in sorted(years.items())]

    walkthrough = run_cli("query", WALKTHROUGH_RAW, "--lake", str(lake["lake"]), "--schema", "default",
                          "--raw", f"data={lake['export']}", "--format", "json")
    assert walkthrough.returncode == 0, walkthrough.stderr
    assert len(walkthrough.stdout.strip().splitlines()) == 10

    listed = run_cli("tables", "--lake", str(lake["lake"]))
    assert listed.returncode == 0 and "ddb_lake.reviews: 1,500 rows" in listed.stdout and "star_rating" in listed.stdout

    bad = run_cli("query", "SELEC 1", "--lake", str(lake["lake"]))
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: query failed")


def test_a_decimal_sum_past_38_digits_fails_with_the_way_to_sum_it(lake: dict) -> None:
    """The sample data holds prices of 20 integer digits (decimal(38,18)), as DynamoDB numbers may:
    DuckDB's sum of them overflows its 128-bit integers. The error says why and what sums them."""
    result = run_cli("query", "SELECT sum(price) FROM reviews", "--lake", str(lake["lake"]))
    assert (result.returncode, result.stdout) == (1, "")
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: query failed: Out of Range Error: Overflow in HUGEINT addition: ")
    assert result.stderr.endswith(" (a sum of decimal(38,s) values overflowed 38 digits: sum(CAST(price AS DOUBLE)) "
                                  "sums approximately)\n")
    approximate = run_cli("query", "SELECT sum(CAST(price AS DOUBLE)) AS s FROM reviews", "--lake", str(lake["lake"]),
                          "--format", "json")
    assert approximate.returncode == 0, approximate.stderr
    assert json.loads(approximate.stdout)["s"] > 1e21
    average = run_cli("query", "SELECT AVG(r.price) FROM reviews r", "--lake", str(lake["lake"]))
    assert average.returncode == 1 and average.stderr.endswith(
        " (a sum of decimal(38,s) values overflowed 38 digits: avg(CAST(r.price AS DOUBLE)) averages approximately)\n")
    other = run_cli("query", "SELECT 1 / 'x'", "--lake", str(lake["lake"]))  # other errors get no such hint
    assert other.returncode == 1 and "overflowed" not in other.stderr


def test_bytes_scanned_shrink_with_partition_filters(lake: dict, tmp_path: Path) -> None:
    engine = DuckDBEngine()
    engine.register_table("reviews", lake["tables"]["reviews"])
    everything = engine.query("SELECT sum(length(review_body)) FROM reviews", measure=True)
    one_year = engine.query("SELECT sum(length(review_body)) FROM reviews WHERE year = 2015", measure=True)
    assert everything.bytes_scanned and one_year.bytes_scanned
    assert one_year.bytes_scanned < everything.bytes_scanned


def test_the_walkthrough_tables_answer_the_walkthrough_sql_verbatim_from_the_cli(tmp_path: Path) -> None:
    export = doctor.make_export(tmp_path / "export", items=600, seed=3)
    lake_root = tmp_path / "lake"
    lake_root.mkdir()
    convert_export(export, lake_root / "reviews", ConvertOptions(workers=1, partition_by="year"))
    write_walkthrough_tables(doctor.make_export(tmp_path / "older", items=50, seed=1), str(lake_root))
    written = write_walkthrough_tables(export, str(lake_root))  # replaces them (as each demo does)
    assert written.raw.name() == ("default", "data") and written.flat.name() == ("default", GLUE_TABLE)
    items = list(ReviewGenerator(600, seed=3))
    counts = collections.Counter(item["customer_id"]["S"] for item in items)

    # No --raw, no --schema: "default" is a catalog namespace the SQL names.
    top = run_cli("query", WALKTHROUGH_RAW, "--lake", str(lake_root), "--format", "json")
    assert top.returncode == 0, top.stderr
    assert [json.loads(line)["Count"] for line in top.stdout.splitlines()] == [n for _, n in counts.most_common(10)]
    dune = run_cli("query", WALKTHROUGH_FLAT, "--lake", str(lake_root), "--format", "csv")
    assert dune.returncode == 0, dune.stderr  # nested and binary columns as text in CSV
    expected = sorted(int(i["year"]["N"]) for i in items if i["product_title"]["S"] == "Dune")[:100]
    assert len(dune.stdout.strip().splitlines()) == 1 + len(expected) > 1
    # Too many columns for a table at 80 columns: a block per row (psql's expanded display; on a
    # terminal this is the default, test_query_output.py drives one).
    shown = run_cli("query", WALKTHROUGH_FLAT, "--lake", str(lake_root), "--format", "vertical",
                    env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("-[ RECORD ") == len(expected) and "item.product_title.s" in shown.stdout
    assert all(line.split("|", 1)[1].strip() == "Dune" for line in shown.stdout.splitlines()
               if line.startswith("item.product_title.s "))
    # The configured namespace's tables stay unqualified, and are also under their namespace.
    both = run_cli("query", "SELECT (SELECT count(*) FROM reviews) AS a, (SELECT count(*) FROM ddb_lake.reviews) AS b",
                   "--lake", str(lake_root), "--format", "json")
    assert both.returncode == 0 and json.loads(both.stdout) == {"a": 600, "b": 600}

    # The Iceberg table holds exactly what --raw reads from the export itself.
    engine = DuckDBEngine()
    engine.register_raw_export("raw", open_export(export), schema="default")
    catalog = open_catalog(CatalogConfig(), resolve(lake_root))
    engine.register_catalog(catalog, "default", schema="default")
    same = engine.query('SELECT count(*) AS n FROM "default"."raw" r JOIN "default"."data" d '
                        "ON r.item::VARCHAR = d.item::VARCHAR").table.to_pylist()
    assert same == [{"n": 600}]
    assert namespaces_named_in(catalog, WALKTHROUGH_RAW) == ["default"]
    assert namespaces_named_in(catalog, "SELECT 1 AS defaulted") == []


@pytest.mark.fast
def test_the_crawler_shape_lowercases_tags_and_types_what_iceberg_cannot() -> None:
    import pyarrow as pa

    items = pa.array([
        {"Name": {"S": "a"}, "Tags": {"M": {}}, "Never": {"L": []}, "Nothing": {"NULL": None},
         "Deep": {"M": {"Inner": {"L": [{"N": "1"}, {"S": "x"}]}}}},
        {"Name": {"S": "b"}, "Tags": None, "Never": {"L": None}, "Nothing": None,
         "Deep": {"M": {"Inner": {"L": []}}}},
    ])
    shaped = crawler_shape(items)
    assert str(shaped.type) == ("struct<Name: struct<s: string>, Tags: struct<m: string>, "
                                "Never: struct<l: list<item: string>>, Nothing: struct<null: string>, "
                                "Deep: struct<m: struct<Inner: struct<l: list<item: struct<n: string, s: string>>>>>>")
    first, second = shaped.to_pylist()
    assert first["Tags"] == {"m": "{}"} and second["Tags"] is None  # an empty map is kept, as text
    assert first["Deep"]["m"]["Inner"]["l"] == [{"n": "1", "s": None}, {"n": None, "s": "x"}]
    assert first["Never"] == {"l": []} and second["Never"] == {"l": None}
