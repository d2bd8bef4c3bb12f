"""Sensors: exports completing (wherever they were started), and publications refreshing reports."""


import json
from typing import Any

import dagster as dg

from ddb_assets.aws.dynamodb_exports import export_id_of
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
        # The cursor holds every export id already handled (completed or failed), so restarts and
        # repeated ticks never request the same export twice nor retry a failure forever.
        handled: set[str] = set(json.loads(context.cursor)["handled"]) if context.cursor else set()
        table_arn = dynamodb.table_arn(names.table.table)
        completed, failed, listed = [], [], set()
        for summary in dynamodb.list_exports(table_arn):
            export_id = export_id_of(summary["ExportArn"])
            listed.add(export_id)
            if export_id in handled:
                continue
            if summary["ExportStatus"] == "COMPLETED":
                completed.append(export_id)
            elif summary["ExportStatus"] == "FAILED":
                failed.append(dynamodb.describe_export(summary["ExportArn"]))
        completed.sort()  # ids start with the start time in ms: chronological
        events = []
        for description in failed:
            message = (f"export {description['ExportArn']} FAILED: {description.get('FailureCode')}: "
                       f"{description.get('FailureMessage')}")
            context.log.error(message)
            events.append(dg.AssetObservation(asset_key=names.pitr_export_key, metadata={
                "export_arn": description["ExportArn"], "status": "FAILED",
                "failure_code": str(description.get("FailureCode")),
                "failure_message": str(description.get("FailureMessage"))}))
        # ListExports forgets exports after 90 days: forget them here too, so the cursor stays small.
        new_handled = (handled & listed) | set(completed) | {export_id_of(d["ExportArn"]) for d in failed}
        cursor = json.dumps({"handled": sorted(new_handled)})
        if not completed and not failed:
            return dg.SensorResult(skip_reason="no newly finished exports", cursor=cursor)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=export_id, run_key=export_id) for export_id in completed],
            dynamic_partitions_requests=[names.export_partitions.build_add_request(completed)] if completed else [],
            asset_events=events,
            cursor=cursor,
        )

    return export_completion_sensor


def build_reports_sensor(names: TableNames, reports_job: Any) -> dg.SensorDefinition:
    local = names.settings.profile == "local"

    @dg.asset_sensor(
        asset_key=names.parquet_key,
        job=reports_job,
        name=f"{names.name}_reports_sensor",
        minimum_interval_seconds=names.settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if local else dg.DefaultSensorStatus.STOPPED,
        description="Refreshes the report tables once per publication of the Parquet table.",
    )
    def reports_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry) -> dg.RunRequest:
        # A backfill of N partitions in one run publishes once but records N materializations: keyed
        # by that run, they all map to a single report run.
        return dg.RunRequest(run_key=f"publication-{asset_event.run_id}",
                             tags={"ddb_assets/publication_run": asset_event.run_id})

    return reports_sensor
