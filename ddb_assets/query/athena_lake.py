"""The lake on Athena: tables registered in the Glue catalog, SQL run by Athena."""

from __future__ import annotations

from typing import Any

from ddb_assets.exports.storage import Location
from ddb_assets.lake.publish import TableMetadata, read_metadata
from ddb_assets.query.athena_engine import AthenaEngine
from ddb_assets.query.duckdb_engine import QueryResult, quote_identifier
from ddb_assets.query.glue_catalog import register_table


class AthenaLakeEngine:
    def __init__(self, *, athena: Any, glue: Any, database: str, workgroup: str = "primary",
                 output_location: str | None = None, timeout_seconds: float = 900):
        self.glue = glue
        self.database = database
        self.athena = AthenaEngine(athena, database, workgroup, output_location, timeout_seconds)
        self.tables: dict[str, TableMetadata] = {}
        self.last_changes: dict[str, Any] = {}

    def register_table(self, name: str, root: Location) -> TableMetadata:
        metadata = read_metadata(root)
        if metadata is None:
            raise LookupError(f"no published table at {root.uri} (missing _ddb_assets.json)")
        self.last_changes = register_table(self.glue, self.database, name, metadata, root.uri)
        self.tables[name] = metadata
        return metadata

    def table_reference(self, name: str) -> str:
        return f"{quote_identifier(self.database)}.{quote_identifier(name)}"

    def query(self, sql: str, measure: bool = False) -> QueryResult:
        return self.athena.query(sql)  # Athena always reports DataScannedInBytes

    def close(self) -> None:
        pass
