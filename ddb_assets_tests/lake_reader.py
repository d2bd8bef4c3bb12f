"""Reads a published table back without the project's code: json + pyarrow.parquet only.

It rebuilds DynamoDB-shaped items from the flat columns using the column mapping the table
records, so tests can compare them with what was written to DynamoDB.
"""

from __future__ import annotations

import base64
import json
import os
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pyarrow.parquet as pq


def read_table_metadata(root: str) -> dict[str, Any]:
    with open(os.path.join(root, "_ddb_assets.json"), encoding="utf-8") as handle:
        return json.load(handle)


def read_rows(root: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metadata, rows) where each row has the file's columns plus the partition column."""
    meta = read_table_metadata(root)
    rows = []
    for partition in meta["partitions"].values():
        for entry in partition["files"]:
            path = os.path.join(root, entry["path"])
            table = pq.read_table(path)
            assert table.num_rows == entry["rows"]
            part_values = {}
            for segment in entry["path"].split("/"):
                if "=" in segment:
                    key, value = segment.split("=", 1)
                    part_values[unquote(key)] = unquote(value)
            for row in table.to_pylist():
                row.update(part_values)
                rows.append(row)
    return meta, rows


def plain(descriptor: str, value: Any) -> Any:
    """A Parquet value -> the comparable value of a DynamoDB attribute of that descriptor."""
    if value is None:
        return None
    if descriptor == "N":
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
    if descriptor in ("SS", "BS"):
        return frozenset(value)
    if descriptor == "NS":
        return frozenset(Decimal(str(v)) for v in value)
    return value


def rebuild_items(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nested items from flat rows; JSON columns parsed (numbers as Decimal); nulls left out."""
    items = []
    for row in rows:
        item: dict[str, Any] = {}
        for column in meta["columns"]:
            value = row.get(column["name"])
            if value is None:
                continue
            if column["encoding"] == "json":
                value = ("json", json.loads(value, parse_float=Decimal, parse_int=Decimal))
            elif column["encoding"] == "list":
                value = [plain(column["element"], v) for v in value]
            else:
                value = plain(column["descriptor"], value)
            target = item
            for segment in column["path"][:-1]:
                target = target.setdefault(segment, {})
            target[column["path"][-1]] = value
        if meta["partition_column"]:
            raw = row.get(meta["partition_column"])
            if raw is not None and raw != "__HIVE_DEFAULT_PARTITION__":
                item[meta["partition_attribute"]] = Decimal(raw) if meta["partition_type"] == "int64" else raw
        items.append(item)
    return items


def expected_item(item: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """What a source item should read back as, given how the table stores each path.

    NULL reads back as absent (NULL -> null), a flattened map that holds nothing non-null reads
    back as absent, JSON-stored values compare in their JSON form, and the partition attribute
    reads back from the folder name (its text, or its number for an int64 partition).
    """
    json_paths_by_descriptor = {(tuple(c["path"]), c["descriptor"]) for c in meta["columns"]
                                if c["encoding"] == "json"}

    def convert(attr: dict[str, Any], path: tuple) -> Any:
        [(kind, value)] = attr.items()
        if (path, kind) in json_paths_by_descriptor:
            return ("json", json_form(attr))
        if kind == "NULL":
            return None
        if kind == "M":
            out = {k: convert(v, path + (k,)) for k, v in value.items()}
            out = {k: v for k, v in out.items() if v is not None}
            return out or None
        if kind == "L":
            return [element(v) for v in value]
        if kind == "B":
            return base64.b64decode(value)
        if kind == "BS":
            return frozenset(base64.b64decode(v) for v in value)
        return plain(kind, value)

    def element(attr: dict[str, Any]) -> Any:
        [(kind, value)] = attr.items()
        return plain(kind, base64.b64decode(value) if kind == "B" else value)

    out = {}
    for name, attr in item.items():
        if meta["partition_attribute"] == name:
            [(kind, value)] = attr.items()
            if kind in ("N", "S", "BOOL"):
                text = str(value).lower() if kind == "BOOL" else value
                out[name] = Decimal(text) if meta["partition_type"] == "int64" else text
            continue
        converted = convert(attr, (name,))
        if converted is not None:
            out[name] = converted
    return out


def json_form(attr: dict[str, Any]) -> Any:
    """A DynamoDB AttributeValue as the table's JSON text holds it (sets sorted, B as base64)."""
    [(kind, value)] = attr.items()
    if kind == "N":
        return Decimal(value)
    if kind in ("S", "B", "BOOL"):
        return value
    if kind == "NULL":
        return None
    if kind in ("SS", "BS"):
        return sorted(value)
    if kind == "NS":
        return sorted((Decimal(v) for v in value))
    if kind == "M":
        return {k: json_form(v) for k, v in value.items()}
    return [json_form(v) for v in value]
