"""Reads a lake table back without the project's code: pyiceberg's StaticTable from the newest
metadata file, and the column mapping the table records in its properties.

It rebuilds DynamoDB-shaped items from the flat columns, so tests can compare them with what was
written to DynamoDB. (A second, non-Python reader is in iceberg_duckdb_reader.py.)
"""

from __future__ import annotations

import base64
import glob
import json
import os
import re
from decimal import Decimal
from typing import Any


def latest_metadata(root: str) -> str:
    """The table's current metadata file, as the catalog records it: the SQLite catalog file in a
    folder above the table (the Iceberg JDBC catalog's ``iceberg_tables`` table, read with sqlite3).
    Listing the metadata folder is not enough: a run that lost a commit race leaves a metadata
    file of the same version number (an orphan until maintenance)."""
    import sqlite3

    root = os.path.abspath(root)
    folder = os.path.dirname(root)
    while folder != os.path.dirname(folder):
        catalog = os.path.join(folder, "catalog.db")
        if os.path.exists(catalog):
            with sqlite3.connect(catalog) as connection:
                found = connection.execute("SELECT metadata_location FROM iceberg_tables WHERE metadata_location "
                                           "LIKE ?", (os.path.join(root, "metadata", "%"),)).fetchall()
            if found:
                [(location,)] = found
                return str(location)
        folder = os.path.dirname(folder)
    files = glob.glob(os.path.join(root, "metadata", "*.metadata.json"))  # a table of another catalog
    if not files:
        raise FileNotFoundError(f"no Iceberg metadata under {root}")
    return max(files, key=lambda f: int(re.match(r"(\d+)-", os.path.basename(f)).group(1)))


def read_table_metadata(root: str) -> dict[str, Any]:
    """{"columns": [{name, path, descriptor, encoding, element, field_id, type}], "properties",
    "metadata_location", "partition_spec"} of the table at ``root``."""
    from pyiceberg.table import StaticTable

    location = latest_metadata(root)
    table = StaticTable.from_metadata(location)
    mapping = {entry[0]: entry for entry in json.loads(table.properties["ddb_assets.columns"])["columns"]}
    columns = []
    for field in table.schema().fields:
        _, path, descriptor, encoding, element, unit = mapping[field.field_id]
        columns.append({"name": field.name, "field_id": field.field_id, "type": str(field.field_type),
                        "path": path, "descriptor": descriptor, "encoding": encoding, "element": element,
                        "unit": unit})
    return {"columns": columns, "properties": dict(table.properties), "metadata_location": location,
            "partition_spec": [(f.name, str(f.transform)) for f in table.spec().fields], "table": table}


def read_rows(root: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metadata, rows) of the table's current snapshot, read by pyiceberg."""
    meta = read_table_metadata(root)
    return meta, meta["table"].scan().to_arrow().to_pylist()


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
            if value is None or column["encoding"] == "time":
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
        items.append(item)
    return items


def expected_item(item: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """What a source item should read back as, given how the table stores each path.

    NULL reads back as absent (NULL -> null), a flattened map that holds nothing non-null reads
    back as absent, and JSON-stored values compare in their JSON form.
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
