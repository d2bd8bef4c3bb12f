"""Random items through the decoder, the profiler, the planner and the flattener, in memory: the
same round trip as test_convert_roundtrip's, without the local world, disk or processes (the fast
tier: `make test-fast`)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ddb_assets.exports.decode import detect_dictionary_maps, parse_items
from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.lake.evolution import plan_table
from ddb_assets.lake.flatten import flatten_items
from ddb_assets.lake.profile import profile_items
from ddb_assets.lake.schema import SchemaOptions
from ddb_assets_tests.lake_reader import expected_item, rebuild_items
from ddb_assets_tests.strategies import item_batches

pytestmark = pytest.mark.fast


def _lines(batch: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps({"Item": item}) + b"\n" for item in batch)


def _flat(batch: list[dict[str, Any]], options: SchemaOptions) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the planned columns as lake_reader describes a table, the flat rows) of ``batch``."""
    raw = _lines(batch)
    table, _ = parse_items(raw, output_format="DYNAMODB_JSON", obj="mem.json",
                           dictionary_maps=detect_dictionary_maps(raw, options.dictionary_keys))
    item = table.column("Item").combine_chunks()
    plan = plan_table(profile_items(item, 0), options)
    flat = flatten_items(item, plan)
    assert flat.schema.names == [c.name for c in plan.columns]
    columns = [{"name": c.name, "path": list(c.path), "descriptor": c.descriptor, "encoding": c.encoding,
                "element": c.element} for c in plan.columns]
    return {"columns": columns}, flat.to_pylist()


def _key(item: dict[str, Any]) -> str:
    return repr(item.get("pk"))


@settings(deadline=None)
@given(batch=item_batches(), naming=st.sampled_from(["snake", "glue"]), max_depth=st.integers(1, 3))
@example(batch=[{"pk": {"S": "item-0"}, "sk": {"N": "1"}, "a": {"N": "1.0000000000000000000000000001"}}],
         naming="snake", max_depth=2)
def test_random_items_flatten_and_read_back_exactly(batch: list[dict[str, Any]], naming: str, max_depth: int) -> None:
    meta, rows = _flat(batch, SchemaOptions(naming=naming, max_depth=max_depth, dictionary_keys=4))
    assert len(rows) == len(batch)
    got = sorted(rebuild_items(meta, rows), key=_key)
    want = sorted((expected_item(item, meta) for item in batch), key=_key)
    assert got == want


@settings(deadline=None)
@given(batch=item_batches())
def test_column_names_are_unique_and_stable_across_namings(batch: list[dict[str, Any]]) -> None:
    for naming in ("snake", "glue"):
        meta, _ = _flat(batch, SchemaOptions(naming=naming))
        names = [c["name"] for c in meta["columns"]]
        assert len(set(names)) == len(names)
        if naming == "snake":
            assert all(name == name.lower() for name in names)


@pytest.mark.parametrize("line, problem", [
    (b'{"Item":{"pk":{"N":"12x"}}}', "must hold a number"),
    (b'{"Item":{"pk":{"B":"!!"}}}', "base64"),
    (b'{"Item":{"pk":{"Q":"1"}}}', "descriptor"),
    (b'{"Item":{"pk":{"S":"a"}', "malformed json"),
])
def test_a_bad_value_is_refused_with_its_line(line: bytes, problem: str) -> None:
    raw = _lines([{"pk": {"S": "fine"}}]) + line + b"\n"
    with pytest.raises(ExportFormatError) as caught:
        table, _ = parse_items(raw, output_format="DYNAMODB_JSON", obj="mem.json")
        item = table.column("Item").combine_chunks()
        flatten_items(item, plan_table(profile_items(item, 0), SchemaOptions()))
    text = str(caught.value).lower()
    assert text.startswith("mem.json:2: ") and problem in text, text  # the object and the line


def test_binary_values_come_back_as_their_bytes() -> None:
    data = bytes(range(256))
    meta, rows = _flat([{"pk": {"S": "k"}, "blob": {"B": base64.b64encode(data).decode()}}], SchemaOptions())
    [column] = [c for c in meta["columns"] if c["path"] == ["blob"]]
    assert rows[0][column["name"]] == data
