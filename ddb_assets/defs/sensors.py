"""Sensors: exports completing (wherever they were started), and publications refreshing reports."""


import json
from typing import Any

import dagster as dg

from ddb_assets.aws.dynamodb_exports import export_id_of, export_started_ms
from ddb_assets.aws.resources import DynamoDBResource
from ddb_assets.defs.names import TableNames


def build_export_completion_sensor(names: TableNames, raw_export: dg.AssetsDefinition) -> dg.SensorDefinition:
    local = names.settings.profile == "local"

    @dg.sensor(
        name=f"{names.name}_export_completion_sensor",
        target=raw_export,
        minimum_interval_seconds=names.settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if local else dg.DefaultSensorStatus.STOPPED,
        description=f"Polls ListExports for `{names.table.table}`: each newly COMPLETED export (started by "
                    "Dagster, the console or the CLI) becomes a raw_export partition and is validated; a FAILED "
                    "export is reported once with its failure code.",
    )
    def export_completion_sensor(context: dg.SensorEvaluationContext, dynamodb: DynamoDBResource) -> dg.SensorResult:
        # The cursor says which export ids were handled already (completed or failed), so restarts
        # and repeated ticks never request the same export twice nor retry a failure forever.
        handled = HandledExports.from_cursor(context.cursor)
        table_arn = dynamodb.table_arn(names.table.table)
        completed, failed, listed, in_flight = [], [], set(), []
        for summary in dynamodb.list_exports(table_arn):
            export_id = export_id_of(summary["ExportArn"])
            listed.add(export_id)
            if summary["ExportStatus"] == "IN_PROGRESS":
                in_flight.append(export_id)
            if export_id in handled:
                continue
            if summary["ExportStatus"] == "COMPLETED":
                completed.append(export_id)
            elif summary["ExportStatus"] == "FAILED":
                failed.append(dynamodb.describe_export(summary["ExportArn"]))
        completed.sort()  # ids start with the start time in ms: chronological
        events: list[Any] = _export_events(context.instance, names, dynamodb, table_arn, completed)
        for description in failed:
            message = (f"export {description['ExportArn']} FAILED: {description.get('FailureCode')}: "
                       f"{description.get('FailureMessage')}")
            context.log.error(message)
            events.append(dg.AssetObservation(asset_key=names.pitr_export_key, metadata={
                "export_arn": description["ExportArn"], "status": "FAILED",
                "failure_code": str(description.get("FailureCode")),
                "failure_message": str(description.get("FailureMessage"))}))
        cursor = handled.after_tick(listed, set(completed) | {export_id_of(d["ExportArn"]) for d in failed},
                                    in_flight).to_cursor()
        if not completed and not failed:
            return dg.SensorResult(skip_reason="no newly finished exports", cursor=cursor)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=export_id, run_key=export_id) for export_id in completed],
            dynamic_partitions_requests=[names.export_partitions.build_add_request(completed)] if completed else [],
            asset_events=events,
            cursor=cursor,
        )

    return export_completion_sensor


# Exports started this long before the newest one listed are taken to be listed by now (ListExports
# is eventually consistent: one started a moment before another may show up a moment after it).
LISTING_MARGIN_MS = 3600 * 1000


class HandledExports:
    """Which exports the completion sensor has handled, as its cursor keeps them: every export
    started before ``before`` (ms since the epoch) but those in ``waiting`` (still in flight when
    ``before`` passed them), and the ids in ``ids``.

    A tick lists every export of the table (ListExports keeps 90 days: at 15-minute windows about
    8,600), so the exports started before the oldest one in flight, and more than LISTING_MARGIN_MS
    before the newest one listed, are all finished and handled: the cursor keeps that instant
    instead of their ids. Kept as ids, the cursor (stored with every tick) grew to about 250 KB. A
    cursor of the older shape (``{"handled": [...]}``) is read as ids alone."""

    def __init__(self, ids: set[str], before: int = 0, waiting: set[str] | None = None):
        self.ids, self.before, self.waiting = ids, before, waiting or set()

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "HandledExports":
        if not cursor:
            return cls(set())
        document = json.loads(cursor)
        return cls(set(document.get("handled", [])), int(document.get("started_before_ms", 0)),
                   set(document.get("waiting", [])))

    def to_cursor(self) -> str:
        return json.dumps({"started_before_ms": self.before, "handled": sorted(self.ids),
                           "waiting": sorted(self.waiting)})

    def __contains__(self, export_id: str) -> bool:
        if export_id in self.ids:
            return True
        started = export_started_ms(export_id)
        return started is not None and started < self.before and export_id not in self.waiting

    def after_tick(self, listed: set[str], finished: set[str], in_flight: list[str]) -> "HandledExports":
        """The handled exports after a tick that listed ``listed``, handled ``finished`` and saw
        ``in_flight`` still running. Ids ListExports no longer lists (after 90 days) are dropped."""
        ids = {i for i in listed if i in self} | finished
        starts = [t for t in map(export_started_ms, listed) if t is not None]
        before = self.before
        if starts:
            # Never moved back: the ids it passed were dropped. An export in flight keeps it below
            # its start; one found in flight below it anyway (listed late) waits by its id.
            flying = [t for t in map(export_started_ms, in_flight) if t is not None and t >= self.before]
            before = max(before, min([max(starts) - LISTING_MARGIN_MS, *flying]))
        waiting = {i for i in in_flight if (export_started_ms(i) or before) < before}
        # An id of another shape stays an id; one started before ``before`` is covered by it.
        kept = {i for i in ids if export_started_ms(i) is None or export_started_ms(i) >= before}  # type: ignore[operator]
        return HandledExports(kept, before, waiting)

def _export_events(instance: dg.DagsterInstance, names: TableNames, dynamodb: DynamoDBResource, table_arn: str,
                   completed: list[str]) -> list[Any]:
    """pitr_export's record of exports completed outside Dagster (the console, the CLI, an SDK):
    a runless materialization, so the asset shows the latest export instead of staying grey. An
    export Dagster started without waiting (IN_PROGRESS then) gets an observation of its completion."""
    recorded: dict[str, str] = {}
    for record in instance.fetch_materializations(names.pitr_export_key, limit=100).records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        if "export_id" in metadata:
            status = metadata.get("status")
            recorded.setdefault(str(metadata["export_id"].value), str(status.value) if status is not None else "")
    table = names.table
    events: list[Any] = []
    for export_id in completed:
        if recorded.get(export_id) == "COMPLETED":
            continue
        description = dynamodb.describe_export(f"{table_arn}/export/{export_id}")
        metadata: dict[str, Any] = {
            "export_arn": description["ExportArn"], "export_id": export_id, "status": "COMPLETED",
            "export_time": str(description.get("ExportTime")),
            "s3_location": dg.MetadataValue.url(f"s3://{description.get('S3Bucket', table.export_bucket)}/"
                                                f"{description['ExportManifest'].rsplit('/', 1)[0]}/"),
        }
        if description.get("ItemCount") is not None:
            metadata["item_count"] = description["ItemCount"]
        if export_id in recorded:
            events.append(dg.AssetObservation(asset_key=names.pitr_export_key, metadata=metadata,
                                              description=f"export {export_id}, started by Dagster, completed"))
        else:
            metadata["started_by"] = "outside Dagster (console, CLI or SDK)"
            events.append(dg.AssetMaterialization(asset_key=names.pitr_export_key, metadata=metadata,
                                                  description=f"export {export_id}, started outside Dagster, "
                                                              "completed"))
    return events


def build_reports_sensor(names: TableNames, reports_job: Any, report_keys: list[dg.AssetKey]) -> dg.SensorDefinition:
    local = names.settings.profile == "local"

    @dg.asset_sensor(
        asset_key=names.parquet_key,
        job=reports_job,
        name=f"{names.name}_reports_sensor",
        minimum_interval_seconds=names.settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if local else dg.DefaultSensorStatus.STOPPED,
        description="Refreshes the report tables once per publication of the Parquet table (not one the "
                    "reports were materialized after already, nor a materialization that found the table up "
                    "to date and made no snapshot).",
    )
    def reports_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry) -> Any:
        # A sensor's first tick (no cursor: a new Dagster home, or `dev` after `make demo`) sees
        # the latest publication, which the reports may reflect already (the demo's own run):
        # no run then.
        # A materialization that found the table up to date made no snapshot: the reports show it already.
        materialization = asset_event.asset_materialization
        if materialization is not None and "up_to_date" in materialization.metadata:
            return dg.SkipReason(f"run {asset_event.run_id} found {names.name} up to date: no new snapshot to report")
        if _reports_reflect_latest(context.instance, names.parquet_key, report_keys):
            return dg.SkipReason("every report was materialized after the latest publication")
        # A backfill of N partitions in one run publishes once but records N materializations: keyed
        # by that run, they all map to a single report run.
        return dg.RunRequest(run_key=f"publication-{asset_event.run_id}",
                             tags={"ddb_assets/publication_run": asset_event.run_id})

    return reports_sensor


def _reports_reflect_latest(instance: dg.DagsterInstance, published: dg.AssetKey,
                            report_keys: list[dg.AssetKey]) -> bool:
    """Has every report a materialization after the latest one of ``published`` (by event log
    storage id, which only grows)?"""
    latest = instance.fetch_materializations(published, limit=1).records
    if not latest or not report_keys:
        return False
    after = latest[0].storage_id
    return all(instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
                                               limit=1).records for key in report_keys)
