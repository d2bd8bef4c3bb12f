"""The lake on Athena: Iceberg tables in the Glue Data Catalog, SQL run by Athena.

With ``catalog.kind: glue`` the Glue catalog *is* the lake's Iceberg catalog: every commit updates
the Glue table's ``metadata_location``, so Athena reads the committed snapshot with no registration
step in between (and none that could lag behind or fail on its own).
"""

from __future__ import annotations

from typing import Any

from ddb_assets.query.athena_engine import AthenaEngine
from ddb_assets.query.result import QueryResult, quote_identifier


class AthenaLakeEngine:
    def __init__(self, *, athena: Any, glue: Any, database: str, workgroup: str = "primary",
                 output_location: str | None = None, timeout_seconds: float = 900):
        self.glue = glue
        self.database = database
        self.athena = AthenaEngine(athena, database, workgroup, output_location, timeout_seconds)

    def register_table(self, name: str, table: Any = None) -> None:
        """Nothing to register (the commit did); checks that Glue has the table, for a clear error."""
        try:
            self.glue.get_table(DatabaseName=self.database, Name=name)
        except self.glue.exceptions.EntityNotFoundException:
            raise LookupError(f"the Glue database {self.database} has no table {name!r}: was it converted with "
                              f"catalog.kind: glue?") from None

    def table_reference(self, name: str) -> str:
        return f"{quote_identifier(self.database)}.{quote_identifier(name)}"

    def query(self, sql: str, measure: bool = False) -> QueryResult:
        return self.athena.query(sql)  # Athena always reports DataScannedInBytes

    def close(self) -> None:
        pass
