"""The schema evolution policy (docs/schema_rules.md), on the planner directly and over real commits.

Planner tests run on in-memory Arrow (fast tier); the three-export test converts real exports
into one Iceberg table and reads it back with pyiceberg.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ddb_assets.exports.decode import parse_items
from ddb_assets.lake.evolution import SchemaConflict, TablePlan, plan_table
from ddb_assets.lake.flatten import flatten_items
from ddb_assets.lake.partitioning import PartitionBy, PartitionError
from ddb_assets.lake.profile import Profile, profile_items
from ddb_assets.lake.schema import SchemaOptions

pytestmark = pytest.mark.fast


def items_array(items: list[dict[str, Any]]) -> pa.StructArray:
    lines = b"\n".join(json.dumps({"Item": {"pk": {"S": f"k{i}"}, **item}}).encode() for i, item in enumerate(items))
    table, _ = parse_items(lines + b"\n", output_format="DYNAMODB_JSON", obj="test.json")
    return table.column("Item").combine_chunks()


def profile_of(items: list[dict[str, Any]]) -> Profile:
    profile = profile_items(items_array(items), 0)
    profile.first_line = (0, ("pk", *items[0])) if items else None
    return profile


def plan(items: list[dict[str, Any]], stored: TablePlan | None = None, partition: str | None = None,
         **options: Any) -> TablePlan:
    return plan_table(profile_of(items), SchemaOptions(**options), PartitionBy.parse(partition),
                      stored.schema if stored is not None else None)


def columns(p: TablePlan) -> dict[str, tuple[int, str]]:
    return {c.name: (c.field_id, c.type_text) for c in p.columns}


def values(p: TablePlan, items: list[dict[str, Any]], name: str) -> list[Any]:
    return flatten_items(items_array(items), p).column(name).to_pylist()


def test_a_new_table_numbers_columns_as_iceberg_does() -> None:
    first = plan([{"a": {"S": "x"}, "tags": {"SS": ["t"]}, "n": {"N": "1"}}])
    assert [(c.name, c.field_id, c.element_id) for c in first.columns] == \
        [("pk", 1, None), ("a", 2, None), ("tags", 3, 5), ("n", 4, None)]  # top level first, then elements
    assert first.schema.last_column_id == 5 and first.new_table


def test_a_new_attribute_appends_a_column_and_names_never_change() -> None:
    first = plan([{"a": {"S": "x"}, "n": {"N": "1"}}])
    second = plan([{"b": {"BOOL": True}, "n": {"N": "2"}}], first)
    assert columns(second) == {**columns(first), "b": (4, "boolean")}
    assert [c.name for c in second.added] == ["b"] and second.vanished == ["a"]
    assert values(second, [{"b": {"BOOL": True}, "n": {"N": "2"}}], "a") == [None]


@pytest.mark.parametrize("stored, new, expected_column, expected_type", [
    # int meeting a fraction: long cannot widen to a decimal in Iceberg: a variant for the fractions
    ("5", "5.25", "n__n_d2", "decimal(3, 2)"),
    # more integer digits than a decimal holds: precision widens, same scale (allowed)
    ("1.5", "123456.5", "n", "decimal(7, 1)"),
    # more fraction digits: a scale change, refused (pyiceberg 0.12 would corrupt reads): a variant
    ("1.5", "1.25", "n__n_d2", "decimal(3, 2)"),
    # beyond decimal(38): exact text, a variant
    ("5", "1E+125", "n__n_text", "string"),
])
def test_numbers_widen_only_as_iceberg_allows_else_a_named_variant(stored: str, new: str, expected_column: str,
                                                                   expected_type: str) -> None:
    first = plan([{"n": {"N": stored}}])
    second = plan([{"n": {"N": new}}, {"n": {"N": stored}}], first)
    assert columns(second)[expected_column][1] == expected_type
    assert columns(second)["n"][0] == columns(first)["n"][0]  # the bare name keeps its field id
    got = {name: values(second, [{"n": {"N": new}}, {"n": {"N": stored}}], name)
           for name in columns(second) if name.startswith("n")}
    # Each value lands in the first column that holds it exactly, and nowhere else.
    assert sum(v is not None for v in got["n"]) + sum(v is not None for k, v in
                                                        ((k, x) for k in got if k != "n" for x in got[k])) == 2
    assert str(got[expected_column][0]) in (new, str(pa.scalar(new).as_py()), "123456.5")


def test_integers_keep_filling_the_bare_column_after_a_variant_appeared() -> None:
    first = plan([{"price": {"N": "5"}}])
    second = plan([{"price": {"N": "9.99"}}, {"price": {"N": "7"}}], first)
    rows = [{"price": {"N": "9.99"}}, {"price": {"N": "7"}}]
    assert values(second, rows, "price") == [None, 7]
    assert [str(v) if v is not None else None for v in values(second, rows, "price__n_d2")] == ["9.99", None]
    third = plan([{"price": {"N": "3"}}], second)  # integers only: no new column, both still fed
    assert columns(third) == columns(second) and not third.added


def test_s_meeting_n_gets_a_descriptor_variant_even_when_s_is_more_frequent() -> None:
    first = plan([{"v": {"N": "1"}}])
    second = plan([{"v": {"S": "a"}}, {"v": {"S": "b"}}, {"v": {"N": "2"}}], first)
    assert columns(second)["v"] == columns(first)["v"] and columns(second)["v__s"][1] == "string"
    assert values(second, [{"v": {"S": "a"}}, {"v": {"N": "2"}}], "v__s") == ["a", None]


def test_an_attribute_only_ever_null_is_adopted_by_its_first_strings() -> None:
    first = plan([{"c": {"NULL": True}}])
    second = plan([{"c": {"S": "now text"}}], first)
    assert columns(second)["c"] == columns(first)["c"] and not second.added
    assert values(second, [{"c": {"S": "now text"}}], "c") == ["now text"]
    third = plan([{"c": {"NULL": True}}], second)  # NULL again: nothing new
    assert not third.added


def test_a_map_stored_as_json_stays_json_and_flattened_maps_grow_columns() -> None:
    first = plan([{"m": {"M": {f"k{i}": {"N": "1"} for i in range(80)}}}, {"r": {"M": {"a": {"S": "x"}}}}])
    assert columns(first)["m"][1] == "string"  # a dictionary map: JSON text
    second = plan([{"m": {"M": {"a": {"S": "x"}}}}, {"r": {"M": {"a": {"S": "y"}, "b": {"N": "2"}}}}], first)
    assert "m__a" not in columns(second) and [c.name for c in second.added] == ["r__b"]
    assert values(second, [{"m": {"M": {"a": {"S": "x"}}}}], "m") == ['{"a":"x"}']


def test_other_options_or_partitioning_are_a_conflict_until_rebuilt() -> None:
    first = plan([{"a": {"S": "x"}, "year": {"N": "2015"}}], partition="year")
    with pytest.raises(SchemaConflict, match="naming=snake.*naming=glue.*--rebuild"):
        plan([{"a": {"S": "x"}}], first, partition="year", naming="glue")
    with pytest.raises(SchemaConflict, match="partitioned by year.*no partitioning"):
        plan([{"a": {"S": "x"}}], first)
    rebuilt = plan_table(profile_of([{"a": {"S": "x"}, "year": {"N": "2015"}}]), SchemaOptions(naming="glue"),
                         PartitionBy.parse("year"), first.schema, rebuild=True)
    assert min(c.field_id for c in rebuilt.columns) > first.schema.last_column_id  # fresh ids
    assert "item.a.s" in columns(rebuilt)


@pytest.mark.parametrize("value, kind", [({"M": {"a": {"S": "x"}}}, "a map"), ({"L": [{"S": "x"}]}, "a list"),
                                         ({"SS": ["x"]}, "a string set"), ({"NS": ["1"]}, "a number set"),
                                         ({"BS": ["AAE="]}, "a binary set"), ({"B": "AAE="}, "binary")])
def test_a_partition_attribute_of_a_type_that_cannot_partition_is_refused(value: dict, kind: str) -> None:
    with pytest.raises(PartitionError, match=f"'meta' is {kind}"):
        plan([{"meta": value}], partition="meta")


def test_an_absent_partition_attribute_is_refused_unless_the_export_is_empty() -> None:
    with pytest.raises(PartitionError, match="'yeer' is in none of the 1 item;"):
        plan([{"year": {"N": "2015"}}], partition="yeer")
    empty = plan_table(Profile(), SchemaOptions(), PartitionBy.parse("year"))
    assert empty.columns == [] and empty.schema.partition_source() is None


@pytest.mark.parametrize("text, parsed", [
    ("year", PartitionBy("year")), ("month(created_at)", PartitionBy("created_at", "month")),
    ("day(ts, epoch_millis)", PartitionBy("ts", "day", unit="epoch_millis")),
    ("bucket(16, customer_id)", PartitionBy("customer_id", "bucket", buckets=16)), ("", None), (None, None)])
def test_partition_settings_parse(text: str | None, parsed: PartitionBy | None) -> None:
    assert PartitionBy.parse(text) == parsed
    if parsed is not None:
        assert PartitionBy.parse(parsed.text) == parsed


@pytest.mark.parametrize("text", ["month(a, weeks)", "bucket(x, a)", "bucket(0, a)", "fortnight(a)", "a,b"])
def test_bad_partition_settings_say_what_is_wrong(text: str) -> None:
    with pytest.raises(PartitionError, match="partition_by"):
        PartitionBy.parse(text)


def test_three_exports_evolve_one_table(tmp_path: Path) -> None:
    """Over real commits: a new attribute; an int meeting a fraction; decimal precision up; a
    decimal scale change sent to a variant; S meeting N. Every name keeps its field id."""
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets_tests.lake_reader import read_rows
    from ddb_assets_tests.test_schema_rules import export_of

    exports = [
        [{"qty": {"N": "5"}, "price": {"N": "1.25"}, "code": {"N": "7"}}],
        [{"qty": {"N": "2.5"}, "price": {"N": "123456.75"}, "code": {"N": "8"}, "note": {"S": "new"}}],
        [{"qty": {"N": "3"}, "price": {"N": "1.125"}, "code": {"S": "X-9"}}],
    ]
    root = tmp_path / "lake" / "t"
    ids: dict[str, int] = {}
    paths = []
    for number, items in enumerate(exports):
        result = convert_export(export_of(tmp_path / f"export{number}", items), root, ConvertOptions(workers=1))
        for column in result.plan.columns:
            assert ids.setdefault(column.name, column.field_id) == column.field_id  # names never change meaning
        paths.append(result.path)
    # Each export after the first is planned from the table's schema and the previous export's
    # profile, and each brings what that plan lacks: read again in two stages, saying why.
    assert paths[0] == "two stages: a new table (no stored schema to plan from)"
    # The reason names the attribute and the column, in Iceberg's type names as the table shows them.
    assert paths[1].startswith("two stages: its items do not fit the planned columns (values of qty (N) do not "
                               "fit column qty (long): ") and "2.5" in paths[1]
    assert paths[2].startswith("two stages: its items ") and paths[2].endswith("; the export was read again")
    assert "decimal128" not in paths[2] and "price" in paths[2]
    meta, rows = read_rows(str(root))
    types = {c["name"]: c["type"] for c in meta["columns"]}
    assert types["qty"] == "long" and types["qty__n_d1"] == "decimal(2, 1)"
    assert types["price"] == "decimal(8, 2)"  # widened from decimal(3, 2), same scale
    assert types["price__n_d3"] == "decimal(4, 3)"  # more scale: a variant, never a scale change
    assert types["code"] == "long" and types["code__s"] == "string" and types["note"] == "string"
    [row] = rows  # the last export replaced the table's rows
    assert row["qty"] == 3 and row["qty__n_d1"] is None
    assert str(row["price__n_d3"]) == "1.125" and row["price"] is None and row["code__s"] == "X-9"
    assert row["note"] is None  # vanished in the last export: kept, null


def test_an_export_shaped_like_the_last_is_converted_in_one_pass(tmp_path: Path) -> None:
    """The usual case: the next export of a table brings no new attribute or type. It is planned
    from the stored schema and the last export's profile and converted in one pass, no work
    folder; attributes it lacks stay columns (null in its rows)."""
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets_tests.lake_reader import read_rows
    from ddb_assets_tests.test_schema_rules import export_of

    root, work = tmp_path / "lake" / "t", tmp_path / "work"
    first = export_of(tmp_path / "e0", [{"qty": {"N": "5"}, "note": {"S": "x"}}], export_id="01715674542517-a4c123b1")
    second = export_of(tmp_path / "e1", [{"qty": {"N": "6"}}, {"qty": {"N": "7"}}], export_id="01715674600000-b5d234c2")
    options = ConvertOptions(workers=1, work_dir=str(work))
    first_id = convert_export(first, root, options).export.export_id
    result = convert_export(second, root, options)
    assert result.path == f"one pass: planned from the table's schema and export {first_id}'s profile"
    assert result.one_pass and result.scratch_bytes == 0 and result.plan.vanished == ["note"]
    assert not any(work.iterdir())
    _, rows = read_rows(str(root))
    assert sorted((r["pk"], r["qty"], r["note"]) for r in rows) == [("k0", 6, None), ("k1", 7, None)]


def test_an_integer_beyond_the_long_column_in_a_one_pass_is_read_again_exactly(tmp_path: Path) -> None:
    """The one pass planned a long column; an item's integer does not fit 64 bits: the export is
    read again in two stages and the value lands exact in a decimal variant (never a crash)."""
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets_tests.lake_reader import read_rows
    from ddb_assets_tests.test_schema_rules import export_of

    root = tmp_path / "lake" / "t"
    options = ConvertOptions(workers=1)
    convert_export(export_of(tmp_path / "e0", [{"qty": {"N": "5"}}], export_id="01715674542517-a4c123b1"), root,
                   options)
    result = convert_export(export_of(tmp_path / "e1", [{"qty": {"N": "6"}}, {"qty": {"N": "1E+30"}}],
                                      export_id="01715674600000-b5d234c2"), root, options)
    assert result.path.startswith("two stages: its items do not fit the planned columns (")
    assert result.path.endswith("; the export was read again")
    meta, rows = read_rows(str(root))
    big = [r for r in rows if r["qty"] is None]
    assert len(big) == 1 and [str(v) for k, v in big[0].items() if k.startswith("qty__")] == ["1000000000000000000000000000000"]
