"""Reconciliation of two lake tables (lake/reconcile.py): equal tables are found equal although
their columns differ (vanished attributes, widened decimals), and each kind of difference is
counted exactly, with the keys named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddb_assets.lake.reconcile import reconcile
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.test_incremental_merge import WINDOW, Chain, clock  # noqa: F401 (fixture)


def test_merged_and_fresh_tables_reconcile_then_each_difference_is_counted(world: LocalWorld, clock: WorldClock,
                                                                             tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    for i in range(6):
        chain.put(f"k{i}", i, year={"N": "2015"}, price={"N": "15"}, gone={"S": "soon"}, tags={"SS": ["b", "a"]},
                  blob={"B": "AAE="})
    chain.full()
    start = chain.mark
    clock.advance(10)
    # The merged table keeps the vanished attribute's column (all null) and widens price to a
    # decimal; the fresh table never sees either: the items are still the same.
    for i in range(6):
        chain.put(f"k{i}", i, year={"N": "2016" if i % 2 else "2015"}, price={"N": "15.50" if i == 0 else "15"},
                  tags={"SS": ["a", "b"]}, blob={"B": "AAE="})
    chain.delete("k5", 5)
    clock.set(start + WINDOW + 1, frozen=True)
    merged = chain.incremental(start, start + WINDOW)
    check = chain.full("t_check", at=start + WINDOW)
    assert [c.name for c in merged.commit.table.schema().fields] != [c.name for c in check.commit.table.schema().fields]
    same = reconcile(merged.commit.table, check.commit.table, ["pk", "sk"])
    assert same.equal, same.describe()
    assert (same.table_rows, same.reference_rows) == (5, 5)
    assert "every attribute of every key the same" in same.describe()

    # Now the merged table moves on alone: one update, one delete, one insert.
    clock.advance(10)
    chain.put("k1", 1, year={"N": "2016"}, price={"N": "16"}, tags={"SS": ["a", "b"]}, blob={"B": "AAE="})
    chain.delete("k2", 2)
    chain.put("new", 9, year={"N": "2017"})
    clock.set(start + 2 * WINDOW + 1, frozen=True)
    moved = chain.incremental(start + WINDOW, start + 2 * WINDOW)
    found = reconcile(moved.commit.table, check.commit.table, ["pk", "sk"])
    assert not found.equal
    assert (found.missing, found.extra, found.different, found.duplicates) == (1, 1, 1, 0)
    assert (found.table_rows, found.reference_rows) == (5, 5)
    assert found.examples == [{"problem": "different", "key": "pk=k1, sk=1"},
                              {"problem": "extra", "key": "pk=new, sk=9"},
                              {"problem": "missing", "key": "pk=k2, sk=2"}]
    assert "1 missing from" in found.describe() and "1 with different attributes" in found.describe()


@pytest.mark.fast
@pytest.mark.parametrize(("value", "types"), [
    ("0.25", ["DECIMAL(2,2)", "DECIMAL(3,2)", "DECIMAL(38,10)"]),  # DuckDB prints decimal(2,2) as '.25'
    ("-0.25", ["DECIMAL(2,2)", "DECIMAL(5,3)"]),
    ("0", ["DECIMAL(2,2)", "DECIMAL(4,0)", "BIGINT"]),
    ("-0.00", ["DECIMAL(3,2)", "DECIMAL(2,2)", "BIGINT"]),
    ("15.00", ["DECIMAL(5,2)", "DECIMAL(4,0)", "BIGINT"]),
    ("100.50", ["DECIMAL(6,2)", "DECIMAL(20,9)"]),
])
def test_a_number_has_one_canonical_text_whatever_its_column_type(value: str, types: list[str]) -> None:
    import duckdb
    import pyarrow as pa

    from ddb_assets.lake.reconcile import _scalar_sql

    connection = duckdb.connect()
    texts = set()
    for sql_type in types:
        expression = f"CAST(CAST('{value}' AS DECIMAL(38,10)) AS {sql_type})"
        kind = pa.int64() if sql_type == "BIGINT" else pa.decimal128(38, 10)
        texts.add(connection.execute(f"SELECT {_scalar_sql(expression, kind)}").fetchone()[0])
    expected = {"0.25": "0.25", "-0.25": "-0.25", "0": "0", "-0.00": "0", "15.00": "15", "100.50": "100.5"}[value]
    assert texts == {expected}
