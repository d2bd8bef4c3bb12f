"""Asset checks of a table fed by incremental exports: the high-water mark is fresh, and the merged
table equals a fresh full export (reconciliation, on demand or on a schedule)."""


import time
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from ddb_assets.aws.dynamodb_exports import ExportFailed
from ddb_assets.aws.resources import DynamoDBResource, LakeResource
from ddb_assets.defs.names import TableNames
from ddb_assets.lake.commit import high_water_mark, instant
from ddb_assets.lake.convert import convert_export
from ddb_assets.lake.reconcile import reconcile

FRESHNESS = "high_water_mark_fresh"
RECONCILIATION = "matches_fresh_full_export"


def build_incremental_checks(names: TableNames) -> tuple[list[dg.AssetChecksDefinition], list[dg.JobDefinition],
                                                         list[dg.ScheduleDefinition]]:
    """The two checks, a checks-only job running both, and its schedules (freshness every window;
    reconciliation by ``incremental.reconcile_schedule``, off unless set)."""
    settings = names.table.incremental
    assert settings is not None
    freshness = _freshness_check(names)
    reconciliation = _reconciliation_check(names)
    freshness_job = dg.define_asset_job(f"{names.name}_freshness_job", selection=dg.AssetSelection.checks(freshness),
                                        description=f"Check that {names.name}'s high-water mark keeps up.")
    reconcile_job = dg.define_asset_job(f"{names.name}_reconcile_job",
                                        selection=dg.AssetSelection.checks(reconciliation),
                                        description=f"Export {names.table.table} in full at {names.name}'s high-water "
                                                    f"mark and compare, item by item.")
    schedules = [dg.ScheduleDefinition(name=f"{names.name}_freshness_schedule", job=freshness_job,
                                       cron_schedule=settings.cron, default_status=dg.DefaultScheduleStatus.STOPPED,
                                       description="Runs the freshness check at each window's close.")]
    if settings.reconcile_schedule:
        schedules.append(dg.ScheduleDefinition(
            name=f"{names.name}_reconcile_schedule", job=reconcile_job, cron_schedule=settings.reconcile_schedule,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Reconciles the merged table with a fresh full export (a full export is billed on the "
                        "whole table: keep it rare)."))
    return [freshness, reconciliation], [freshness_job, reconcile_job], schedules


def _freshness_check(names: TableNames) -> dg.AssetChecksDefinition:
    settings = names.table.incremental
    assert settings is not None
    allowed = settings.max_lag_seconds

    @dg.asset_check(asset=names.parquet_key, name=FRESHNESS,
                    description=f"The table holds changes up to at most {allowed / 3600:g} h ago (the high-water "
                                "mark: the full export's time, then each applied window's end).")
    def high_water_mark_fresh(lake: LakeResource) -> dg.AssetCheckResult:
        table = lake.table(names.name)
        mark, export_id = high_water_mark(table) if table is not None else (None, None)
        if mark is None:
            return dg.AssetCheckResult(passed=False, metadata={"problem": f"{names.name} has no applied export yet"})
        lag = time.time() - instant(mark)
        return dg.AssetCheckResult(passed=lag <= allowed, metadata={
            "high_water_mark": mark, "export_id": export_id or "", "lag_seconds": round(lag, 1),
            "allowed_lag_seconds": allowed})

    return high_water_mark_fresh


def _reconciliation_check(names: TableNames) -> dg.AssetChecksDefinition:
    table_settings = names.table
    check_name = f"{names.name}_check"

    @dg.asset_check(asset=names.parquet_key, name=RECONCILIATION, blocking=False,
                    description=f"A full export of `{table_settings.table}` at the table's high-water mark, "
                                f"converted into `{check_name}`, holds exactly the same items (row count and every "
                                "attribute of every key). Costs a full export and a full read of both tables.")
    def matches_fresh_full_export(context: dg.AssetCheckExecutionContext, dynamodb: DynamoDBResource,
                                  lake: LakeResource) -> dg.AssetCheckResult:
        table = lake.table(names.name)
        mark, held = high_water_mark(table) if table is not None else (None, None)
        if table is None or mark is None:
            return dg.AssetCheckResult(passed=False, metadata={"problem": f"{names.name} has no applied export yet"})
        at = datetime.fromtimestamp(instant(mark), timezone.utc)
        from botocore.exceptions import ClientError

        try:
            started = dynamodb.start_export(
                table_arn=dynamodb.table_arn(table_settings.table), bucket=table_settings.export_bucket,
                prefix=f"{table_settings.prefix}/reconciliation", export_format=table_settings.export_format,
                export_time=at, client_token=f"reconcile-{names.name}-{int(instant(mark) * 1000)}"[:64])
            description = dynamodb.wait_for_export(
                started["ExportArn"], on_poll=lambda d, t: context.log.info(f"full export {d['ExportStatus']} after "
                                                                            f"{t:.0f}s"))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            # Typically: the mark left the 35-day point-in-time recovery window.
            return dg.AssetCheckResult(passed=False, metadata={
                "problem": f"DynamoDB refused a full export at {mark}: {error.get('Code')}: {error.get('Message')}"})
        except ExportFailed as exc:
            return dg.AssetCheckResult(passed=False, metadata={"problem": str(exc)})
        source = f"s3://{description['S3Bucket']}/{description['ExportManifest']}"
        context.log.info(f"converting the full export at {mark} into {check_name}")
        options = names.settings.convert_options(table_settings, s3=lake.s3_options(), catalog=lake.catalog_config(),
                                                 table_name=check_name, rebuild=True, partition_by=None)
        converted = convert_export(source, lake.location(check_name).uri, options)
        keys = table_settings.key_attributes or dynamodb.key_attributes(table_settings.table)
        found = reconcile(lake.table(names.name), converted.commit.table, keys,
                          work_dir=names.settings.convert_work_dir)
        context.log.info(found.describe())
        metadata: dict[str, Any] = {
            "result": found.describe(), "high_water_mark": mark, "merged_export": held or "",
            "full_export": description["ExportArn"], "table_rows": found.table_rows,
            "full_export_rows": found.reference_rows, "missing": found.missing, "extra": found.extra,
            "different": found.different, "duplicate_keys": found.duplicates,
            "check_table": converted.commit.metadata_location,
            "examples": dg.MetadataValue.json(found.examples)}
        return dg.AssetCheckResult(passed=found.equal, metadata=metadata)

    return matches_fresh_full_export
