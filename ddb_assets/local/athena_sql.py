"""A local Athena: queries run by DuckDB over the Glue catalog and S3 of the moto process.

moto accepts Athena queries but runs none of them. Here, a query with no result queued through
moto's API is executed for real: every Glue table the query names becomes a DuckDB view, the SQL
runs, and its result (typed ColumnInfo, VarCharValue rows) is what GetQueryResults returns. A Glue
table is read as Athena reads it: an Iceberg table (``table_type`` ICEBERG with a
``metadata_location``) as its current snapshot, columns as its current schema (local/iceberg_read.py);
any other table Hive-style, as the Parquet objects at its partitions' locations (partition keys as
columns).

``CREATE TABLE ... WITH (external_location = '...') AS SELECT ...`` (CTAS) writes Parquet to that
location and registers the new table in Glue, as Athena does; ``WITH (table_type = 'ICEBERG',
location = '...', is_external = false)`` creates an Iceberg table there instead, through pyiceberg's
GlueCatalog. A SQL error turns the query FAILED with DuckDB's message as the StateChangeReason.
Data volumes are a test's, so everything is read into memory.
"""

from __future__ import annotations

import io
import re
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ddb_assets.local.iceberg_read import read_iceberg

_CTAS = re.compile(r"^\s*CREATE\s+TABLE\s+(?P<name>(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)\s+"
                   r"WITH\s*\((?P<props>.*?)\)\s+AS\s+(?P<select>.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"(\w+)\s*=\s*'([^']*)'")
_FLAG = re.compile(r"(\w+)\s*=\s*(true|false)\b", re.IGNORECASE)
_PARTITIONING = re.compile(r"\bpartitioning\s*=", re.IGNORECASE)


def iceberg_metadata_location(definition: dict[str, Any]) -> str | None:
    """The current metadata file of a Glue table that is an Iceberg table, else None.

    As Athena decides: ``Parameters.table_type`` is ICEBERG (any case) and ``metadata_location``
    is set; ``definition`` is a GetTable ``Table``.
    """
    parameters = definition.get("Parameters") or {}
    if str(parameters.get("table_type", "")).upper() != "ICEBERG":
        return None
    return parameters.get("metadata_location") or None


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def _unquote(part: str) -> str:
    return part[1:-1].replace('""', '"') if part.startswith('"') else part


def _athena_type(kind: pa.DataType) -> dict[str, Any]:
    if pa.types.is_integer(kind):
        return {"Type": "bigint"}
    if pa.types.is_floating(kind):
        return {"Type": "double"}
    if pa.types.is_decimal(kind):
        return {"Type": "decimal", "Precision": kind.precision, "Scale": kind.scale}
    if pa.types.is_boolean(kind):
        return {"Type": "boolean"}
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return {"Type": "array"}
    if pa.types.is_struct(kind):
        return {"Type": "row"}
    if pa.types.is_map(kind):
        return {"Type": "map"}
    return {"Type": "varchar"}


def _athena_text(value: Any, kind: pa.DataType) -> str:
    """A value as Athena's VarCharValue writes it: arrays ``[a, b]``, rows and maps ``{k=v}``,
    booleans in lower case, nulls inside them as ``null``."""
    if value is None:
        return "null"
    if pa.types.is_boolean(kind):
        return str(value).lower()
    if pa.types.is_map(kind):  # Arrow gives a map as (key, value) pairs
        return "{" + ", ".join(f"{_athena_text(k, kind.key_type)}={_athena_text(v, kind.item_type)}"
                               for k, v in value) + "}"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "[" + ", ".join(_athena_text(v, kind.value_type) for v in value) + "]"
    if pa.types.is_struct(kind):
        return "{" + ", ".join(f"{f.name}={_athena_text(value[f.name], f.type)}" for f in kind) + "}"
    return str(value)


class LocalAthena:
    def __init__(self, account_id: str, region: str, endpoint: str | None = None):
        """``endpoint``: the moto server's own ``http://host:port``, for what must go through it
        (an Iceberg CTAS); None outside a server."""
        from moto.glue.models import glue_backends
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        self.account_id, self.region, self.endpoint = account_id, region, endpoint
        self.glue = glue_backends[account_id][region]
        self.s3 = s3_backends[account_id][get_partition(region)]

    def _parquet_under(self, uri: str) -> list[tuple[str, bytes]]:
        bucket_name, prefix = _split_s3(uri)
        bucket = self.s3.get_bucket(bucket_name)
        return [(key, bucket.keys[key].value) for key in list(bucket.keys.keys())
                if key.startswith(prefix) and key.endswith(".parquet")]

    def _register_catalog(self, connection: duckdb.DuckDBPyConnection, sql: str, database: str | None) -> int:
        """Every Glue table the SQL may name as a view; returns the bytes read (DataScannedInBytes).

        "May name" is a text match: the table's name appears, and so does its database's unless
        it is the query's own. A table is sometimes read for nothing, never missed; the others are
        not read at all, so a broken table elsewhere in the catalog cannot fail the query (as on
        Athena) and the bytes scanned are this query's.
        """
        text, scanned = sql.lower(), 0
        for database_name, tables in self.glue.databases.items():
            connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{database_name}"')
            if database_name != database and database_name.lower() not in text:
                continue
            for table_name, table in tables.tables.items():
                if table_name.lower() not in text:
                    continue
                definition = table.as_dict()
                metadata_location = iceberg_metadata_location(definition)
                if metadata_location is not None:
                    snapshot = read_iceberg(metadata_location, self.account_id, self.region)
                    rows, size = snapshot.table, snapshot.bytes_scanned
                else:
                    rows, size = self._hive_rows(table, definition)
                hidden = f"__glue_{database_name}_{table_name}"
                if rows is not None:
                    connection.register(hidden, rows)
                    connection.execute(f'CREATE OR REPLACE VIEW "{database_name}"."{table_name}" AS SELECT * FROM "{hidden}"')
                scanned += size
        return scanned

    def _hive_rows(self, table: Any, definition: dict[str, Any]) -> tuple[pa.Table | None, int]:
        """The Parquet objects under the table's (partitions') locations, partition keys as columns;
        None when there are none."""
        keys = [k["Name"] for k in definition.get("PartitionKeys", [])]
        key_types = [k["Type"] for k in definition.get("PartitionKeys", [])]
        pieces, size = [], 0
        locations: list[tuple[str, list[str]]] = []
        if keys:
            for partition in table.partitions.values():
                description = partition.as_dict()
                locations.append((description["StorageDescriptor"]["Location"], description["Values"]))
        else:
            locations.append((definition["StorageDescriptor"]["Location"], []))
        for location, values in locations:
            for _, data in self._parquet_under(location):
                size += len(data)
                piece = pq.read_table(io.BytesIO(data))
                for name, kind, value in zip(keys, key_types, values):
                    typed = int(value) if kind in ("bigint", "int") and value.lstrip("-").isdigit() else value
                    piece = piece.append_column(name, pa.array([typed] * piece.num_rows))
                pieces.append(piece)
        return (pa.concat_tables(pieces, promote_options="permissive") if pieces else None), size

    def execute(self, sql: str, database: str | None) -> tuple[pa.Table | None, int]:
        """Run one query; returns (result table or None for CTAS, bytes scanned). Raises on SQL errors."""
        connection = duckdb.connect()
        try:
            scanned = self._register_catalog(connection, sql, database)
            if database:
                connection.execute(f'SET schema = \'{database.replace(chr(39), "")}\'')
            ctas = _CTAS.match(sql)
            if ctas is None:
                relation = connection.sql(sql)
                table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
                return table, scanned
            self._create_table_as(connection, ctas, database)
            return None, scanned
        finally:
            connection.close()

    def _create_table_as(self, connection: duckdb.DuckDBPyConnection, match: re.Match[str], database: str | None) -> None:
        properties = {k.lower(): v for k, v in _PROPERTY.findall(match.group("props"))}
        flags = {k.lower(): v.lower() for k, v in _FLAG.findall(match.group("props"))}
        relation = connection.sql(match.group("select"))
        table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
        parts = [_unquote(p) for p in re.findall(r'"[^"]+"|\w+', match.group("name"))]
        database_name, table_name = (parts if len(parts) == 2 else [database or "default", parts[0]])
        if properties.get("table_type", "HIVE").upper() == "ICEBERG":
            self._create_iceberg_table_as(table, database_name, table_name, properties, flags, match.group("props"))
        else:
            self._create_hive_table_as(table, database_name, table_name, properties)

    def _create_iceberg_table_as(self, table: pa.Table, database_name: str, table_name: str,
                                 properties: dict[str, str], flags: dict[str, str], text: str) -> None:
        """Athena's Iceberg CTAS: ``WITH (table_type = 'ICEBERG', location = 's3://...', is_external = false)``,
        written through pyiceberg's GlueCatalog (unpartitioned, Parquet)."""
        from moto.core import DEFAULT_ACCOUNT_ID

        from ddb_assets.local.iceberg_catalog import create_table_with_rows

        location = properties.get("location")
        if not location or "external_location" in properties:
            raise ValueError("an Iceberg CTAS takes location = 's3://...', not external_location")
        if flags.get("is_external") != "false":
            raise ValueError("an Iceberg CTAS needs is_external = false")
        if properties.get("format", "PARQUET").upper() != "PARQUET":
            raise ValueError("the local Athena writes Iceberg tables as Parquet only")
        if _PARTITIONING.search(text):
            raise ValueError("the local Athena's Iceberg CTAS does not partition (partitioning = ARRAY[...])")
        if self.endpoint is None:
            raise RuntimeError("an Iceberg CTAS runs only inside a moto server (it writes through the server)")
        if self.account_id != DEFAULT_ACCOUNT_ID:
            # pyiceberg reaches the server with dummy keys, which moto maps to its default account.
            raise ValueError(f"the local Athena's Iceberg CTAS writes in account {DEFAULT_ACCOUNT_ID} only")
        create_table_with_rows(self.endpoint, self.region, database_name, table_name, location, table)

    def _create_hive_table_as(self, table: pa.Table, database_name: str, table_name: str,
                              properties: dict[str, str]) -> None:
        from ddb_assets.query.glue_catalog import glue_type

        location = properties.get("external_location")
        if not location:
            raise ValueError("CTAS needs external_location in the local Athena")
        bucket, key = _split_s3(location.rstrip("/") + "/")
        if any(k.startswith(key) for k in self.s3.get_bucket(bucket).keys.keys()):
            raise ValueError(f"HIVE_PATH_ALREADY_EXISTS: Target directory for table already exists: {location}")
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.s3.put_object(bucket_name=bucket, key_name=key + "part-00000.parquet", value=buffer.getvalue())
        self.glue.create_table(database_name, table_name, {
            "Name": table_name, "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {"Location": location, "Columns": [
                {"Name": f.name, "Type": glue_type(f.type)} for f in table.schema]},
            "PartitionKeys": []})


def results_for(table: pa.Table) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """moto QueryResults rows (header first, values as text) and ColumnInfo."""
    columns = [{"Name": f.name, "Label": f.name, "Nullable": "UNKNOWN", **_athena_type(f.type)} for f in table.schema]
    rows = [{"Data": [{"VarCharValue": f.name} for f in table.schema]}]
    values = [column.to_pylist() for column in table.columns]  # by position: names may repeat
    for record in zip(*values):
        rows.append({"Data": [{} if v is None else {"VarCharValue": _athena_text(v, f.type)}
                              for v, f in zip(record, table.schema)]})
    return rows, columns
