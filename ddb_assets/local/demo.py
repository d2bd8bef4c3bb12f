"""``ddb-assets demo``: the whole path on the local world, no AWS account needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from ddb_assets.aws.dynamodb_exports import start_export, wait_for_export
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


def export_table(world: LocalWorld, table_arn: str, export_format: str, console: Console) -> DemoExport:
    ddb = world.client("dynamodb")
    started = start_export(ddb, table_arn=table_arn, bucket=EXPORT_BUCKET, prefix=f"exports/{TABLE_NAME}",
                           export_format=export_format)
    console.print(f"export started: [bold]{started['ExportArn']}[/] ({started['ExportStatus']})")
    done = wait_for_export(ddb, started["ExportArn"],
                           on_poll=lambda d, t: console.log(f"export {d['ExportStatus']} after {t:.1f}s"))
    folder = done["ExportManifest"].rsplit("/", 1)[0]
    listing = world.client("s3").list_objects_v2(Bucket=EXPORT_BUCKET, Prefix=folder + "/")
    objects = [(o["Key"][len(folder) + 1:], o["Size"]) for o in listing.get("Contents", [])]
    return DemoExport(table_arn, done, objects)


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


def run_demo(console: Console, *, items: int = 3000, seed: int = 7, export_format: str = "DYNAMODB_JSON") -> DemoExport:
    with LocalWorld() as world:
        console.print(f"local AWS world at [bold]{world.endpoint}[/] (moto server with faithful exports)")
        arn = load_sample_table(world, items, seed, console)
        export = export_table(world, arn, export_format, console)
        print_export(console, export)
        return export
