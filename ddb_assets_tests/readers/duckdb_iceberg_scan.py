"""A second Iceberg reader that shares no code with ddb_assets or pyiceberg: DuckDB's C++ iceberg
extension, run in its own virtual environment (``make readers``: duckdb 1.5.5 with the iceberg and
avro extensions from PyPI; no extension is downloaded at run time).

Usage: python duckdb_iceberg_scan.py METADATA_JSON [...]  ->  one JSON object per table on stdout:
{"metadata": path, "columns": [...], "rows": [[...], ...]} with values made JSON-comparable
(decimals and timestamps as text, binaries as base64).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import glob
import importlib
import json
import os
import sys


def _connect():  # type: ignore[no-untyped-def]
    import duckdb

    connection = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false",
                                        "autoload_known_extensions": "false"})
    for name in ("avro", "iceberg"):
        module = importlib.import_module(f"duckdb_extension_{name}")
        [path] = glob.glob(os.path.join(os.path.dirname(module.__file__), "extensions", "*", f"{name}.duckdb_extension"))
        connection.execute(f"LOAD '{path}'")
    return connection


def plain(value):  # type: ignore[no-untyped-def]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, decimal.Decimal):
        return str(value.normalize()) if value == value.to_integral_value() else format(value.normalize(), "f")
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def main() -> None:
    connection = _connect()
    for metadata in sys.argv[1:]:
        relation = connection.sql(f"SELECT * FROM iceberg_scan('{metadata}')")
        rows = [[plain(v) for v in row] for row in relation.fetchall()]
        print(json.dumps({"metadata": metadata, "columns": relation.columns, "rows": rows}))


if __name__ == "__main__":
    main()
