"""Drive the Dagster graph in process against a local world, as the deployed sensors and automation
would: what `ddb-assets demo` (full export) and `ddb-assets demo --incremental` (windows) do."""

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


class LocalDagster:
    """The definitions users deploy (``build_definitions``) for the first table of ``settings``,
    materialized in process into ``instance``; each step is one Dagster run, recorded there as the
    UI shows it. Failed runs raise (``dg.materialize``'s default), with Dagster's error."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance, quiet: bool = False):
        self.settings, self.instance = settings, instance
        self.defs = build_definitions(settings)
        self.names = TableNames(settings, settings.tables[0])
        self.assets = {a.key: a for a in self.defs.assets or [] if isinstance(a, dg.AssetsDefinition)}
        # The table's standalone checks by name (incremental tables: freshness, reconciliation).
        self.checks = {spec.key.name: c for c in self.defs.asset_checks or [] for spec in c.check_specs}
        self.run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}} \
            if quiet else {}
        self.sensor_cursor: str | None = None  # kept between ticks, as the daemon keeps it

    def materialize(self, keys: list[Any], selection: list[dg.AssetKey] | None = None,
                    config: dict[str, Any] | None = None, log_level: str | None = None,
                    **kwargs: Any) -> dg.ExecuteInProcessResult:
        """One run of ``selection`` (default: ``keys``, asset keys or check definitions), with the
        checks given that target it; ``config``: op config by asset key; ``log_level``: the console's
        for this run (the event log, which the UI shows, keeps every level)."""
        run_config = {**self.run_config, **({"ops": {node_name(k): {"config": c} for k, c in config.items()}}
                                            if config else {})}
        if log_level:
            run_config["loggers"] = {"console": {"config": {"log_level": log_level}}}
        definitions = [self.assets[k] if isinstance(k, dg.AssetKey) else k for k in keys]
        return dg.materialize(definitions, selection=selection, instance=self.instance,
                              resources=self.defs.resources, run_config=run_config or None, **kwargs)

    def node_metadata(self, result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
        """The values of the first materialization of ``key`` in ``result`` (one per partition: the
        same metadata)."""
        return {k: v.value for k, v in result.asset_materializations_for_node(node_name(key))[0].metadata.items()}

    def completion_sensor_tick(self) -> list[str]:
        """Evaluate the export completion sensor once; register the exports it found as raw_export
        partitions and keep its cursor (as the daemon does with its result), and return the ids of
        the exports newly completed since the previous tick, oldest first."""
        sensor = self.defs.resolve_sensor_def(f"{self.names.name}_export_completion_sensor")
        with dg.build_sensor_context(instance_ref=self.instance.get_ref(), cursor=self.sensor_cursor,
                                     definitions=self.defs,
                                     resources=self.defs.resources) as context:
            tick = sensor.evaluate_tick(context)
        self.sensor_cursor = tick.cursor
        for request in tick.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return [r.partition_key for r in tick.run_requests if r.partition_key is not None]

    def validate(self, export_id: str) -> dg.ExecuteInProcessResult:
        """raw_export of one export: checked, profiled and staged (its checks in the same run)."""
        return self.materialize([self.names.raw_export_key], partition_key=export_id)

    def lake_table(self, rebuild: bool = False, checks: tuple[str, ...] = (),
                   log_level: str | None = None) -> dg.ExecuteInProcessResult:
        """parquet over every value partition in one run (a single-run backfill, as automation starts
        it), with its own checks and the standalone ``checks`` named (evaluated after it, in the run)."""
        names = self.names
        partitions = self.partitions()
        return self.materialize([names.raw_export_key, names.parquet_key, *(self.checks[c] for c in checks)],
                                selection=[names.parquet_key],
                                config={names.parquet_key: {"rebuild": True}} if rebuild else None,
                                log_level=log_level,
                                tags={"dagster/asset_partition_range_start": partitions[0],
                                      "dagster/asset_partition_range_end": partitions[-1]})

    def partitions(self) -> list[str]:
        return self.names.value_partitions.get_partition_keys(dynamic_partitions_store=self.instance)

    def run_checks(self, job: str) -> list[Any]:
        """Run a checks-only job (``<table>_freshness_job``, ``<table>_reconcile_job``); returns its
        AssetCheckEvaluations."""
        result = self.defs.resolve_job_def(job).execute_in_process(instance=self.instance,
                                                                   run_config=self.run_config or None)
        return result.get_asset_check_evaluations()


def run_pipeline(settings: Settings, instance: dg.DagsterInstance,
                 log: Callable[[str], None] = lambda message: None, quiet: bool = False) -> PipelineRun:
    """pitr_export -> export sensor tick -> raw_export -> parquet (one single-run backfill) -> reports."""
    dagster = LocalDagster(settings, instance, quiet)
    names = dagster.names

    log("materializing pitr_export (starts the export and waits for it)")
    result = dagster.materialize([names.pitr_export_key])
    export_id = dagster.node_metadata(result, names.pitr_export_key)["export_id"]

    log("evaluating the export completion sensor")
    assert export_id in dagster.completion_sensor_tick(), "the sensor did not pick up the export"

    log(f"materializing raw_export for export {export_id}")
    dagster.validate(export_id)
    partitions = dagster.partitions()

    log(f"materializing parquet: {len(partitions)} partitions in one run")
    dagster.lake_table()

    keys = report_keys(dagster)
    log(f"materializing {len(keys)} report tables")
    refresh_reports(dagster)
    return PipelineRun(export_id, partitions, names, keys)


def report_keys(dagster: LocalDagster) -> list[dg.AssetKey]:
    """The table's report assets (every asset of the table but the export, validation and lake ones)."""
    names = dagster.names
    return [k for k in dagster.assets if k.path[0] == names.name and k not in
            (names.pitr_export_key, names.incremental_export_key, names.raw_export_key, names.parquet_key)]


def refresh_reports(dagster: LocalDagster) -> list[dg.AssetKey]:
    """Materialize the report tables from the lake table as it is (what the reports sensor requests
    after each commit); returns their keys."""
    keys = report_keys(dagster)
    if keys:
        dagster.materialize([dagster.names.parquet_key, *keys], selection=keys)
    return keys


def node_name(key: dg.AssetKey) -> str:
    """The op name Dagster gives an asset: its key's parts joined by ``__``."""
    return "__".join(key.path)
