"""Athena: start a query, poll with backoff, cancel on timeout, page through typed results.

dagster-aws's ``AthenaClientResource`` cannot set a region, an endpoint or a result location, so
this is our own. Errors carry the query execution id and Athena's reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import pyarrow as pa

from ddb_assets.query.result import QueryResult


class AthenaQueryError(RuntimeError):
    def __init__(self, query_id: str, state: str, reason: str):
        self.query_id, self.state, self.reason = query_id, state, reason
        super().__init__(f"Athena query {query_id} {state}: {reason}")


class AthenaQueryTimeout(AthenaQueryError):
    """The query ran past the timeout and was cancelled."""


_TYPES: dict[str, tuple[pa.DataType, Callable[[str], Any]]] = {
    "boolean": (pa.bool_(), lambda v: v.lower() == "true"),
    "tinyint": (pa.int64(), int), "smallint": (pa.int64(), int), "integer": (pa.int64(), int),
    "int": (pa.int64(), int), "bigint": (pa.int64(), int),
    "double": (pa.float64(), float), "float": (pa.float64(), float), "real": (pa.float64(), float),
    "varchar": (pa.string(), str), "char": (pa.string(), str), "string": (pa.string(), str),
    "date": (pa.string(), str), "timestamp": (pa.string(), str),
}


@dataclass
class AthenaEngine:
    client: Any  # boto3 Athena client
    database: str
    workgroup: str = "primary"
    output_location: str | None = None
    timeout_seconds: float = 600
    first_poll_seconds: float = 0.2
    max_poll_seconds: float = 5

    def start(self, sql: str) -> str:
        params: dict[str, Any] = {"QueryString": sql, "WorkGroup": self.workgroup,
                                  "QueryExecutionContext": {"Database": self.database}}
        if self.output_location:
            params["ResultConfiguration"] = {"OutputLocation": self.output_location}
        return str(self.client.start_query_execution(**params)["QueryExecutionId"])

    def wait(self, query_id: str) -> dict[str, Any]:
        started, delay = time.monotonic(), self.first_poll_seconds
        while True:
            execution = self.client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if state == "SUCCEEDED":
                return dict(execution)
            if state in ("FAILED", "CANCELLED"):
                raise AthenaQueryError(query_id, state, execution["Status"].get("StateChangeReason", "no reason given"))
            if time.monotonic() - started > self.timeout_seconds:
                self.client.stop_query_execution(QueryExecutionId=query_id)
                raise AthenaQueryTimeout(query_id, "CANCELLED",
                                         f"still {state} after {self.timeout_seconds:.0f}s; cancelled")
            time.sleep(delay)
            delay = min(self.max_poll_seconds, delay * 2)

    def query(self, sql: str) -> QueryResult:
        query_id = self.start(sql)
        execution = self.wait(query_id)
        table = self.results(query_id)
        scanned = execution.get("Statistics", {}).get("DataScannedInBytes")
        return QueryResult(table, bytes_scanned=scanned)

    def results(self, query_id: str) -> pa.Table:
        columns: list[dict[str, Any]] | None = None
        rows: list[list[str | None]] = []
        token, first_page = None, True
        while True:
            page = self.client.get_query_results(QueryExecutionId=query_id, **({"NextToken": token} if token else {}))
            result_set = page["ResultSet"]
            if columns is None:
                columns = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            data = [[cell.get("VarCharValue") for cell in row.get("Data", [])] for row in result_set.get("Rows", [])]
            if first_page and data and columns and data[0] == [c["Name"] for c in columns]:
                data = data[1:]  # a SELECT's first row repeats the column names
            rows.extend(data)
            first_page = False
            token = page.get("NextToken")
            if not token:
                break
        return _typed_table(columns or [], rows)


def _typed_table(columns: list[dict[str, Any]], rows: list[list[str | None]]) -> pa.Table:
    arrays, names = [], []
    for index, column in enumerate(columns):
        kind = column.get("Type", "varchar").lower()
        values = [row[index] if index < len(row) else None for row in rows]
        if kind.startswith("decimal"):
            precision, scale = column.get("Precision") or 38, column.get("Scale") or 0
            arrays.append(pa.array([None if v is None else Decimal(v) for v in values],
                                   pa.decimal128(int(precision), int(scale))))
        else:
            arrow_type, parse = _TYPES.get(kind.split("(")[0], (pa.string(), str))
            arrays.append(pa.array([None if v is None else parse(v) for v in values], arrow_type))
        names.append(column["Name"])
    return pa.Table.from_arrays(arrays, names=names)
