"""The lake on Athena: tables registered in the Glue catalog, SQL run by Athena."""

from __future__ import annotations

from typing import Any

from ddb_assets.exports.storage import Location
from ddb_assets.lake.publish import TableMetadata, read_metadata
from ddb_assets.query.athena_engine import AthenaEngine
from dataclasses import dataclass

from ddb_assets.lake.publish import new_version
from ddb_assets.query.duckdb_engine import QueryResult, quote_identifier, quote_literal
from ddb_assets.query.glue_catalog import register_table


@dataclass
class MaterializedReport:
    preview: QueryResult  # first rows, with the CTAS's bytes scanned
    rows: int
    location: str  # the version folder holding the report's Parquet
    table: str  # the Glue table pointing at it


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

    def materialize_report(self, table: str, report: str, sql: str, location: str) -> MaterializedReport:
        """CTAS into a fresh version folder, then point the report's Glue table at it.

        CTAS refuses a non-empty location and Athena cannot rename tables, so each run writes a
        new folder under a temporary table, and the stable table's location is switched in Glue.
        """
        version = new_version().lower()
        target = f"{location.rstrip('/')}/{version}/"
        stable = f"{table}_{report}"
        temporary = f"{stable}__{version.replace('-', '_')}"
        execution = self.athena.wait(self.athena.start(
            f"CREATE TABLE {quote_identifier(self.database)}.{quote_identifier(temporary)} "
            f"WITH (format = 'PARQUET', write_compression = 'ZSTD', external_location = {quote_literal(target)}) "
            f"AS {sql.strip().rstrip(';')}"))
        scanned = execution.get("Statistics", {}).get("DataScannedInBytes")
        created = self.glue.get_table(DatabaseName=self.database, Name=temporary)["Table"]
        table_input = {"Name": stable, "TableType": "EXTERNAL_TABLE", "PartitionKeys": [],
                       "StorageDescriptor": created["StorageDescriptor"],
                       "Parameters": {"classification": "parquet", "ddb_assets.version": version}}
        try:
            self.glue.create_table(DatabaseName=self.database, TableInput=table_input)
        except self.glue.exceptions.AlreadyExistsException:
            self.glue.update_table(DatabaseName=self.database, TableInput=table_input)
        self.glue.delete_table(DatabaseName=self.database, Name=temporary)
        reference = self.table_reference(stable)
        preview = self.athena.query(f"SELECT * FROM {reference} LIMIT 20")
        count = self.athena.query(f"SELECT COUNT(*) AS n FROM {reference}").table.to_pylist()
        return MaterializedReport(QueryResult(preview.table, bytes_scanned=scanned),
                                  int(count[0]["n"]) if count else 0, target, stable)
