"""Faithful PITR exports behind moto's DynamoDB API (and the few other places moto falls short).

moto's own ``ExportTableToPointInTime`` writes one file with no manifests, no checksums, no ION, no
``ExportTime`` and a folder that is not the export id. This module replaces that piece, in the
moto process, with exports that match EXPORT_FORMAT.md: the same API calls (``ExportTableToPointInTime``,
``DescribeExport``, ``ListExports``), the same errors, and the exact S3 layout AWS writes. Everything
else (tables, items, S3) stays moto's.

To answer ``ExportTime`` it keeps a write history per table: every put, update and delete is
recorded with its time, so the table can be replayed to any second inside the PITR window.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.utilities import dynamo_json_dump
from moto.dynamodb.responses import DynamoHandler
from moto.core.responses import ActionResult

from ddb_assets.local import glue_versions
from ddb_assets.local.export_writer import ExportRequest, write_export

_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_BUCKET_PATTERN = re.compile(r"^[a-z0-9A-Z]+[\.\-\w]*[a-z0-9A-Z]+$")
_CLIENT_TOKEN_TTL_SECONDS = 8 * 3600
_EXPORT_FORMATS = ("DYNAMODB_JSON", "ION")

# How long an export stays IN_PROGRESS before its files are written (seconds). Real exports take
# minutes; a short pause keeps callers honest about polling without slowing tests down.
settings = {"export_delay_seconds": 0.3, "data_files": 4}


def _error(name: str, message: str) -> JsonRESTError:
    return JsonRESTError(_ERROR_PREFIX + name, message)


# ---------------------------------------------------------------------------------------------
# Write history: what every item looked like at every second


@dataclass
class _Write:
    at: float
    key: str
    attributes: dict[str, Any] | None  # None: the item was deleted


def _history(table: Any) -> list[_Write]:
    if not hasattr(table, "_ddb_assets_history"):
        table._ddb_assets_history = []
    return table._ddb_assets_history


def _item_json(item: Any) -> dict[str, Any]:
    return json.loads(dynamo_json_dump(item.to_json()))["Attributes"]


def _key_of(table: Any, attributes: dict[str, Any]) -> str:
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return json.dumps([attributes.get(name) for name in names], sort_keys=True)


def _record(table: Any, key_attributes: dict[str, Any]) -> None:
    """Record the item's state right after a write (or its absence after a delete)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    hash_value = DynamoType(key_attributes[table.hash_key_attr])
    range_value = DynamoType(key_attributes[table.range_key_attr]) if table.range_key_attr else None
    item = table.get_item(hash_value, range_value)
    _history(table).append(_Write(time.time(), _key_of(table, key_attributes),
                                  _item_json(item) if item is not None else None))


def _items_at(table: Any, moment: float) -> list[dict[str, Any]]:
    """The table's items as they were at ``moment`` (epoch seconds), from the write history."""
    state: dict[str, dict[str, Any] | None] = {}
    for write in _history(table):
        if write.at > moment:
            break
        state[write.key] = write.attributes
    return [attributes for attributes in state.values() if attributes is not None]


def _wrap_writes() -> None:
    original_put = DynamoDBBackend.put_item
    original_update = DynamoDBBackend.update_item
    original_delete = DynamoDBBackend.delete_item

    def put_item(self: DynamoDBBackend, table_name: str, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        result = original_put(self, table_name, item_attrs, *args, **kwargs)
        _record(self.get_table(table_name), item_attrs)
        return result

    def update_item(self: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        result = original_update(self, table_name, key, *args, **kwargs)
        _record(self.get_table(table_name), key)
        return result

    def delete_item(self: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        result = original_delete(self, table_name, key, *args, **kwargs)
        _record(self.get_table(table_name), key)
        return result

    DynamoDBBackend.put_item = put_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    DynamoDBBackend.delete_item = delete_item  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------
# Exports


@dataclass
class _Export:
    request: ExportRequest
    client_token: str
    parameters: dict[str, Any]  # what a reused ClientToken must match
    account_id: str
    s3_prefix_given: bool
    export_type_given: bool
    created: float = field(default_factory=time.time)
    status: str = "IN_PROGRESS"
    end_time: datetime | None = None
    item_count: int | None = None
    billed_size_bytes: int | None = None
    failure_code: str | None = None
    failure_message: str | None = None

    def description(self) -> dict[str, Any]:
        r = self.request
        out: dict[str, Any] = {
            "ExportArn": r.export_arn,
            "ExportStatus": self.status,
            "StartTime": r.start_time,
            "ExportTime": r.export_time,
            "TableArn": r.table_arn,
            "TableId": r.table_id,
            "ClientToken": self.client_token,
            "S3Bucket": r.bucket,
            "S3BucketOwner": self.account_id,
            "S3SseAlgorithm": r.sse_algorithm,
            "ExportFormat": r.output_format,
        }
        if self.s3_prefix_given:
            out["S3Prefix"] = r.prefix
        if self.export_type_given:
            out["ExportType"] = "FULL_EXPORT"
        if self.status == "COMPLETED":
            out.update(EndTime=self.end_time, ExportManifest=r.summary_key,
                       ItemCount=self.item_count, BilledSizeBytes=self.billed_size_bytes)
        if self.status == "FAILED":
            out.update(EndTime=self.end_time, FailureCode=self.failure_code, FailureMessage=self.failure_message)
        return out


def _exports(backend: DynamoDBBackend) -> dict[str, _Export]:
    if not hasattr(backend, "_ddb_assets_exports"):
        backend._ddb_assets_exports = {}  # type: ignore[attr-defined]
    return backend._ddb_assets_exports  # type: ignore[attr-defined,no-any-return]


def _table_by_arn(backend: DynamoDBBackend, table_arn: str) -> Any:
    for table in backend.tables.values():
        if table.table_arn == table_arn:
            return table
    raise _error("TableNotFoundException", f"Table not found: {table_arn}")


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):  # moto parses the wire timestamp; naive means UTC
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise _error("ValidationException", f"ExportTime {value!r} is not a timestamp")


def _start_export(handler: DynamoHandler) -> dict[str, Any]:
    body = handler.body
    backend = handler.dynamodb_backend
    table_arn = body.get("TableArn")
    bucket = body.get("S3Bucket")
    if not table_arn or not bucket:
        raise _error("ValidationException", "TableArn and S3Bucket are required")
    if len(bucket) > 255 or not _BUCKET_PATTERN.match(bucket):
        raise _error("ValidationException", f"1 validation error detected: Value '{bucket}' at 's3Bucket' "
                                            "failed to satisfy constraint: Member must satisfy regular expression pattern")
    prefix = body.get("S3Prefix")
    if prefix is not None and (prefix == "" or len(prefix) > 1024):
        raise _error("ValidationException", "S3Prefix must be 1 to 1024 characters long")
    export_format = body.get("ExportFormat", "DYNAMODB_JSON")
    if export_format not in _EXPORT_FORMATS:
        raise _error("ValidationException", f"1 validation error detected: Value '{export_format}' at "
                                            "'exportFormat' failed to satisfy constraint: Member must satisfy "
                                            "enum value set: [ION, DYNAMODB_JSON]")
    export_type = body.get("ExportType", "FULL_EXPORT")
    if export_type != "FULL_EXPORT":
        raise _error("ValidationException", f"ExportType {export_type} is not supported by the local emulator; "
                                            "only FULL_EXPORT is")
    table = _table_by_arn(backend, table_arn)
    pitr = table.continuous_backups["PointInTimeRecoveryDescription"]
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        raise _error("PointInTimeRecoveryUnavailableException",
                     f"Point in time recovery is not enabled for table '{table.name}'")

    now = time.time()
    export_time = _epoch(body["ExportTime"]) if "ExportTime" in body else None
    if export_time is not None:
        earliest = float(pitr.get("EarliestRestorableDateTime") or now)
        window_start = max(earliest, now - 86400 * float(pitr.get("RecoveryPeriodInDays") or 35))
        if export_time < int(window_start) or export_time > now:
            raise _error("InvalidExportTimeException",
                         f"Export time {datetime.fromtimestamp(export_time, timezone.utc).isoformat()} is outside "
                         f"the table's point-in-time recovery window "
                         f"({datetime.fromtimestamp(window_start, timezone.utc).isoformat()} to now)")

    parameters = {"TableArn": table_arn, "S3Bucket": bucket, "S3Prefix": prefix, "ExportFormat": export_format,
                  "ExportTime": export_time, "ExportType": export_type,
                  "S3SseAlgorithm": body.get("S3SseAlgorithm", "AES256")}
    exports = _exports(backend)
    token = body.get("ClientToken")
    if token is not None:
        for existing in exports.values():
            if existing.client_token == token and now - existing.created < _CLIENT_TOKEN_TTL_SECONDS:
                if existing.parameters != parameters:
                    raise _error("ExportConflictException", "Duplicate request detected: the ClientToken was "
                                                            "used before with different parameters")
                return existing.description()
    else:
        token = str(uuid.uuid4())

    start = datetime.fromtimestamp(now, timezone.utc)
    export_id = f"{int(now * 1000):014d}-{secrets.token_hex(4)}"
    request = ExportRequest(
        export_arn=f"{table_arn}/export/{export_id}",
        table_arn=table_arn,
        table_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{table_arn}@{table.created_at.isoformat()}")),
        bucket=bucket,
        prefix=prefix,
        output_format=export_format,
        start_time=start,
        export_time=datetime.fromtimestamp(export_time, timezone.utc) if export_time is not None else start,
        key_attributes=tuple(k for k in (table.hash_key_attr, table.range_key_attr) if k),
        data_files=int(settings["data_files"]),
        sse_algorithm=str(parameters["S3SseAlgorithm"]),
    )
    export = _Export(request=request, client_token=token, parameters=parameters, account_id=backend.account_id,
                     s3_prefix_given=prefix is not None, export_type_given="ExportType" in body)
    exports[request.export_arn] = export
    # The items are fixed now (as of the export time); the files appear a little later, as on AWS.
    items = _items_at(table, export_time if export_time is not None else float("inf"))
    threading.Thread(target=_run_export, args=(export, items, backend.region_name), daemon=True).start()
    return export.description()


class _MotoS3Sink:
    def __init__(self, s3_backend: Any, bucket: str):
        self.s3_backend = s3_backend
        self.bucket = bucket

    def put(self, key: str, data: bytes) -> None:
        self.s3_backend.put_object(bucket_name=self.bucket, key_name=key, value=data)


def _run_export(export: _Export, items: list[dict[str, Any]], region: str) -> None:
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    time.sleep(float(settings["export_delay_seconds"]))
    s3_backend = s3_backends[export.account_id][get_partition(region)]
    try:
        if export.request.bucket not in s3_backend.buckets:
            export.failure_code = "S3NoSuchBucket"
            export.failure_message = "The specified bucket does not exist"
            export.status = "FAILED"
            return
        summary = write_export(export.request, items, _MotoS3Sink(s3_backend, export.request.bucket))
        export.item_count = summary.item_count
        export.billed_size_bytes = summary.billed_size_bytes
        export.status = "COMPLETED"
    except Exception as exc:  # a failed export is reported through DescribeExport, never lost
        export.failure_code = "UNKNOWN"
        export.failure_message = f"{type(exc).__name__}: {exc}"
        export.status = "FAILED"
    finally:
        export.end_time = datetime.now(timezone.utc)


def _describe_export(handler: DynamoHandler) -> dict[str, Any]:
    arn = handler.body.get("ExportArn", "")
    if "/export/" not in arn:
        raise _error("ValidationException", "Invalid Export ARN")
    export = _exports(handler.dynamodb_backend).get(arn)
    if export is None:
        raise _error("ExportNotFoundException", f"Export not found: {arn}")
    return export.description()


def _list_exports(handler: DynamoHandler) -> dict[str, Any]:
    body = handler.body
    table_arn = body.get("TableArn")
    max_results = int(body.get("MaxResults", 25))
    if not 1 <= max_results <= 25:
        raise _error("ValidationException", "MaxResults must be between 1 and 25")
    exports = [e for e in _exports(handler.dynamodb_backend).values()
               if table_arn is None or e.request.table_arn == table_arn]
    exports.sort(key=lambda e: e.request.export_arn)
    start = 0
    if body.get("NextToken"):
        try:
            start = int(base64.urlsafe_b64decode(body["NextToken"]).decode())
        except ValueError:
            raise _error("ValidationException", "Invalid NextToken") from None
    page = exports[start:start + max_results]
    result: dict[str, Any] = {"ExportSummaries": [
        {"ExportArn": e.request.export_arn, "ExportStatus": e.status, "ExportType": "FULL_EXPORT"} for e in page
    ]}
    if start + max_results < len(exports):
        result["NextToken"] = base64.urlsafe_b64encode(str(start + max_results).encode()).decode()
    return result


# ---------------------------------------------------------------------------------------------
# Athena: GetQueryResults pages like AWS (MaxResults up to 1000, NextToken); moto returns one page.


def _paged_query_results(handler: Any) -> str:
    exec_id = handler._get_param("QueryExecutionId")
    max_results = int(handler._get_param("MaxResults") or 1000)
    if not 1 <= max_results <= 1000:
        raise JsonRESTError("InvalidRequestException", "MaxResults must be between 1 and 1000")
    token = handler._get_param("NextToken")
    start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
    document = handler.athena_backend.get_query_results(exec_id).to_dict()
    rows = document["ResultSet"]["Rows"]
    document["ResultSet"]["Rows"] = rows[start:start + max_results]
    if start + max_results < len(rows):
        document["NextToken"] = base64.urlsafe_b64encode(str(start + max_results).encode()).decode()
    return json.dumps(document)


_request = threading.local()  # what the Athena request being handled on this thread tells the backend


def _server_endpoint(handler: Any) -> str | None:
    """``http://host:port`` this server listens on, from the WSGI environment; None outside a server."""
    environ = getattr(getattr(handler, "normalized_request", None), "environ", None) or {}
    host, port = environ.get("SERVER_NAME"), environ.get("SERVER_PORT")
    if not host or not port:
        return None
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: loopback reaches it
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _wrap_athena_execution() -> None:
    """Queries with no queued result run for real (local/athena_sql.py); results, failures and
    bytes scanned show through the ordinary API."""
    from moto.athena.models import AthenaBackend, QueryResults
    from moto.athena.responses import AthenaResponse

    from ddb_assets.local.athena_sql import LocalAthena, results_for

    original_start = AthenaBackend.start_query_execution
    original_describe = AthenaResponse.get_query_execution
    original_response_start = AthenaResponse.start_query_execution

    def response_start_query_execution(self: Any) -> Any:
        # The backend call below does not see the request; an Iceberg CTAS needs the server's own
        # address to write through pyiceberg's GlueCatalog (local/iceberg_catalog.py).
        _request.endpoint = _server_endpoint(self)
        try:
            return original_response_start(self)
        finally:
            _request.endpoint = None

    def start_query_execution(self: Any, query: str, context: Any, config: Any, workgroup: Any,
                              execution_parameters: Any) -> str:
        exec_id = original_start(self, query, context, config, workgroup, execution_parameters)
        if exec_id in self.query_results or query.lstrip().upper().startswith(("DROP ", "CREATE DATABASE",
                                                                               "CREATE SCHEMA")):
            return exec_id  # a result queued through moto's API, or DDL moto already handled
        execution = self.executions[exec_id]
        database = (context or {}).get("Database") if isinstance(context, dict) else None
        try:
            athena = LocalAthena(self.account_id, self.region_name, endpoint=getattr(_request, "endpoint", None))
            table, scanned = athena.execute(query, database)
        except Exception as exc:  # the query failed, as Athena would report it
            execution.status = "FAILED"
            execution._ddb_assets_reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            return exec_id
        execution._ddb_assets_scanned = scanned
        rows, columns = results_for(table) if table is not None else ([], [])
        self.query_results[exec_id] = QueryResults(rows=rows, column_info=columns)
        return exec_id

    def get_query_execution(self: Any) -> str:
        document = json.loads(original_describe(self))
        execution = self.athena_backend.executions.get(document["QueryExecution"]["QueryExecutionId"])
        if execution is not None and hasattr(execution, "_ddb_assets_reason"):
            document["QueryExecution"]["Status"]["StateChangeReason"] = execution._ddb_assets_reason
        if execution is not None and hasattr(execution, "_ddb_assets_scanned"):
            document["QueryExecution"]["Statistics"]["DataScannedInBytes"] = execution._ddb_assets_scanned
        return json.dumps(document)

    AthenaBackend.start_query_execution = start_query_execution  # type: ignore[method-assign]
    AthenaResponse.start_query_execution = response_start_query_execution  # type: ignore[method-assign]
    AthenaResponse.get_query_execution = get_query_execution  # type: ignore[method-assign]


_INSTALLED = threading.Lock()
_installed = False


def install() -> None:
    """Replace moto's export API with the faithful one, and close moto's other gaps (Athena runs
    queries, Glue checks table versions). Idempotent; call before serving requests."""
    global _installed
    with _INSTALLED:
        if _installed:
            return
        _wrap_writes()
        DynamoHandler.export_table_to_point_in_time = (  # type: ignore[method-assign]
            lambda self: ActionResult({"ExportDescription": _start_export(self)}))
        DynamoHandler.describe_export = (  # type: ignore[method-assign]
            lambda self: ActionResult({"ExportDescription": _describe_export(self)}))
        DynamoHandler.list_exports = lambda self: ActionResult(_list_exports(self))  # type: ignore[method-assign]
        from moto.athena.responses import AthenaResponse

        AthenaResponse.get_query_results = _paged_query_results  # type: ignore[method-assign]
        _wrap_athena_execution()
        glue_versions.install()
        _installed = True


__all__ = ["install", "settings", "dynamodb_backends"]
