"""Run the whole Dagster graph in process against a local world: what `ddb-assets demo` does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import dagster as dg

from ddb_assets.definitions import build_definitions
from ddb_assets.defs.names import TableNames
from ddb_assets.settings import Settings, TableSettings


def local_settings(endpoint: str, lake_root: str, table: str = "reviews", bucket: str = "ddb-exports",
                   **overrides: Any) -> Settings:
    return Settings(profile="local", lake_root=lake_root, aws={"region": "us-east-1", "endpoint_url": endpoint},
                    tables=[TableSettings(table=table, export_bucket=bucket, export_prefix=f"exports/{table}")],
                    **overrides)


@dataclass
class PipelineRun:
    export_id: str
    partitions: list[str]
    names: TableNames
    report_keys: list[dg.AssetKey]


def run_pipeline(settings: Settings, instance: dg.DagsterInstance,
                 log: Callable[[str], None] = lambda message: None, quiet: bool = False) -> PipelineRun:
    """pitr_export -> export sensor tick -> raw_export -> parquet (one single-run backfill) -> reports."""
    defs = build_definitions(settings)
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}} if quiet else None

    def materialize(assets: list[dg.AssetsDefinition], **kwargs: Any) -> dg.ExecuteInProcessResult:
        return dg.materialize(assets, instance=instance, resources=resources, run_config=run_config, **kwargs)

    names = TableNames(settings, settings.tables[0])
    resources = defs.resources
    by_key = {a.key: a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)}

    log("materializing pitr_export (starts the export and waits for it)")
    result = materialize([by_key[names.pitr_export_key]])
    [materialization] = result.asset_materializations_for_node(_node(names.pitr_export_key))
    export_id = materialization.metadata["export_id"].value

    log("evaluating the export completion sensor")
    sensor = defs.resolve_sensor_def(f"{names.name}_export_completion_sensor")
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs, resources=resources) as context:
        tick = sensor.evaluate_tick(context)
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    assert export_id in [r.partition_key for r in tick.run_requests], "the sensor did not pick up the export"

    log(f"materializing raw_export for export {export_id}")
    materialize([by_key[names.raw_export_key]], partition_key=export_id)
    partitions = names.value_partitions.get_partition_keys(dynamic_partitions_store=instance)

    log(f"materializing parquet: {len(partitions)} partitions in one run")
    materialize([by_key[names.raw_export_key], by_key[names.parquet_key]], selection=[names.parquet_key],
                tags={"dagster/asset_partition_range_start": partitions[0],
                         "dagster/asset_partition_range_end": partitions[-1]})

    report_keys = [k for k in by_key if k.path[0] == names.name and k not in
                   (names.pitr_export_key, names.raw_export_key, names.parquet_key)]
    log(f"materializing {len(report_keys)} report tables")
    materialize([by_key[names.parquet_key], *(by_key[k] for k in report_keys)], selection=report_keys)
    return PipelineRun(export_id, partitions, names, report_keys)


def _node(key: dg.AssetKey) -> str:
    return "__".join(key.path)
