"""PITR exports through the DynamoDB API: start, describe, list (paginated) and wait."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterator

TERMINAL_STATUSES = ("COMPLETED", "FAILED")


class ExportFailed(RuntimeError):
    """An export ended FAILED; carries AWS's failure code and message."""

    def __init__(self, description: dict[str, Any]):
        self.description = description
        super().__init__(f"export {description['ExportArn']} failed: "
                         f"{description.get('FailureCode')}: {description.get('FailureMessage')}")


class ExportTimeout(RuntimeError):
    """An export did not finish within the wait limit (it may still finish later)."""


def export_id_of(export_arn: str) -> str:
    """``arn:...:table/T/export/01715674542517-a4c123b1`` -> ``01715674542517-a4c123b1``."""
    return export_arn.rsplit("/", 1)[-1]


def export_started_ms(export_id: str) -> int | None:
    """The start time an export id begins with (``01715674542517-a4c123b1``: ms since the epoch),
    None for an id of another shape."""
    head = export_id.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def table_arn_of(client: Any, table: str) -> str:
    """Accept a table name or ARN; return the ARN (raises the client's ResourceNotFoundException)."""
    if table.startswith("arn:"):
        return table
    return str(client.describe_table(TableName=table)["Table"]["TableArn"])


def pitr_enabled(client: Any, table: str) -> bool:
    status = client.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    return status.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED"


def enable_pitr(client: Any, table: str) -> None:
    client.update_continuous_backups(TableName=table,
                                     PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})


def start_export(client: Any, *, table_arn: str, bucket: str, prefix: str | None = None,
                 export_format: str = "DYNAMODB_JSON", export_time: datetime | None = None,
                 client_token: str | None = None, incremental: tuple[datetime, datetime] | None = None,
                 view: str = "NEW_AND_OLD_IMAGES") -> dict[str, Any]:
    """Start ``ExportTableToPointInTime``; returns the ExportDescription (IN_PROGRESS).

    ``incremental``: (ExportFromTime inclusive, ExportToTime exclusive), a window of 15 minutes to
    24 hours, with ``view`` NEW_AND_OLD_IMAGES or NEW_IMAGE; ``export_time`` does not apply then."""
    params: dict[str, Any] = {"TableArn": table_arn, "S3Bucket": bucket, "ExportFormat": export_format}
    if prefix:
        params["S3Prefix"] = prefix
    if incremental is not None:
        params["ExportType"] = "INCREMENTAL_EXPORT"
        params["IncrementalExportSpecification"] = {"ExportFromTime": incremental[0],
                                                    "ExportToTime": incremental[1], "ExportViewType": view}
    elif export_time is not None:
        params["ExportTime"] = export_time
    if client_token:
        params["ClientToken"] = client_token
    return dict(client.export_table_to_point_in_time(**params)["ExportDescription"])


def describe_export(client: Any, export_arn: str) -> dict[str, Any]:
    return dict(client.describe_export(ExportArn=export_arn)["ExportDescription"])


def list_exports(client: Any, table_arn: str | None = None, page_size: int = 25) -> Iterator[dict[str, Any]]:
    """Every export summary (``ExportArn``, ``ExportStatus``, ``ExportType``), following NextToken."""
    params: dict[str, Any] = {"MaxResults": page_size}
    if table_arn:
        params["TableArn"] = table_arn
    while True:
        page = client.list_exports(**params)
        yield from page.get("ExportSummaries", [])
        token = page.get("NextToken")
        if not token:
            return
        params["NextToken"] = token


def wait_for_export(client: Any, export_arn: str, *, timeout_seconds: float = 3600,
                    poll_seconds: float = 0.25, max_poll_seconds: float = 30,
                    on_poll: Callable[[dict[str, Any], float], None] = lambda d, t: None) -> dict[str, Any]:
    """Poll DescribeExport with backoff until COMPLETED (returned) or FAILED (raises ExportFailed)."""
    started = time.monotonic()
    delay = poll_seconds
    while True:
        description = describe_export(client, export_arn)
        elapsed = time.monotonic() - started
        on_poll(description, elapsed)
        if description["ExportStatus"] == "COMPLETED":
            return description
        if description["ExportStatus"] == "FAILED":
            raise ExportFailed(description)
        if elapsed > timeout_seconds:
            raise ExportTimeout(f"export {export_arn} still {description['ExportStatus']} after "
                                f"{timeout_seconds:.0f}s; it may finish later (check DescribeExport)")
        time.sleep(delay)
        delay = min(max_poll_seconds, delay * 1.5)
