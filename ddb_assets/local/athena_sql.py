"""A local Athena: queries run by DuckDB over the Glue catalog and S3 of the moto process.

moto accepts Athena queries but runs none of them. Here, a query with no result queued through
moto's API is executed for real: every Glue table of the account/region becomes a DuckDB view over
the Parquet objects at its partitions' locations (partition keys as columns), the SQL runs, and its
result (typed ColumnInfo, VarCharValue rows) is what GetQueryResults returns. ``CREATE TABLE ...
WITH (external_location = '...') AS SELECT ...`` (CTAS) writes Parquet to that location and
registers the new table in Glue, as Athena does. A SQL error turns the query FAILED with DuckDB's
message as the StateChangeReason. Data volumes are a test's, so everything is read into memory.
"""

from __future__ import annotations

import io
import re
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

_CTAS = re.compile(r"^\s*CREATE\s+TABLE\s+(?P<name>(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)\s+"
                   r"WITH\s*\((?P<props>.*?)\)\s+AS\s+(?P<select>.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"(\w+)\s*=\s*'([^']*)'")


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
    return {"Type": "varchar"}


class LocalAthena:
    def __init__(self, account_id: str, region: str):
        from moto.glue.models import glue_backends
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        self.glue = glue_backends[account_id][region]
        self.s3 = s3_backends[account_id][get_partition(region)]

    def _parquet_under(self, uri: str) -> list[tuple[str, bytes]]:
        bucket_name, prefix = _split_s3(uri)
        bucket = self.s3.get_bucket(bucket_name)
        return [(key, bucket.keys[key].value) for key in list(bucket.keys.keys())
                if key.startswith(prefix) and key.endswith(".parquet")]

    def _register_catalog(self, connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
        """Every Glue table as a view; returns bytes per "db"."table" (for DataScannedInBytes)."""
        sizes: dict[str, int] = {}
        for database_name, database in self.glue.databases.items():
            connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{database_name}"')
            for table_name, table in database.tables.items():
                definition = table.as_dict()
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
                hidden = f"__glue_{database_name}_{table_name}"
                if pieces:
                    connection.register(hidden, pa.concat_tables(pieces, promote_options="permissive"))
                    connection.execute(f'CREATE OR REPLACE VIEW "{database_name}"."{table_name}" AS SELECT * FROM "{hidden}"')
                sizes[f'"{database_name}"."{table_name}"'.lower()] = size
        return sizes

    def execute(self, sql: str, database: str | None) -> tuple[pa.Table | None, int]:
        """Run one query; returns (result table or None for CTAS, bytes scanned). Raises on SQL errors."""
        connection = duckdb.connect()
        try:
            sizes = self._register_catalog(connection)
            if database:
                connection.execute(f'SET schema = \'{database.replace(chr(39), "")}\'')
            scanned = sum(size for name, size in sizes.items() if name in sql.lower() or
                          name.split(".")[1] in sql.lower())
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
        from ddb_assets.query.glue_catalog import glue_type

        properties = {k.lower(): v for k, v in _PROPERTY.findall(match.group("props"))}
        location = properties.get("external_location")
        if not location:
            raise ValueError("CTAS needs external_location in the local Athena")
        relation = connection.sql(match.group("select"))
        table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
        bucket, key = _split_s3(location.rstrip("/") + "/")
        if any(k.startswith(key) for k in self.s3.get_bucket(bucket).keys.keys()):
            raise ValueError(f"HIVE_PATH_ALREADY_EXISTS: Target directory for table already exists: {location}")
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.s3.put_object(bucket_name=bucket, key_name=key + "part-00000.parquet", value=buffer.getvalue())
        parts = [_unquote(p) for p in re.findall(r'"[^"]+"|\w+', match.group("name"))]
        database_name, table_name = (parts if len(parts) == 2 else [database or "default", parts[0]])
        self.glue.create_table(database_name, table_name, {
            "Name": table_name, "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {"Location": location, "Columns": [
                {"Name": f.name, "Type": glue_type(f.type)} for f in table.schema]},
            "PartitionKeys": []})


def results_for(table: pa.Table) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """moto QueryResults rows (header first, values as text) and ColumnInfo."""
    columns = [{"Name": f.name, "Label": f.name, "Nullable": "UNKNOWN", **_athena_type(f.type)} for f in table.schema]
    rows = [{"Data": [{"VarCharValue": f.name} for f in table.schema]}]
    for record in table.to_pylist():
        rows.append({"Data": [{} if v is None else {"VarCharValue": str(v).lower() if isinstance(v, bool) else str(v)}
                              for v in record.values()]})
    return rows, columns
