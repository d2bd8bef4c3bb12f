"""The schema rules of docs/schema_rules.md, one behaviour at a time, on real exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.local.export_writer import ExportRequest, FolderSink, write_export
from ddb_assets_tests.lake_reader import read_rows
from datetime import datetime, timezone

# Pure: in-memory Arrow and local files, no local world or subprocess (make test-fast).
pytestmark = pytest.mark.fast


def export_of(tmp: Path, items: list[dict[str, Any]], files: int = 2, at: datetime | None = None,
              export_id: str = "01715674542517-a4c123b1") -> Path:
    """A full export of table ``t`` holding ``items``; exports made at other times (``at``, now by
    default) are other exports, even under the same ``export_id``."""
    now = at or datetime.now(timezone.utc)
    request = ExportRequest(export_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/t/export/{export_id}",
                            table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t", table_id="x", bucket="b",
                            prefix="p", output_format="DYNAMODB_JSON", start_time=now, export_time=now,
                            key_attributes=("pk",), data_files=files)
    write_export(request, ({"pk": {"S": f"k{i}"}, **item} for i, item in enumerate(items)), FolderSink(tmp))
    return tmp / request.folder


def convert(tmp: Path, items: list[dict[str, Any]], **options: Any) -> tuple[dict, pa.Schema, list[dict]]:
    """Convert items; (table metadata + this run's variants, files and partitions, a data file's
    Arrow schema, rows as pyiceberg reads them)."""
    root = tmp / "lake"
    result = convert_export(export_of(tmp / "export", items), root, ConvertOptions(workers=1, **options))
    meta, rows = read_rows(str(root))
    files = [task.file.file_path for task in meta["table"].scan().plan_files()]
    meta.update(variants=result.plan.variants, files=files, partitions=result.partitions)
    return meta, pq.read_schema(files[0]), rows


def test_numbers_get_the_narrowest_exact_type(tmp_path: Path) -> None:
    items = [{"i": {"N": "9007199254740993"}, "d": {"N": "0.1"}, "big": {"N": "12345678901234567890123456789.123456789"},
              "huge": {"N": "1E+125"}}, {"i": {"N": "-5"}, "d": {"N": "123.45"}, "big": {"N": "1"}, "huge": {"N": "2"}}]
    meta, schema, rows = convert(tmp_path, items, partition_by=None)
    assert schema.field("i").type == pa.int64()
    assert schema.field("d").type == pa.decimal128(5, 2)
    assert schema.field("big").type == pa.decimal128(38, 9)
    assert schema.field("huge").type == pa.string()  # no decimal128 holds 1E+125: kept as exact text
    by_key = {r["pk"]: r for r in rows}
    assert by_key["k0"]["i"] == 9007199254740993  # > 2^53: a float would have rounded it
    assert str(by_key["k0"]["big"]) == "12345678901234567890123456789.123456789"
    assert by_key["k0"]["huge"] == "1E+125"


def test_maps_flatten_to_double_underscore_columns_up_to_max_depth(tmp_path: Path) -> None:
    items = [{"reviewer": {"M": {"name": {"S": "Ana"}, "location": {"M": {"city": {"S": "Porto"},
                                                                          "geo": {"M": {"lat": {"N": "41.1"}}}}}}}}]
    meta, schema, rows = convert(tmp_path, items, partition_by=None, max_depth=3)
    assert {"reviewer__name", "reviewer__location__city", "reviewer__location__geo"} <= set(schema.names)
    assert schema.field("reviewer__location__geo").type == pa.string()  # the 4th level stays JSON
    assert json.loads(rows[0]["reviewer__location__geo"]) == {"lat": 41.1}


def test_a_map_used_as_a_dictionary_stays_one_column(tmp_path: Path) -> None:
    items = [{"votes": {"M": {f"day{i * 10 + j}": {"N": str(j)} for j in range(10)}}} for i in range(20)]
    meta, schema, rows = convert(tmp_path, items, partition_by=None, dictionary_keys=64)
    assert [n for n in schema.names if n.startswith("votes")] == ["votes"]
    assert json.loads(next(r for r in rows if r["pk"] == "k3")["votes"])["day31"] == 1


def test_lists_are_typed_when_homogeneous_and_json_otherwise(tmp_path: Path) -> None:
    items = [{"tags": {"L": [{"S": "a"}, {"S": "b"}]}, "mixed": {"L": [{"N": "1"}, {"S": "x"}, {"M": {}}]},
              "empty": {"L": []}, "nums": {"L": [{"N": "1.5"}]}},
             {"tags": {"L": []}, "mixed": {"L": []}, "nums": {"L": [{"N": "2"}]}}]
    meta, schema, rows = convert(tmp_path, items, partition_by=None)
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("nums").type == pa.list_(pa.decimal128(2, 1))
    assert schema.field("mixed").type == pa.string()
    assert schema.field("empty").type == pa.list_(pa.string())  # never an unwritable list<null>
    row = next(r for r in rows if r["pk"] == "k0")
    assert row["tags"] == ["a", "b"] and row["empty"] == [] and json.loads(row["mixed"]) == [1, "x", {}]


def test_empty_maps_never_make_an_empty_struct(tmp_path: Path) -> None:
    meta, schema, rows = convert(tmp_path, [{"m": {"M": {}}}, {"m": {"M": {}}}], partition_by=None)
    assert schema.field("m").type == pa.string() and {r["m"] for r in rows} == {"{}"}


def test_mixed_types_get_variant_columns_reported_with_counts(tmp_path: Path) -> None:
    items = [{"price": {"N": "9.99"}}, {"price": {"N": "5"}}, {"price": {"S": "N/A"}}]
    meta, schema, rows = convert(tmp_path, items, partition_by=None)
    assert schema.field("price").type == pa.decimal128(3, 2) and schema.field("price__s").type == pa.string()
    assert meta["variants"] == {"price": {"N": 2, "S": 1}}
    assert sorted(str(r["price"]) for r in rows if r["price"] is not None) == ["5.00", "9.99"]


def test_sets_binaries_and_nulls(tmp_path: Path) -> None:
    items = [{"ss": {"SS": ["b", "a"]}, "ns": {"NS": ["3", "1"]}, "bs": {"BS": ["aGk="]}, "b": {"B": "AAE="},
              "n": {"NULL": True}, "t": {"BOOL": True}}]
    meta, schema, rows = convert(tmp_path, items, partition_by=None)
    assert schema.field("ss").type == pa.list_(pa.string()) and schema.field("ns").type == pa.list_(pa.int64())
    assert schema.field("bs").type == pa.list_(pa.binary()) and schema.field("b").type == pa.binary()
    assert schema.field("t").type == pa.bool_()
    [row] = rows
    assert sorted(row["ss"]) == ["a", "b"] and sorted(row["ns"]) == [1, 3]
    assert row["bs"] == [b"hi"] and row["b"] == b"\x00\x01" and row["n"] is None and row["t"] is True


def test_names_are_glue_safe_and_collision_free_with_a_recorded_mapping(tmp_path: Path) -> None:
    items = [{"Review Text": {"S": "a"}, "review_text": {"S": "b"}, "helpful-votes": {"N": "1"}, "9lives": {"S": "c"},
              "✓": {"S": "d"}}]
    meta, schema, rows = convert(tmp_path, items, partition_by=None)
    import re
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in schema.names)
    assert len(set(schema.names)) == len(schema.names)
    mapping = {".".join(c["path"]): c["name"] for c in meta["columns"]}
    assert mapping["helpful-votes"] == "helpful_votes" and mapping["9lives"] == "_9lives"
    assert {mapping["Review Text"], mapping["review_text"]} == {"review_text", "review_text_2"}
    row = rows[0]
    assert {row[mapping["Review Text"]], row[mapping["review_text"]]} == {"a", "b"}


def test_glue_naming_reproduces_relationalize_names(tmp_path: Path) -> None:
    items = [{"product_title": {"S": "Dune"}, "year": {"N": "2015"}, "reviewer": {"M": {"name": {"S": "Ana"}}},
              "Tags": {"SS": ["x"]}}]
    meta, schema, rows = convert(tmp_path, items, naming="glue", partition_by="year")
    assert {"item.product_title.s", "item.reviewer.m.name.s", "item.tags.ss", "item.pk.s", "item.year.n"} <= \
        set(schema.names)
    assert meta["partition_spec"] == [("item.year.n", "identity")]
    assert "/data/item.year.n=2015/" in meta["files"][0]


def test_items_without_the_partition_attribute_go_to_the_null_partition(tmp_path: Path) -> None:
    items = [{"year": {"N": "2015"}}, {"other": {"S": "x"}}, {"year": {"NULL": True}}]
    meta, schema, rows = convert(tmp_path, items, partition_by="year")
    assert set(meta["partitions"]) == {"2015", "__HIVE_DEFAULT_PARTITION__"}
    assert sorted(f.split("/data/")[1].split("/")[0] for f in meta["files"]) == ["year=2015", "year=null"]
    assert sorted((r["year"] is None) for r in rows) == [False, True, True]
    assert schema.field("year").type == pa.int64()  # Iceberg keeps the partition source in the files


@pytest.mark.parametrize("value,folder", [("a/b", "a%2Fb"), ("x=y", "x%3Dy"), ("100%", "100%25")])
def test_partition_values_are_escaped_in_paths(tmp_path: Path, value: str, folder: str) -> None:
    meta, schema, rows = convert(tmp_path, [{"cat": {"S": value}}], partition_by="cat")
    assert f"/data/cat={folder}/" in meta["files"][0] and set(meta["partitions"]) == {value}
    assert rows[0]["cat"] == value


def test_ion_exports_convert_like_json_ones(tmp_path: Path) -> None:
    from ddb_assets_tests import doctor

    tables = {}
    for export_format in ("DYNAMODB_JSON", "ION"):
        folder = doctor.make_export(tmp_path / export_format, items=1500, seed=8, export_format=export_format)
        root = tmp_path / f"lake-{export_format}"
        convert_export(folder, root, ConvertOptions(workers=2, partition_by="year"))
        meta, rows = read_rows(str(root))
        tables[export_format] = (meta, sorted(rows, key=lambda r: r["review_id"]))
    (json_meta, json_rows), (ion_meta, ion_rows) = tables["DYNAMODB_JSON"], tables["ION"]
    assert json_meta["columns"] == ion_meta["columns"]
    votes = next(c for c in ion_meta["columns"] if c["name"] == "votes_by_day")
    assert votes["encoding"] == "json"  # a dictionary map stays one column on the Ion path too
    assert json_rows == ion_rows


@pytest.mark.parametrize("naming, expected", [
    ("snake", {"Größe": "gr_e", "Café": "caf", "名前": "attr", "🎉": "attr_2", " ": "attr_3", "🎉party": "party",
               "_private": "private", "__x__": "x", "a.b": "a_b", "a__b": "a_b_2", "x-y z": "x_y_z", "Name": "name",
               "NAME": "name_2", "9lives": "_9lives"}),
    ("glue", {"Größe": "item.größe.n", "Café": "item.café.s", "名前": "item.名前.s", "🎉": "item.🎉.s",
              " ": "item. .s", "🎉party": "item.🎉party.s", "_private": "item._private.s", "__x__": "item.__x__.s",
              "a.b": "item.a.b.s", "a__b": "item.a__b.s", "x-y z": "item.x-y z.s", "Name": "item.name.s",
              "NAME": "item.name.s_2", "9lives": "item.9lives.s"}),
])
def test_non_ascii_and_odd_attribute_names_become_the_documented_columns(tmp_path: Path, naming: str,
                                                                          expected: dict[str, str]) -> None:
    # The table of docs/schema_rules.md ("Names"), in one item, in that order.
    item = {name: {"N": "1"} if name == "Größe" else {"S": name} for name in expected}
    meta, schema, rows = convert(tmp_path, [item], naming=naming, partition_by=None)
    mapping = {".".join(c["path"]): c["name"] for c in meta["columns"] if c["path"] != ["pk"]}
    assert mapping == expected
    assert {name: rows[0][column] for name, column in mapping.items() if name != "Größe"} == \
        {name: name for name in expected if name != "Größe"}  # every value in its own column
