"""Items nested as deep as DynamoDB allows (32 levels of maps and lists) convert by every path:
two stages (scratch files), one pass from a saved profile, an incremental export merged; both
formats. Read back by pyiceberg, value for value: what lies below a column is its JSON text.
Queried through the CLI (lake table and raw export) and on the raw Iceberg table; deeper than 32
levels is refused, naming the line and attribute."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from ddb_assets.exports.decode import CARRIED_DEPTH, carry_deep_values, parse_items
from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.reader import open_export
from ddb_assets.exports.storage import resolve
from ddb_assets.lake.catalog import CatalogConfig, load_table, open_catalog
from ddb_assets.lake.convert import ConvertOptions, convert_export, profile_export
from ddb_assets.lake.profile import profile_from_json, profile_to_json
from ddb_assets.lake.schema import SchemaOptions
from ddb_assets.local.export_writer import (ExportRequest, FolderSink, IncrementalWindow, write_export,
                                            write_incremental_export)
from ddb_assets.lake.raw_table import NESTED_LEVELS, write_raw_table
from ddb_assets.local.history import Change
from ddb_assets.query.duckdb_engine import DuckDBEngine
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.lake_reader import expected_item, read_rows, rebuild_items

DYNAMODB_MAX_DEPTH = 32  # "DynamoDB supports nested attributes up to 32 levels deep"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:111122223333:table/deep"
EXPORT_TIME = datetime(2024, 5, 14, 8, 0, 0, tzinfo=timezone.utc)
# 38 significant digits (DynamoDB's most) with a fraction: no float holds it, so only exact text keeps it
BOTTOM = "-12345678901234567890123456789.123456789"


def _scalars(level: int) -> dict[str, Any]:
    """Every scalar and set type, different at each level."""
    return {"s": {"S": f"level {level} \u00e9"}, "n": {"N": f"{level}.50"}, "b": {"B": "AAEC/w=="},
            "t": {"BOOL": level % 2 == 0}, "z": {"NULL": True}, "ss": {"SS": ["b", "a", f"{level}"]},
            "ns": {"NS": ["10", "-1.5", f"{level}"]}, "bs": {"BS": ["AQ==", "AA=="]}}


def nested(kinds: str, bottom: str = BOTTOM) -> dict[str, Any]:
    """``len(kinds)`` nested maps (``M``) and lists (``L``), outermost first, with scalars beside
    each level's child and a number of 38 digits at the bottom."""
    value: dict[str, Any] = {"N": bottom}
    for level, kind in reversed(list(enumerate(kinds, start=1))):
        if kind == "M":
            value = {"M": {**_scalars(level), f"child{level}": value}}
        else:
            value = {"L": [{"S": f"first {level}"}, value, {"N": str(level)}]}
    return value


def deep_items() -> list[dict[str, Any]]:
    depth = DYNAMODB_MAX_DEPTH
    return [{"pk": {"S": "deep-maps"}, "deep": nested("M" * depth)},
            {"pk": {"S": "deep-lists"}, "deep": nested("L" * depth)},
            {"pk": {"S": "deep-mixed"}, "deep": nested("ML" * (depth // 2))},
            # Flattened as far as max_depth allows, with lists and deep maps below the columns.
            {"pk": {"S": "deep-wide"}, "deep": {"M": {"top": {"S": "x"}, "inner": nested("M" * (depth - 1))}},
             "other": nested("MMLM" * (depth // 4))}]


def normal_items(count: int = 40) -> list[dict[str, Any]]:
    return [{"pk": {"S": f"item-{i:03d}"}, "n": {"N": str(i)}, "text": {"S": f"text {i}"},
             "deep": {"M": {"top": {"S": f"t{i}"}}}} for i in range(count)]


def _request(export_format: str, export_id: str, window: IncrementalWindow | None = None) -> ExportRequest:
    end = window.export_to_time if window else EXPORT_TIME
    return ExportRequest(export_arn=f"{TABLE_ARN}/export/{export_id}", table_arn=TABLE_ARN, table_id="deep-id",
                         bucket="bucket", prefix="exports", output_format=export_format,
                         start_time=end + timedelta(seconds=1), export_time=end, key_attributes=("pk",),
                         data_files=2, incremental=window)


def full_export(root: Path, export_format: str, items: list[dict[str, Any]]) -> Path:
    request = _request(export_format, "01715673600000-0000full")
    write_export(request, items, FolderSink(root), end_time=lambda: EXPORT_TIME + timedelta(minutes=1))
    return root / request.folder


def incremental_export(root: Path, export_format: str, changes: list[Change]) -> Path:
    window = IncrementalWindow(EXPORT_TIME, EXPORT_TIME + timedelta(minutes=15))
    request = _request(export_format, "01715674500000-00000inc", window)
    write_incremental_export(request, changes, FolderSink(root),
                             end_time=lambda: EXPORT_TIME + timedelta(minutes=16))
    return root / request.folder


def _key(item: dict[str, Any]) -> str:
    return str(item["pk"])  # as read back (and as expected_item gives it): plain text


def assert_table_holds(table: Path, items: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The table, read by pyiceberg, holds exactly ``items`` (returns its columns and rows); and every deep
    number is in its JSON text as the exact text the export gave."""
    meta, rows = read_rows(str(table))
    got = sorted(rebuild_items(meta, rows), key=_key)
    want = sorted((expected_item(item, meta) for item in items), key=_key)
    assert [_key(i) for i in got] == [_key(i) for i in want]
    for mine, theirs in zip(got, want):
        assert mine == theirs, mine["pk"]
    texts = [value for row in rows for value in row.values() if isinstance(value, str) and value[:1] in "{["]
    assert sum(text.count(BOTTOM) for text in texts) == sum(orjson.dumps(i).count(BOTTOM.encode()) for i in items)
    return meta, rows


def _walk(text: str, steps: list[Any]) -> Any:
    """Down a JSON text by keys and indexes, read by hand (numbers as Decimal)."""
    value = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    for step in steps:
        value = value[step]
    return value


def _row(rows: list[dict[str, Any]], pk: str) -> dict[str, Any]:
    [row] = [row for row in rows if row["pk"] == pk]
    return row


@pytest.mark.parametrize("export_format", ["DYNAMODB_JSON", "ION"])
@pytest.mark.parametrize("max_depth", [3, 16])
def test_items_32_levels_deep_convert_by_every_path(tmp_path: Path, export_format: str, max_depth: int) -> None:
    depth = DYNAMODB_MAX_DEPTH
    items = normal_items() + deep_items()
    folder = full_export(tmp_path / "bucket", export_format, items)
    options = ConvertOptions(workers=1, max_depth=max_depth, work_dir=str(tmp_path / "scratch"))
    # The deepest map column (the max_depth rule) holds the rest of the 32 levels as JSON text.
    deepest = "deep__" + "__".join(f"child{level}" for level in range(1, max_depth))
    below = [f"child{level}" for level in range(max_depth, depth + 1)]

    # Two stages: every parsed piece goes through an Arrow IPC scratch file.
    two = convert_export(folder, tmp_path / "lake" / "two", options)
    assert two.scratch_bytes > 0 and not two.one_pass
    meta, rows = assert_table_holds(tmp_path / "lake" / "two", items)
    assert _walk(_row(rows, "deep-maps")[deepest], below) == Decimal(BOTTOM)
    assert _walk(_row(rows, "deep-lists")["deep__l"], [1] * depth) == Decimal(BOTTOM)
    assert max(len(c["path"]) for c in meta["columns"]) == max_depth

    # One pass, planned from the saved profile (inspect --save-profile, then convert --profile).
    export, profile = profile_export(folder, options)
    _, saved = profile_from_json(profile_to_json(profile, export.export_id), obj="saved")
    one = convert_export(folder, tmp_path / "lake" / "one", options, known=saved)
    assert one.one_pass and one.scratch_bytes == 0
    assert assert_table_holds(tmp_path / "lake" / "one", items)[0]["columns"] == meta["columns"]

    # An incremental export merged into the two-stage table: deep items replaced, added, deleted.
    by_key = {item["pk"]["S"]: item for item in items}
    at = EXPORT_TIME.timestamp()
    final = dict(by_key)
    final["deep-maps"] = {"pk": {"S": "deep-maps"}, "deep": nested("M" * depth, bottom="-1E-130")}
    final["deep-added"] = {"pk": {"S": "deep-added"}, "deep": nested("LM" * (depth // 2)), "n": {"N": "7"}}
    final["item-000"] = {**by_key["item-000"], "deep": nested("M" * depth)}
    del final["deep-lists"]
    changes = [Change("deep-maps", by_key["deep-maps"], final["deep-maps"], at + 10),
               Change("deep-added", None, final["deep-added"], at + 20),
               Change("deep-lists", by_key["deep-lists"], None, at + 30),
               Change("item-000", by_key["item-000"], final["item-000"], at + 40)]
    merged = convert_export(incremental_export(tmp_path / "bucket", export_format, changes),
                            tmp_path / "lake" / "two", replace(options, history=True))
    assert merged.merge is not None and (merged.merge.upserts, merged.merge.deletes) == (3, 1)
    _, rows = assert_table_holds(tmp_path / "lake" / "two", list(final.values()))
    assert _walk(_row(rows, "deep-maps")[deepest], below) == Decimal("-1E-130")
    assert _walk(_row(rows, "item-000")[deepest], below) == Decimal(BOTTOM)
    # The change history (history: true) holds both images, whole.
    assert merged.history_error is None and merged.history is not None
    history = {row["pk"]: row for row in merged.history.table.scan().to_arrow().to_pylist()}
    assert _walk(history["deep-maps"]["new_" + deepest], below) == Decimal("-1E-130")
    assert _walk(history["deep-maps"]["old_" + deepest], below) == Decimal(BOTTOM)
    assert _walk(history["deep-lists"]["old_deep__l"], [1] * depth) == Decimal(BOTTOM)


def test_deep_values_are_carried_as_text_below_the_deepest_column() -> None:
    """Parsed items keep their structure down to the deepest column max_depth allows, and carry
    what lies below as its JSON text: shallow enough for Arrow IPC (64 levels) at any DynamoDB
    depth, and the same text the lake writes."""
    assert SchemaOptions(max_depth=CARRIED_DEPTH - 1).max_depth == CARRIED_DEPTH - 1
    with pytest.raises(ValueError, match="max_depth"):
        SchemaOptions(max_depth=CARRIED_DEPTH)
    lines = b"".join(orjson.dumps({"Item": item}) + b"\n" for item in normal_items(3) + deep_items())
    item = parse_items(lines, output_format="DYNAMODB_JSON", obj="mem")[0].column("Item").combine_chunks()
    with pytest.raises(pa.ArrowInvalid, match="recursion depth"):
        _ipc_round_trip(item)  # what the scratch files refused
    carried = carry_deep_values(item)
    assert _ipc_round_trip(carried).equals(carried)
    assert carried.field("pk").equals(item.field("pk"))
    shallow = parse_items(orjson.dumps({"Item": normal_items(1)[0]}), output_format="DYNAMODB_JSON",
                          obj="mem")[0].column("Item").combine_chunks()
    assert carry_deep_values(shallow) is shallow  # nothing that deep: not even copied


def _ipc_round_trip(item: pa.StructArray) -> pa.StructArray:
    sink = io.BytesIO()
    table = pa.table({"Item": item})
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return pa.ipc.open_file(pa.BufferReader(sink.getvalue())).read_all().column("Item").combine_chunks()


def test_a_dictionary_map_below_a_json_column_keeps_its_value(tmp_path: Path) -> None:
    """A dictionary map (carried as text from the parse) inside a map stored as JSON text is part
    of that text, not null."""
    items = [{"pk": {"S": f"p{i}"}, "a": {"M": {"b": {"M": {f"k{i}{j}": {"N": f"{j}.0"} for j in range(5)}},
                                               "c": {"S": "x"}}}} for i in range(4)]
    folder = full_export(tmp_path / "bucket", "DYNAMODB_JSON", items)
    convert_export(folder, tmp_path / "lake" / "t", ConvertOptions(workers=1, max_depth=1, dictionary_keys=2))
    meta, rows = read_rows(str(tmp_path / "lake" / "t"))
    assert {c["name"]: c["encoding"] for c in meta["columns"]} == {"pk": "scalar", "a": "json"}
    assert sorted(rebuild_items(meta, rows), key=_key) == sorted((expected_item(i, meta) for i in items), key=_key)


def _json_rows(completed: Any) -> list[dict[str, Any]]:
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]


def test_cli_inspect_convert_and_query_reach_the_innermost_value(tmp_path: Path) -> None:
    """inspect --save-profile, convert --profile (one pass), then query: the lake table's deepest
    column and the raw export (--raw) give the innermost values exactly, in SQL too."""
    depth = DYNAMODB_MAX_DEPTH
    folder = full_export(tmp_path / "bucket", "DYNAMODB_JSON", normal_items(5) + deep_items())
    profile, lake = tmp_path / "profile.json", tmp_path / "lake"
    inspected = run_cli("inspect", str(folder), "--workers", "1", "--save-profile", str(profile))
    assert inspected.returncode == 0, inspected.stderr
    assert "deep.child1.child2" in inspected.stdout
    converted = run_cli("convert", str(folder), str(lake / "deep"), "--profile", str(profile), "--workers", "1")
    assert converted.returncode == 0, converted.stderr

    # --max-depth 3 (the default): deep__child1__child2 holds child3 ... child32 as JSON text.
    innermost = ".".join(f"child{level}" for level in range(3, depth))
    [row] = _json_rows(run_cli(
        "query", f"SELECT deep__child1__child2 AS rest, json_extract_string(deep__child1__child2, "
                 f"'$.{innermost}.s') AS s FROM deep WHERE pk = 'deep-maps'", "--lake", str(lake),
        "--format", "json"))
    assert row["s"] == f"level {depth} \u00e9"
    assert _walk(row["rest"], [f"child{level}" for level in range(3, depth + 1)]) == Decimal(BOTTOM)

    # The raw export: structs down to NESTED_LEVELS, the rest as DynamoDB JSON text.
    struct_path = ".".join(["item.deep.m"] + [f"child{level}.m" for level in range(1, NESTED_LEVELS + 1)])
    [raw] = _json_rows(run_cli(
        "query", f"SELECT {struct_path} AS rest FROM data WHERE item.pk.s = 'deep-maps'",
        "--raw", f"data={folder}", "--lake", str(lake), "--format", "json"))
    steps = [step for level in range(NESTED_LEVELS + 1, depth + 1) for step in (f"child{level}", "M")][:-1]
    assert _walk(raw["rest"], steps) == {"N": BOTTOM}


@pytest.mark.parametrize("export_format", ["DYNAMODB_JSON", "ION"])
def test_raw_iceberg_table_holds_every_level(tmp_path: Path, export_format: str) -> None:
    """The raw table (the crawler's shape, as the walkthrough's default.data) is created, loaded
    and queried: structs down to NESTED_LEVELS, then each map or list as its DynamoDB JSON text,
    whole (every tag, set and number text as exported)."""
    depth = DYNAMODB_MAX_DEPTH
    items = normal_items(3) + deep_items()
    export = open_export(str(full_export(tmp_path / "bucket", export_format, items)))
    lake = tmp_path / "lake"
    lake.mkdir()
    catalog = open_catalog(CatalogConfig(), resolve(str(lake)))
    write_raw_table(catalog, ("default", "data"), str(lake / "default" / "data"), export)
    table = load_table(catalog, "default", "data")
    assert table is not None and table.scan().to_arrow().num_rows == len(items)

    engine = DuckDBEngine()
    engine.register_catalog(catalog, "default")
    maps = ".".join(["item.deep.m"] + [f"child{level}.m" for level in range(1, NESTED_LEVELS + 1)])
    lists = "item.deep.l" + "[2].l" * NESTED_LEVELS  # DuckDB lists count from 1
    want = nested("M" * depth)
    for level in range(1, NESTED_LEVELS + 1):
        want = want["M"][f"child{level}"]
    rest = json.loads(_one(engine, f"SELECT {maps} FROM data WHERE item.pk.s = 'deep-maps'"))
    assert _by_value(rest) == _by_value(want["M"])  # Ion exports write 17.50 as 17.5
    rest = _one(engine, f"SELECT {lists} FROM data WHERE item.pk.s = 'deep-lists'")
    assert _walk(rest, [1, "L"] * (depth - NESTED_LEVELS - 1) + [1]) == {"N": BOTTOM}


def _by_value(value: Any) -> Any:
    """DynamoDB JSON with numbers as Decimal and sets sorted: equal when DynamoDB holds the same."""
    if isinstance(value, list):
        return [_by_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"N"}:
        return {"N": Decimal(value["N"])}
    if set(value) & {"SS", "NS", "BS"}:
        [(kind, values)] = value.items()
        return {kind: sorted(Decimal(v) for v in values) if kind == "NS" else sorted(values)}
    return {name: _by_value(v) for name, v in value.items()}


def _one(engine: DuckDBEngine, sql: str) -> Any:
    [[value]] = [list(row.values()) for row in engine.query(sql).table.to_pylist()]
    return value


@pytest.mark.parametrize("kinds, path", [("M" * (DYNAMODB_MAX_DEPTH + 1), "deep" + "".join(
    f".child{level}" for level in range(1, DYNAMODB_MAX_DEPTH + 1))),
                                         ("L" * (DYNAMODB_MAX_DEPTH + 1), "deep" + "[]" * DYNAMODB_MAX_DEPTH)])
@pytest.mark.parametrize("export_format", ["DYNAMODB_JSON", "ION"])
def test_deeper_than_dynamodb_allows_is_refused(tmp_path: Path, kinds: str, path: str, export_format: str) -> None:
    """33 levels is no DynamoDB item: one error naming the file, the line and the attribute, and
    nothing committed."""
    items = normal_items(3) + [{"pk": {"S": "too-deep"}, "deep": nested(kinds)}]
    folder = full_export(tmp_path / "bucket", export_format, items)
    with pytest.raises(ExportFormatError) as raised:
        convert_export(folder, tmp_path / "lake" / "t", ConvertOptions(workers=1, work_dir=str(tmp_path / "s")))
    message = str(raised.value)
    line = next(number for name in sorted((folder / "data").iterdir()) for number, text in enumerate(
        _lines(name), start=1) if "too-deep" in text)
    assert f".gz:{line}: attribute {path!r}: maps and lists nest deeper than DynamoDB's 32 levels" in message
    catalog = open_catalog(CatalogConfig(), resolve(str(tmp_path / "lake")))
    assert load_table(catalog, CatalogConfig().namespace, "t") is None


def _lines(data_file: Path) -> list[str]:
    import gzip

    return gzip.decompress(data_file.read_bytes()).decode("utf-8").splitlines()


def test_shard_tasks_carry_deep_items_through_their_json(tmp_path: Path) -> None:
    """A shard task (what the spark runner runs) reads, profiles and writes deep items; its spec
    and result pass through JSON, and its Parquet files hold the innermost value."""
    import dataclasses

    import pyarrow.parquet as pq

    from ddb_assets.lake.convert import lake_target
    from ddb_assets.lake.evolution import plan_table
    from ddb_assets.lake.shards.driver import shard_specs
    from ddb_assets.lake.shards.options import RunnerOptions
    from ddb_assets.lake.shards.spec import ShardResult, ShardSpec
    from ddb_assets.lake.shards.worker import run_shard
    from ddb_assets.lake.writer import FileTarget

    depth = DYNAMODB_MAX_DEPTH
    folder = full_export(tmp_path / "bucket", "DYNAMODB_JSON", normal_items(5) + deep_items())
    options = ConvertOptions(workers=1, runner=RunnerOptions(shards=2))
    export, profile = profile_export(folder, options)
    plan = plan_table(profile, options.schema_options)
    data = lake_target(tmp_path / "lake" / "t", options).location.join("data").uri
    results = [ShardResult.from_json(run_shard(ShardSpec.from_json(dataclasses.replace(
        spec, schema=plan.schema, active=plan.active, target=FileTarget(data, "run1")).to_json(), obj="spec")).to_json(),
        obj="result") for spec in shard_specs(export, options, "run1")]
    assert all(r.error is None for r in results) and sum(r.profile.items for r in results) == profile.items
    rows = [row for r in results for w in r.written for row in pq.read_table(w.path).to_pylist()]
    [deep] = [row for row in rows if row["pk"] == "deep-maps"]
    assert _walk(deep["deep__child1__child2"], [f"child{level}" for level in range(3, depth + 1)]) == Decimal(BOTTOM)
