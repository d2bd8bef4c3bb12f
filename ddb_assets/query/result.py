"""What a query returns, and SQL quoting shared by both engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa


def quote_identifier(name: str) -> str:
    """A DuckDB/Athena identifier in double quotes; embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class QueryResult:
    table: pa.Table
    bytes_scanned: int | None = None

    def markdown(self, limit: int = 20) -> str:
        rows = self.table.slice(0, limit).to_pylist()
        names = self.table.column_names
        lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row[n]) for n in names) + " |")
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


