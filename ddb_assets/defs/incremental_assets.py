"""Incremental exports as a time-window-partitioned asset: one export per closed window."""


from datetime import datetime, timezone
from typing import Any

import dagster as dg

from ddb_assets.aws.dynamodb_exports import ExportFailed, export_id_of
from ddb_assets.aws.resources import DynamoDBResource
from ddb_assets.defs.names import TableNames


def window_partitions(names: TableNames) -> dg.TimeWindowPartitionsDefinition:
    settings = names.table.incremental
    assert settings is not None
    start = datetime.fromisoformat(settings.start.replace("Z", "+00:00"))
    return dg.TimeWindowPartitionsDefinition(cron_schedule=settings.cron, start=start.astimezone(timezone.utc),
                                             fmt="%Y-%m-%dT%H:%M", timezone="UTC", end_offset=settings.future_windows)


def build_incremental_export(names: TableNames) -> dg.AssetsDefinition:
    settings = names.table.incremental
    assert settings is not None
    table = names.table

    @dg.asset(key=names.incremental_export_key, deps=[names.source_key], partitions_def=window_partitions(names),
              kinds={"dynamodb", "s3"}, group_name=names.group, owners=table.owners,
              # The window's export starts once the window has closed: at each cron tick, the
              # window that just ended.
              automation_condition=dg.AutomationCondition.on_cron(settings.cron),
              description=f"An incremental export of `{table.table}` per {settings.window} window "
                          f"(ExportType INCREMENTAL_EXPORT, view {settings.view}): only what changed; the lake "
                          f"table merges the windows in order.")
    def incremental_export(context: dg.AssetExecutionContext, dynamodb: DynamoDBResource) -> dg.MaterializeResult:
        window = context.partition_time_window
        start, end = window.start.astimezone(timezone.utc), window.end.astimezone(timezone.utc)
        # A window that has not closed yet is refused by DynamoDB (ExportToTime in the future),
        # with its own message: DynamoDB's clock is the one that counts.
        table_arn = dynamodb.table_arn(table.table)
        # One token per window: retries and re-executions return the same export.
        token = f"dagster-{names.name}-{start.strftime('%Y%m%dT%H%M')}"[:64]
        from botocore.exceptions import ClientError

        try:
            started = dynamodb.start_export(table_arn=table_arn, bucket=table.export_bucket, prefix=table.prefix,
                                            export_format=table.export_format, client_token=token,
                                            incremental=(start, end), view=settings.view)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise dg.Failure(f"DynamoDB refused the export of the window {start.isoformat()} to {end.isoformat()}: "
                             f"{error.get('Code')}: {error.get('Message')}",
                             metadata={"code": str(error.get("Code"))}) from None
        context.log.info(f"incremental export started: {started['ExportArn']} ({start.isoformat()} to "
                         f"{end.isoformat()})")
        description = started
        if names.settings.wait_for_export(table):
            try:
                description = dynamodb.wait_for_export(
                    started["ExportArn"],
                    on_poll=lambda d, t: context.log.info(f"export {d['ExportStatus']} after {t:.0f}s"))
            except ExportFailed as exc:
                raise dg.Failure(str(exc), metadata={"failure_code": exc.description.get("FailureCode"),
                                                     "export_arn": exc.description["ExportArn"]}) from None
        metadata: dict[str, Any] = {
            "export_arn": description["ExportArn"], "export_id": export_id_of(description["ExportArn"]),
            "status": description["ExportStatus"], "export_from_time": start.isoformat(),
            "export_to_time": end.isoformat(), "view": settings.view, "client_token": token}
        if description.get("ItemCount") is not None:
            metadata["changes"] = description["ItemCount"]
        return dg.MaterializeResult(metadata=metadata)

    return incremental_export
