"""``ddb-assets demo``: the whole path on the local world, no AWS account needed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from ddb_assets.local.loader import batch_write
from ddb_assets.local.sample_data import TABLE_NAME, ReviewGenerator
from ddb_assets.local.tables import create_reviews_table, ensure_bucket
from ddb_assets.local.world import LocalWorld

EXPORT_BUCKET = "ddb-exports"


@dataclass
class DemoExport:
    table_arn: str
    description: dict[str, Any]
    objects: list[tuple[str, int]]  # (key, size) below the export folder


def load_sample_table(world: LocalWorld, items: int, seed: int, console: Console, table: str = TABLE_NAME) -> str:
    """Create the reviews table (PITR on) and the export bucket, and load ``items`` sample reviews."""
    ddb = world.client("dynamodb")
    arn = create_reviews_table(ddb, table)
    ensure_bucket(world.client("s3"), EXPORT_BUCKET, world.region)
    with _progress(console) as progress:
        task = progress.add_task(f"loading {table}", total=items)
        batch_write(ddb, table, ReviewGenerator(items, seed=seed), lambda n: progress.advance(task, n))
    return arn


def print_export(console: Console, export: DemoExport) -> None:
    d = export.description
    summary = Table(title="export summary", show_header=False)
    for key in ("ExportArn", "ExportStatus", "ExportFormat", "ExportTime", "ItemCount", "BilledSizeBytes",
                "ExportManifest"):
        summary.add_row(key, str(d.get(key)))
    console.print(summary)
    tree = Tree(f"s3://{EXPORT_BUCKET}/{d['ExportManifest'].rsplit('/', 1)[0]}/")
    for key, size in sorted(export.objects):
        tree.add(f"{key}  [dim]{size:,} bytes[/]")
    console.print(tree)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def run_demo(console: Console, *, items: int = 3000, seed: int = 7, export_format: str = "DYNAMODB_JSON",
             lake_root: str = "var/lake") -> dict[str, Any]:
    """The whole graph through Dagster, in process: export, validate, convert, report."""
    import tempfile

    import dagster as dg

    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.catalog import load_table, open_catalog
    from ddb_assets.local.pipeline import local_settings, run_pipeline
    from ddb_assets.settings import TableSettings

    lake = os.path.abspath(lake_root)
    with LocalWorld() as world, tempfile.TemporaryDirectory(prefix="ddb-assets-dagster-") as home:
        console.print(f"local AWS world at [bold]{world.endpoint}[/] (moto server with faithful exports)")
        load_sample_table(world, items, seed, console)
        settings = local_settings(world.endpoint, lake)
        if export_format != "DYNAMODB_JSON":
            settings = settings.model_copy(update={"tables": [TableSettings(
                table=TABLE_NAME, export_bucket=EXPORT_BUCKET, export_prefix=f"exports/{TABLE_NAME}",
                export_format=export_format)]})
        with dg.DagsterInstance.local_temp(home) as instance:
            # print, not console.log: a log line carries its time and demo.py:NN, which are noise here.
            run = run_pipeline(settings, instance, quiet=True,
                               log=lambda message: console.print(message, highlight=False, markup=False))
            export = _describe_demo_export(world, run.export_id, instance, run)
        print_export(console, export)
        reports = {}
        catalog = open_catalog(settings.catalog.config(), resolve(lake))
        for report in ("top_customers", "most_reviewed_products", "reviews_per_year"):
            table = load_table(catalog, settings.catalog.namespace, run.names.report_table(report)).scan().to_arrow()
            reports[report] = table
            rich_table = Table(title=f"{report} ({table.num_rows} rows; first 10)")
            for column in table.column_names:
                rich_table.add_column(column)
            for row in table.slice(0, 10).to_pylist():
                rich_table.add_row(*("" if v is None else str(v) for v in row.values()))
            console.print(rich_table)
        lake_table = load_table(catalog, settings.catalog.namespace, run.names.name)
        console.print(f"lake: {lake} (Iceberg table {settings.catalog.namespace}.{run.names.name}: "
                      f"{len(run.partitions)} partitions by year; catalog {os.path.join(lake, 'catalog.db')})",
                      highlight=False, soft_wrap=True, markup=False)
        console.print(f"metadata: {lake_table.metadata_location}", highlight=False, soft_wrap=True, markup=False)
        return {"export_id": run.export_id, "partitions": run.partitions, "lake": lake, "reports": reports}


def _describe_demo_export(world: LocalWorld, export_id: str, instance: Any, run: Any) -> DemoExport:
    ddb = world.client("dynamodb")
    table_arn = ddb.describe_table(TableName=TABLE_NAME)["Table"]["TableArn"]
    done = ddb.describe_export(ExportArn=f"{table_arn}/export/{export_id}")["ExportDescription"]
    folder = done["ExportManifest"].rsplit("/", 1)[0]
    listing = world.client("s3").list_objects_v2(Bucket=EXPORT_BUCKET, Prefix=folder + "/")
    return DemoExport(table_arn, done, [(o["Key"][len(folder) + 1:], o["Size"]) for o in listing.get("Contents", [])])
