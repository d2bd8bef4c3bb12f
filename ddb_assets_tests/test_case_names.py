"""Attribute names that differ only in case (Name/name, URL/Url) never merge, in any path users query.

The lake table gives each its own column in both namings (snake and glue lowercase every name, so
the second gets a suffix), through DuckDB (whose names ignore case) and across exports. The raw
export table (one struct column, whose DuckDB fields ignore case) refuses them, naming both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_assets.exports.reader import open_export
from ddb_assets.exports.storage import resolve
from ddb_assets.lake.catalog import CatalogConfig, load_table, open_catalog
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.query.duckdb_engine import DuckDBEngine, NameCollision, case_collisions, duckdb_folded
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.lake_reader import read_table_metadata
from ddb_assets_tests.test_schema_rules import export_of

# (case, items): every pair of names here differs only in ASCII case.
CASES = [
    ("top level", [{"Name": {"S": "upper"}, "name": {"S": "lower"}}, {"Name": {"S": "only upper"}}]),
    ("acronyms", [{"URL": {"S": "u1"}, "Url": {"S": "u2"}, "url": {"S": "u3"}}]),
    ("in a map", [{"m": {"M": {"A": {"S": "big"}, "a": {"S": "small"}}}}]),
    ("map and attribute", [{"Meta": {"M": {"k": {"S": "in map"}}}, "meta": {"S": "plain"}}]),
    ("second export brings the other case", [{"name": {"S": "first"}}]),
]


def _lake(tmp: Path, items: list[dict[str, Any]], naming: str, name: str = "t") -> tuple[Path, Any]:
    root = tmp / "lake"
    convert_export(export_of(tmp / f"export-{name}-{len(list(tmp.iterdir()))}", items), root / name,
                   ConvertOptions(workers=1, naming=naming))
    return root, load_table(open_catalog(CatalogConfig(), resolve(root)), "ddb_lake", name)


def _leaves(item: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Attribute path -> string value, through maps."""
    out: dict[tuple[str, ...], str] = {}
    for name, value in item.items():
        if "M" in value:
            out.update(_leaves(value["M"], prefix + (name,)))
        elif "S" in value:
            out[prefix + (name,)] = value["S"]
    return out


def _check_distinct_columns(root: Path, table: Any, items: list[dict[str, Any]]) -> None:
    meta = read_table_metadata(str(root / "t"))
    columns = {tuple(c["path"]): c["name"] for c in meta["columns"] if c["descriptor"] == "S"}
    names = [c["name"] for c in meta["columns"]]
    assert len({duckdb_folded(n) for n in names}) == len(names), names  # distinct even to DuckDB
    engine = DuckDBEngine()
    try:
        engine.register_table("t", table)
        for path, column in columns.items():
            rows = engine.query(f'SELECT "{columns[("pk",)]}" AS pk, "{column}" AS v FROM t').table.to_pylist()
            got = {row["pk"]: row["v"] for row in rows}
            expected = {f"k{i}": _leaves({"pk": {"S": f"k{i}"}, **item}).get(path) for i, item in enumerate(items)}
            assert got == expected, (path, column)
    finally:
        engine.close()
    wanted = {path for item in items for path in _leaves(item)}
    assert wanted <= set(columns), (wanted, columns)


@pytest.mark.parametrize("naming", ["snake", "glue"])
@pytest.mark.parametrize("case, items", CASES, ids=[c[0] for c in CASES])
def test_each_attribute_keeps_a_column_of_its_own(tmp_path: Path, naming: str, case: str,
                                                  items: list[dict[str, Any]]) -> None:
    root, table = _lake(tmp_path, items, naming)
    if case == "second export brings the other case":
        items = items + [{"Name": {"S": "second"}}]
        root, table = _lake(tmp_path, items, naming)
        assert [c["name"] for c in read_table_metadata(str(root / "t"))["columns"]][-2:] == \
            (["name", "name_2"] if naming == "snake" else ["item.name.s", "item.name.s_2"])
    _check_distinct_columns(root, table, items)


_names = st.sampled_from(["Name", "name", "NAME", "url", "URL", "Url", "a", "A"])
_item = st.dictionaries(_names, st.one_of(st.text(max_size=4).map(lambda s: {"S": s}),
                                          st.dictionaries(_names, st.text(max_size=3).map(lambda s: {"S": s}),
                                                          min_size=1, max_size=3).map(lambda m: {"M": m})),
                        min_size=1, max_size=5)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(_item, min_size=1, max_size=4), naming=st.sampled_from(["snake", "glue"]))
def test_any_mix_of_cases_reads_back_per_attribute(tmp_path_factory: pytest.TempPathFactory,
                                                   items: list[dict[str, Any]], naming: str) -> None:
    # A map and a string under names of one spelling make a variant column: keep each path one type.
    kinds: dict[str, str] = {}
    items = [{k: v for k, v in item.items() if kinds.setdefault(k, next(iter(v))) == next(iter(v))}
             for item in items]
    tmp = tmp_path_factory.mktemp("cases")
    root, table = _lake(tmp, items, naming)
    _check_distinct_columns(root, table, items)


# -- the raw export table ----------------------------------------------------------------------------

COLLISIONS = [
    ("top level", pa.struct([("Name", pa.string()), ("name", pa.string())]), [("item.Name", "item.name")]),
    ("three spellings", pa.struct([("URL", pa.string()), ("Url", pa.string()), ("url", pa.string())]),
     [("item.URL", "item.Url"), ("item.URL", "item.url")]),
    ("nested", pa.struct([("m", pa.struct([("M", pa.struct([("A", pa.int64()), ("a", pa.int64())]))]))]),
     [("item.m.M.A", "item.m.M.a")]),
    ("in a list", pa.struct([("L", pa.list_(pa.struct([("X", pa.int64()), ("x", pa.int64())])))]),
     [("item.L[].X", "item.L[].x")]),
    ("in a map", pa.struct([("m", pa.map_(pa.string(), pa.struct([("K", pa.int64()), ("k", pa.int64())])))]),
     [("item.m[].K", "item.m[].k")]),
    ("non-ASCII letters stay distinct in DuckDB", pa.struct([("É", pa.string()), ("é", pa.string())]), []),
    ("no collision", pa.struct([("name", pa.string()), ("name_2", pa.string())]), []),
]


@pytest.mark.fast
@pytest.mark.parametrize("case, kind, expected", COLLISIONS, ids=[c[0] for c in COLLISIONS])
def test_case_collisions_are_found_at_any_depth(case: str, kind: pa.DataType, expected: list) -> None:
    assert case_collisions(kind, "item") == expected


@pytest.mark.fast
def test_duckdb_really_merges_what_case_collisions_reports() -> None:
    # The premise: DuckDB's struct fields ignore ASCII case only.
    engine = DuckDBEngine()
    engine.connection.register("s", pa.table({"item": pa.array([{"Name": 1, "name": 2, "É": 3, "é": 4}])}))
    assert engine.query("SELECT item.name AS a, item.Name AS b, item.é AS c, item.É AS d FROM s").table.to_pylist() \
        == [{"a": 1, "b": 1, "c": 4, "d": 3}]


def test_the_raw_export_refuses_case_collisions_naming_both(tmp_path: Path) -> None:
    folder = export_of(tmp_path / "export", [{"Name": {"S": "a"}, "name": {"S": "b"},
                                              "m": {"M": {"A": {"N": "1"}, "a": {"N": "2"}}}}])
    engine = DuckDBEngine()
    with pytest.raises(NameCollision) as caught:
        engine.register_raw_export("r", open_export(folder))
    assert "item.Name and item.name; item.m.m.A and item.m.m.a" in str(caught.value)

    convert_export(folder, tmp_path / "lake" / "t", ConvertOptions(workers=1))  # the lake table takes them
    result = run_cli("query", "SELECT 1", "--lake", str(tmp_path / "lake"), "--catalog", "sql",
                     "--raw", f"r={folder}")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: --raw r: the export's items have attributes whose names differ only in case (item.Name and "
        "item.name; item.m.m.A and item.m.m.a), which DuckDB's struct fields do not tell apart; query the "
        "converted lake table, where each is a column of its own\n")


def test_a_raw_export_cannot_take_a_lake_tables_name_in_another_case(tmp_path: Path) -> None:
    folder = export_of(tmp_path / "export", [{"x": {"S": "a"}}])
    convert_export(folder, tmp_path / "lake" / "reviews", ConvertOptions(workers=1))
    result = run_cli("query", "SELECT count(*) FROM reviews", "--lake", str(tmp_path / "lake"), "--raw",
                     f"Reviews={folder}")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("error: --raw Reviews: 'Reviews' names the lake table 'reviews' already (DuckDB names "
                             "ignore case): give the raw export another name\n")
