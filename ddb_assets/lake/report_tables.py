"""Report results as Iceberg tables of the lake's catalog (``<table>_<report>``), one snapshot per refresh.

Reports are small (aggregates over the lake table), so pyiceberg's own writer writes them: a new
report is created and filled in one transaction, a refreshed one is overwritten in one snapshot
(readers see the previous result until then). A report whose SQL now returns other columns is
dropped and created again: it is derived data, and its old files are orphans for maintenance.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ddb_assets.lake.catalog import ensure_namespace, load_table


def write_report(catalog: Any, namespace: str, name: str, location: str, result: pa.Table,
                 properties: dict[str, str] | None = None) -> Any:
    """Make ``result`` the content of the report table ``namespace.name`` at ``location``; returns it."""
    result = _plain(result)
    ensure_namespace(catalog, namespace)
    table = load_table(catalog, namespace, name)
    if table is not None and not _same_columns(table.schema().as_arrow(), result.schema):
        catalog.drop_table((namespace, name))
        table = None
    if table is None:
        transaction = catalog.create_table_transaction((namespace, name), schema=result.schema, location=location,
                                                       properties=dict(properties or {}))
        transaction.append(result)
        transaction.commit_transaction()
        return catalog.load_table((namespace, name))
    table.overwrite(result)
    return table


def _same_columns(current: pa.Schema, wanted: pa.Schema) -> bool:
    return [(f.name, str(_plain_type(f.type))) for f in current] == [(f.name, str(f.type)) for f in wanted]


def _plain(table: pa.Table) -> pa.Table:
    """Large string/binary types (DuckDB may return them) as the plain ones Iceberg maps both to."""
    return table.cast(pa.schema([pa.field(f.name, _plain_type(f.type)) for f in table.schema]))


def _plain_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_large_list(kind) or pa.types.is_list(kind):
        return pa.list_(_plain_type(kind.value_type))
    return kind
