"""Table maintenance as an op job on a schedule: compact small files, expire snapshots, remove orphans
(and abort stale incomplete multipart uploads)."""


from datetime import timedelta
from typing import Any

import dagster as dg

from ddb_assets.aws.resources import LakeResource
from ddb_assets.defs.names import TableNames
from ddb_assets.lake.change_history import SUFFIX as HISTORY_SUFFIX
from ddb_assets.lake.maintenance import MaintenanceOptions, MaintenanceResult, maintain
from ddb_assets.lake.scratch import remove_stale_scratch


def build_maintenance(names: TableNames) -> tuple[dg.JobDefinition, list[dg.ScheduleDefinition]]:
    settings = names.settings.maintenance

    @dg.op(name=f"{names.name}_maintain",
           description=f"Compact small files, expire snapshots older than {settings.expire_after_days:g} days "
                       f"(keeping {settings.keep_snapshots}) and remove orphan files of `{names.name}` (on S3, its "
                       "stale incomplete multipart uploads too), and the scratch folders of conversions that "
                       "were killed.")
    def maintain_table(context: dg.OpExecutionContext, lake: LakeResource) -> None:
        # Scratch of conversions that were killed (the next conversion removes it too).
        for removed in remove_stale_scratch(names.settings.convert_work_dir):
            context.log.info(f"removed the scratch folder {removed.path} ({removed.bytes:,} bytes): {removed.reason}")
        table = lake.table(names.name)
        if table is None:
            context.log.info(f"{names.name} has no snapshot yet: nothing to maintain")
            return
        options = MaintenanceOptions(expire_after=timedelta(days=settings.expire_after_days),
                                     keep_snapshots=settings.keep_snapshots,
                                     grace=timedelta(hours=settings.orphan_grace_hours),
                                     small_file_bytes=settings.small_file_bytes)
        result = maintain(table, options, lake.s3_options(), progress=context.log.info)
        metadata = _observed(result, table, "maintenance")
        errors = [result.uploads_error] if result.uploads_error else []
        # The change history (<table>_changes) gets one small file per window applied: it is kept
        # by the same policy, in the same run (its rows are never removed by maintenance).
        history_name = names.name + HISTORY_SUFFIX
        history = lake.table(history_name)
        if history is not None:
            kept = maintain(history, options, lake.s3_options(),
                            progress=lambda said: context.log.info(f"{history_name}: {said}"))
            metadata.update(_observed(kept, history, "maintenance/history"))
            errors += [kept.uploads_error] if kept.uploads_error else []
        context.log_event(dg.AssetObservation(asset_key=names.parquet_key, metadata=metadata))
        if errors:  # the rest is done and recorded above; the run fails for what is not
            raise dg.Failure("; ".join(errors))

    @dg.job(name=names.maintenance_job, description=f"Maintenance of the lake table `{names.name}`.")
    def maintenance_job() -> None:
        maintain_table()

    schedules = []
    if settings.schedule:
        schedules.append(dg.ScheduleDefinition(
            name=f"{names.name}_maintenance_schedule", job=maintenance_job, cron_schedule=settings.schedule,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Runs the table's maintenance (turn it on in the UI)."))
    return maintenance_job, schedules


def _observed(result: MaintenanceResult, table: Any, prefix: str) -> dict[str, Any]:
    """The observation's metadata of one table's maintenance, keys under ``prefix``."""
    return {
        f"{prefix}/expired_snapshots": len(result.expired_snapshots),
        f"{prefix}/orphans_removed": len(result.orphans),
        f"{prefix}/orphan_bytes": result.orphan_bytes,
        f"{prefix}/uploads_aborted": len(result.aborted_uploads),
        f"{prefix}/partitions_compacted": dg.MetadataValue.json(
            {k: {"files_before": v[0], "files_after": v[1]} for k, v in result.compacted.items()}),
        f"{prefix}/position_delete_files_folded": result.folded_delete_files,
        ("snapshot_id" if prefix == "maintenance" else f"{prefix}/snapshot_id"):
            str(table.current_snapshot().snapshot_id) if table.current_snapshot() else "",
    }
