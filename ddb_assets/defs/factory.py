"""One table's assets, checks, jobs and sensors, from its configuration entry."""


import dagster as dg

from ddb_assets.defs.export_assets import build_pitr_export, build_raw_export, source_spec
from ddb_assets.defs.incremental_assets import build_incremental_export
from ddb_assets.defs.incremental_checks import build_incremental_checks
from ddb_assets.defs.lake_assets import build_parquet
from ddb_assets.defs.maintenance import build_maintenance
from ddb_assets.defs.names import TableNames
from ddb_assets.defs.report_assets import build_report_assets
from ddb_assets.defs.sensors import build_export_completion_sensor, build_reports_sensor
from ddb_assets.settings import Settings, TableSettings


def table_definitions(settings: Settings, table: TableSettings) -> dg.Definitions:
    names = TableNames(settings, table)
    pitr_export = build_pitr_export(names)
    raw_export = build_raw_export(names)
    parquet = build_parquet(names)
    reports = build_report_assets(names)
    incremental = [build_incremental_export(names)] if table.incremental is not None else []
    reports_job = dg.define_asset_job(names.reports_job, selection=[r.key for r in reports],
                                      description=f"Refresh the report tables of {names.name}.")
    automation = dg.AutomationConditionSensorDefinition(
        f"{names.name}_automation_sensor",
        target=dg.AssetSelection.assets(parquet, *incremental),
        default_status=dg.DefaultSensorStatus.RUNNING if settings.profile == "local" else dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        description="Re-materializes every lake table partition, as one single-run backfill, when a new valid "
                    "export lands; starts each incremental export once its window has closed.",
    )
    maintenance_job, maintenance_schedules = build_maintenance(names)
    checks, check_jobs, check_schedules = build_incremental_checks(names) if table.incremental else ([], [], [])
    return dg.Definitions(
        assets=[source_spec(names), pitr_export, *incremental, raw_export, parquet, *reports],
        asset_checks=checks,
        jobs=[reports_job, maintenance_job, *check_jobs],
        schedules=[*maintenance_schedules, *check_schedules],
        sensors=[build_export_completion_sensor(names, raw_export),
                 build_reports_sensor(names, reports_job, [r.key for r in reports]),
                 automation],
    )
