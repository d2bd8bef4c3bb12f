"""The one interface both query engines implement: DuckDB (embedded) and Athena (over Glue)."""

from __future__ import annotations

from typing import Any, Protocol

from ddb_assets.query.result import QueryResult


class QueryEngine(Protocol):
    """SQL over lake tables. ``register_table`` makes a lake table (a pyiceberg Table) queryable
    under ``table_reference(name)``; ``query`` runs SQL in the engine's dialect (reports use the
    portable subset both run) and returns an Arrow result, with the bytes the engine scanned when
    ``measure`` (Athena always reports them)."""

    def register_table(self, name: str, table: Any) -> Any: ...

    def table_reference(self, name: str) -> str: ...

    def query(self, sql: str, measure: bool = False) -> QueryResult: ...

    def close(self) -> None: ...
