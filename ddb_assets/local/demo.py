"""``ddb-assets demo``: the whole path on the local world, no AWS account needed."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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


class DemoRefused(RuntimeError):
    """The demo cannot run now: ``ddb-assets dev`` is serving the same Dagster home, or the home or
    the lake table holds changes later than now (left by ``demo --incremental``, whose clock runs ahead)."""


@contextmanager
def demo_dagster_home(dagster_home: str | None, command: str) -> Iterator[Path]:
    """The Dagster home ``make dev`` serves (``dagster_home``, default ``$DAGSTER_HOME`` or
    ``var/dagster``), prepared and locked for the demo's runs while the block runs. Raises
    DemoRefused while ``ddb-assets dev`` serves it (its sensors would act on the demo's runs)."""
    from ddb_assets.local.dev import DevLock, DevRefused, default_dagster_home, prepare_dagster_home

    home = prepare_dagster_home(Path(dagster_home) if dagster_home else default_dagster_home())
    try:
        lock = DevLock.acquire(home, {"pid": os.getpid(), "command": command})
    except DevRefused as exc:
        raise DemoRefused(f"{exc} (its sensors would act on the demo's runs)") from None
    try:
        yield home
    finally:
        lock.release()


def run_demo(console: Console, *, items: int = 3000, seed: int = 7, export_format: str = "DYNAMODB_JSON",
             lake_root: str = "var/lake", exports_root: str = "var/exports",
             dagster_home: str | None = None) -> dict[str, Any]:
    """The whole graph through Dagster, in process: export, validate, convert, report.

    Everything it makes stays: the lake (``lake_root``), a copy of the export (``exports_root``,
    laid out as ``<bucket>/<key>``: the local world dies with the demo), and the runs in the
    Dagster home ``make dev`` uses (``dagster_home``, default ``$DAGSTER_HOME`` or
    ``var/dagster``). Also writes the tables the AWS walkthrough's SQL names (``default.data``,
    ``default.ddbs3_parquetpartitioned__output_flat_partitioned``). Raises DemoRefused while
    ``ddb-assets dev`` serves the same home (its sensors would act on the demo's runs), and while
    the home or the lake table holds changes later than now (its export, made now, could not
    replace them).
    """
    import dagster as dg

    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.catalog import load_table, open_catalog
    from ddb_assets.lake.saved_profiles import load_profile
    from ddb_assets.local.pipeline import local_settings, run_pipeline
    from ddb_assets.local.walkthrough import FLAT_QUERY, FLAT_TABLE, NAMESPACE, RAW_QUERY, RAW_TABLE, \
        write_walkthrough_tables
    from ddb_assets.settings import TableSettings

    from ddb_assets.local.dev import default_dagster_home

    lake = os.path.abspath(lake_root)
    # Before anything is started or made (no world, no home, no lake folder): the endpoint is not used.
    refuse_what_is_ahead(local_settings("http://127.0.0.1:9", lake),
                         Path(dagster_home).absolute() if dagster_home else default_dagster_home())
    with demo_dagster_home(dagster_home, "ddb-assets demo") as home:
        with LocalWorld() as world:
            console.print(f"local AWS world at [bold]{world.endpoint}[/] (moto server with faithful exports)")
            settings = local_settings(world.endpoint, lake)
            load_sample_table(world, items, seed, console)
            if export_format != "DYNAMODB_JSON":
                settings = settings.model_copy(update={"tables": [TableSettings(
                    table=TABLE_NAME, export_bucket=EXPORT_BUCKET, export_prefix=f"exports/{TABLE_NAME}",
                    export_format=export_format)]})
            with dg.DagsterInstance.local_temp(str(home)) as instance:
                # print, not console.log: a log line carries its time and demo.py:NN, which are noise here.
                run = run_pipeline(settings, instance, quiet=True,
                                   log=lambda message: console.print(message, highlight=False, markup=False))
                export = _describe_demo_export(world, run.export_id, instance, run)
            kept = keep_export(world, export, exports_root)
    print_export(console, export)
    console.print(f"export kept in {shown_path(kept)} (inspect it: ddb-assets inspect {shown_path(kept)})",
                  highlight=False, soft_wrap=True, markup=False)
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
    known = load_profile(resolve(lake).join(run.names.lake_path), run.export_id)
    write_walkthrough_tables(kept, lake, known=known)
    report_count = len(run.report_keys)
    for line in (
        f"lake: {shown_path(lake)} (Iceberg table {settings.catalog.namespace}.{run.names.name}: "
        f"{len(run.partitions)} partitions by year, {report_count} report tables; catalog "
        f"{shown_path(os.path.join(lake, 'catalog.db'))})",
        f"metadata: {lake_table.metadata_location}",
        f"the AWS walkthrough's tables: {NAMESPACE}.{RAW_TABLE} (the export's items) and {NAMESPACE}.{FLAT_TABLE}",
        f"  ddb-assets query '{RAW_QUERY}'",
        dagster_runs_line(home, dagster_home),
    ):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    return {"export_id": run.export_id, "partitions": run.partitions, "lake": lake, "reports": reports,
            "export_folder": kept, "dagster_home": str(home), "report_count": report_count,
            "walkthrough_queries": (RAW_QUERY, FLAT_QUERY)}


def refuse_what_is_ahead(settings: Any, home: Path) -> None:
    """Raises DemoRefused, in one line, when the Dagster home ``home`` holds a validated export, or the
    lake table a high-water mark, later than now. ``demo --incremental`` leaves both (its clock runs
    ahead): the lake table orders exports by time, so it would take that export (from a world that
    is gone) over this demo's export made now, or refuse this one after the export and the
    validation had run. Checked before anything is made: a home that does not exist is not created.
    The ways out it names are for what holds changes ahead only (another --dagster-home for the
    home, another --lake for the lake, or removing those)."""
    import time

    import dagster as dg

    from ddb_assets.definitions import build_resources
    from ddb_assets.defs.export_assets import validated_exports
    from ddb_assets.defs.names import TableNames
    from ddb_assets.lake.record import high_water_mark, instant

    names = TableNames(settings, settings.tables[0])
    ahead: list[tuple[float, str, str]] = []  # (instant, the time as written, what holds it)
    holders: list[tuple[str, str]] = []  # (the option that avoids it, the folder that holds it)
    if home.is_dir():
        with dg.DagsterInstance.local_temp(str(home)) as instance:
            for export in validated_exports(instance, names):
                if export.mark and instant(export.mark) > time.time():
                    ahead.append((instant(export.mark), export.mark, f"the Dagster home {shown_path(str(home))} "
                                                                     f"holds validated export {export.export_id}, "
                                                                     f"with changes"))
        if ahead:
            holders.append(("--dagster-home", shown_path(str(home))))
    table = build_resources(settings)["lake"].table(names.name)
    mark = high_water_mark(table)[0] if table is not None else None
    if mark and instant(mark) > time.time():
        ahead.append((instant(mark), mark, f"{settings.catalog.namespace}.{names.name} in "
                                           f"{shown_path(settings.lake_root)} holds changes"))
        holders.append(("--lake", shown_path(settings.lake_root)))
    if not ahead:
        return
    # The latest; on a tie the home's export (listed first): it is what the lake table would take.
    _, until, what = max(ahead, key=lambda a: a[0])
    raise DemoRefused(f"{what} up to {until}, later than now (`ddb-assets demo --incremental` left it: its clock "
                      f"runs ahead), so this demo's export, made now, could not replace it: run the demo after "
                      f"{until}, give it {' and '.join(f'another {option}' for option, _ in holders)}, or remove "
                      f"{' and '.join(folder for _, folder in holders)}")


def keep_export(world: LocalWorld, export: DemoExport, exports_root: str) -> str:
    """Copy the export's objects out of the local world to ``<exports_root>/<bucket>/<key>``;
    returns the export folder (``.../AWSDynamoDB/<export id>/``), which ``inspect`` and ``convert`` read."""
    s3 = world.client("s3")
    folder = export.description["ExportManifest"].rsplit("/", 1)[0]
    target = os.path.join(os.path.abspath(exports_root), EXPORT_BUCKET, *folder.split("/"))
    for key, _ in export.objects:
        path = os.path.join(target, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(EXPORT_BUCKET, f"{folder}/{key}", path)
    return target + os.sep


def keep_exports(world: LocalWorld, prefix: str, exports_root: str) -> str:
    """Copy every object below ``prefix`` in the export bucket out of the local world to
    ``<exports_root>/<bucket>/<key>`` (incremental exports share ``AWSDynamoDB/data/``, so their
    folders alone are not enough); returns ``.../<prefix>/``, whose ``AWSDynamoDB/`` holds each
    export's folder there (``inspect`` and ``convert`` read them), and whose subfolders hold the
    exports made under a longer prefix (the reconciliation's)."""
    s3 = world.client("s3")
    root = os.path.join(os.path.abspath(exports_root), EXPORT_BUCKET)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=EXPORT_BUCKET, Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", []):
            path = os.path.join(root, *item["Key"].split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(EXPORT_BUCKET, item["Key"], path)
    return os.path.join(root, *prefix.strip("/").split("/")) + os.sep


def dagster_runs_line(home: Path, dagster_home: str | None) -> str:
    """Where the demo's runs are and how to see them: ``make dev`` serves the default home only."""
    shown = shown_path(str(home))
    how = f"`DAGSTER_HOME={shown} ddb-assets dev` shows them" if dagster_home else "`make dev` shows them"
    return f"Dagster: the runs are in {shown}; {how} (http://127.0.0.1:3000)"


def shown_path(path: str) -> str:
    """A path relative to the current folder when it is below it (what the user typed), else absolute."""
    relative = os.path.relpath(path)
    return relative + (os.sep if path.endswith(os.sep) else "") if not relative.startswith("..") else path


def _describe_demo_export(world: LocalWorld, export_id: str, instance: Any, run: Any) -> DemoExport:
    ddb = world.client("dynamodb")
    table_arn = ddb.describe_table(TableName=TABLE_NAME)["Table"]["TableArn"]
    done = ddb.describe_export(ExportArn=f"{table_arn}/export/{export_id}")["ExportDescription"]
    folder = done["ExportManifest"].rsplit("/", 1)[0]
    listing = world.client("s3").list_objects_v2(Bucket=EXPORT_BUCKET, Prefix=folder + "/")
    return DemoExport(table_arn, done, [(o["Key"][len(folder) + 1:], o["Size"]) for o in listing.get("Contents", [])])
