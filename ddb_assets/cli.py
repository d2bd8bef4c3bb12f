"""``ddb-assets``: the command line. Each subcommand's --help says what it does."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="DynamoDB point-in-time exports turned into a typed, partitioned Parquet lake.\n\n"
         "Runs against AWS through the ordinary AWS settings (credentials chain, AWS_REGION, "
         "AWS_ENDPOINT_URL), or against the local world started by `ddb-assets emulator`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _client(service: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(service, region_name=_region())


@app.command()
def demo(
    items: int = typer.Option(3000, help="How many sample reviews to load."),
    seed: int = typer.Option(7, help="Seed of the sample data (same seed, same data)."),
    export_format: str = typer.Option("DYNAMODB_JSON", "--format", help="DYNAMODB_JSON or ION."),
    lake: str = typer.Option("var/lake", help="Lake folder the demo publishes into (kept afterwards)."),
) -> None:
    """The whole pipeline on the local world, through Dagster: load sample reviews, export the table
    (PITR), validate the export, convert it to partitioned Parquet, build the report tables."""
    from ddb_assets.local.demo import run_demo

    started = time.monotonic()
    run_demo(console, items=items, seed=seed, export_format=export_format.upper(), lake_root=lake)
    console.print(f"[green]demo finished in {time.monotonic() - started:.1f}s[/]")


@app.command()
def emulator(
    port: int = typer.Option(4566, help="Port to listen on (127.0.0.1)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    sample_items: int = typer.Option(0, help="Create the `reviews` table with this many sample items."),
) -> None:
    """Serve the local AWS world (moto with faithful DynamoDB exports) until Ctrl-C."""
    from ddb_assets.local.demo import EXPORT_BUCKET, load_sample_table
    from ddb_assets.local.world import LocalWorld, PortInUseError

    world = LocalWorld(port=port, host=host)
    try:
        world.start()
    except PortInUseError as exc:
        raise CliError(str(exc)) from None
    console.print(f"local AWS world listening on [bold]{world.endpoint}[/]")
    console.print("point the AWS SDK and ddb-assets at it with:")
    for key, value in world.env().items():
        console.print(f"  export {key}={value}", highlight=False)
    if sample_items:
        load_sample_table(world, sample_items, 7, console)
        console.print(f"table [bold]reviews[/] loaded; export bucket [bold]{EXPORT_BUCKET}[/]")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        world.stop()


@app.command()
def load(
    table: str = typer.Option("reviews", help="Table to create (if missing) and fill."),
    items: int = typer.Option(3000, help="How many sample reviews."),
    seed: int = typer.Option(7, help="Seed of the sample data."),
) -> None:
    """Create the reviews-shaped table with PITR on (if missing) and load sample items."""
    from rich.progress import Progress

    from ddb_assets.local.loader import batch_write
    from ddb_assets.local.sample_data import ReviewGenerator
    from ddb_assets.local.tables import create_reviews_table

    ddb = _client("dynamodb")
    if table not in ddb.list_tables().get("TableNames", []):
        create_reviews_table(ddb, table)
    with Progress(console=console) as progress:
        task = progress.add_task(f"loading {table}", total=items)
        written = batch_write(ddb, table, ReviewGenerator(items, seed=seed), lambda n: progress.advance(task, n))
    console.print(f"{written} items written to {table}")


@app.command()
def export(
    table: str = typer.Argument(..., help="Table name or ARN."),
    bucket: str = typer.Option("ddb-exports", help="S3 bucket the export is written to."),
    prefix: Optional[str] = typer.Option(None, help="S3 prefix (default: exports/<table>)."),
    export_format: str = typer.Option("DYNAMODB_JSON", "--format", help="DYNAMODB_JSON or ION."),
    export_time: Optional[datetime] = typer.Option(None, help="Point in time to export (UTC); default now."),
    client_token: Optional[str] = typer.Option(None, help="Idempotency token (8 hours)."),
    wait: bool = typer.Option(True, help="Wait for the export to finish."),
) -> None:
    """Start a PITR export (ExportTableToPointInTime) of TABLE and, by default, wait for it."""
    from botocore.exceptions import ClientError

    from ddb_assets.aws.dynamodb_exports import start_export, table_arn_of, wait_for_export

    ddb = _client("dynamodb")
    try:
        arn = table_arn_of(ddb, table)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise CliError(f"table {table!r} does not exist (region {_region()})") from None
        raise
    try:
        _client("s3").head_bucket(Bucket=bucket)
    except ClientError:
        raise CliError(f"bucket {bucket!r} does not exist or is not accessible") from None
    name = arn.rsplit("/", 1)[-1]
    when = export_time.replace(tzinfo=export_time.tzinfo or timezone.utc) if export_time else None
    started = start_export(ddb, table_arn=arn, bucket=bucket, prefix=prefix or f"exports/{name}",
                           export_format=export_format.upper(), export_time=when, client_token=client_token)
    console.print(f"export started: {started['ExportArn']}")
    if wait:
        done = wait_for_export(ddb, started["ExportArn"],
                               on_poll=lambda d, t: console.log(f"{d['ExportStatus']} after {t:.0f}s"))
        console.print(f"[green]COMPLETED[/]: {done['ItemCount']} items, "
                      f"manifest s3://{bucket}/{done['ExportManifest']}")


@app.command("generate-export")
def generate_export(
    dest: Path = typer.Argument(..., help="Folder standing in for the bucket root."),
    items: int = typer.Option(1_000_000, help="How many sample reviews."),
    files: int = typer.Option(16, help="How many data files (hash ranges)."),
    seed: int = typer.Option(7, help="Seed of the sample data."),
    export_format: str = typer.Option("DYNAMODB_JSON", "--format", help="DYNAMODB_JSON or ION."),
    prefix: str = typer.Option("bench", help="Export prefix inside DEST."),
) -> None:
    """Write a sample export straight to a folder, in the exact AWS layout (for benchmarks)."""
    from ddb_assets.local.bulk_export import generate_folder_export

    summary_path = generate_folder_export(dest, items=items, files=files, seed=seed,
                                          export_format=export_format.upper(), prefix=prefix, console=console)
    console.print(f"export written: {summary_path}")


def _check_naming(naming: str) -> None:
    from ddb_assets.lake.schema import NAMING_MODES

    if naming not in NAMING_MODES:
        raise CliError(f"--naming must be one of {', '.join(NAMING_MODES)}, not {naming!r}")


def _check_compression(compression: str) -> None:
    from ddb_assets.lake.writer import parquet_options

    try:
        parquet_options(compression)
    except ValueError as exc:
        raise CliError(f"--{exc}") from None


def _conversion_progress():  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # auto_refresh=False: no refresh thread, so the conversion can fork its workers (a process
    # with other threads must use the slower forkserver).
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err_console,
                        auto_refresh=False)
    tasks: dict[str, int] = {}

    def on_event(kind: str, info: dict) -> None:  # type: ignore[type-arg]
        if kind == "opened":
            tasks["parse"] = progress.add_task("parse + verify", total=info["files"], detail="")
        elif kind == "parsed":
            progress.advance(tasks["parse"])
            progress.update(tasks["parse"], detail=f"{info['rows']:,} items")
        elif kind == "planned":
            tasks["write"] = progress.add_task("write parquet", total=None, detail=f"{info['columns']} columns")
        elif kind == "written":
            progress.update(tasks["write"], detail=f"{info['rows']:,} rows")
        progress.refresh()

    return progress, on_event


@app.command()
def convert(
    source: str = typer.Argument(..., help="Export folder (.../AWSDynamoDB/<export-id>/) or its "
                                           "manifest-summary.json; local path or s3://."),
    dest: str = typer.Argument(..., help="Table root to publish into (local path or s3://)."),
    partition_by: Optional[str] = typer.Option("year", help="Attribute to partition by (hive style); "
                                                            "'' for none. Items without it go to "
                                                            "__HIVE_DEFAULT_PARTITION__."),
    naming: str = typer.Option("snake", help="snake: review_text, reviewer__name; glue: AWS Glue "
                                             "Relationalize names such as item.product_title.s"),
    workers: int = typer.Option(0, help="Worker processes (0: one per core)."),
    max_depth: int = typer.Option(3, help="Map levels flattened into columns; deeper maps become JSON text."),
    dictionary_keys: int = typer.Option(64, help="A map with more distinct keys is kept as one JSON column."),
    work_dir: Optional[str] = typer.Option(None, help="Local folder for the parsed items between the two stages "
                                                       "(default: TMPDIR); needs up to about 0.8x the export's "
                                                       "decompressed size."),
    compression: str = typer.Option("zstd", help="Parquet codec: zstd (smallest files), snappy (for readers "
                                                 "without zstd), lz4, gzip, none."),
    profile: Optional[str] = typer.Option(None, help="The export's profile from 'inspect --save-profile': the "
                                                     "schema is planned up front and the export converted in "
                                                     "one pass, with no work folder."),
) -> None:
    """Convert a DynamoDB export into typed, flattened Parquet, partitioned and published atomically."""
    from rich.table import Table

    from ddb_assets.exports.reader import open_export
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets.lake.profile import profile_from_json

    _check_naming(naming)
    _check_compression(compression)
    options = ConvertOptions(partition_by=partition_by or None, naming=naming, workers=workers,
                             max_depth=max_depth, dictionary_keys=dictionary_keys, work_dir=work_dir,
                             compression=compression)
    export, known = open_export(source), None
    if profile:
        try:
            saved_for, known = profile_from_json(resolve(profile).read_bytes(), obj=profile)
        except (OSError, ValueError) as exc:
            raise CliError(str(exc) if isinstance(exc, ValueError) else f"cannot read {profile}: {exc}") from None
        if saved_for != export.export_id:
            raise CliError(f"{profile} is the profile of export {saved_for}, not of {export.export_id}")
    progress, on_event = _conversion_progress()
    with progress:
        result = convert_export(export, dest, options, progress=on_event, known=known)
    meta = result.metadata
    summary = Table(title=f"published {meta.table} ({meta.version})", show_header=False)
    mb = result.uncompressed_bytes / 1e6
    rows = [("export", meta.source["export_arn"]), ("items", f"{meta.rows:,}"),
            ("partitions", f"{len(meta.partitions):,}" + (f" by {meta.partition_column}" if meta.partition_column else "")),
            ("files", f"{len(meta.files()):,}"), ("parquet bytes", f"{meta.bytes:,}"),
            ("columns", str(len(meta.columns))),
            ("input", f"{mb:,.1f} MB uncompressed, {result.compressed_bytes / 1e6:,.1f} MB gzip"),
            ("time", f"{result.seconds:.2f}s, {mb / max(result.seconds, 1e-9):,.1f} MB/s"),
            ("scratch", "none: one pass, planned from the profile" if result.one_pass else
             f"{result.scratch_bytes / 1e6:,.1f} MB at most in {work_dir or tempfile.gettempdir()}"),
            ("table", dest)]
    if meta.variants:
        rows.append(("mixed types", ", ".join(f"{k} {v}" for k, v in meta.variants.items())))
    for key, value in rows:
        summary.add_row(key, value)
    console.print(summary)


@app.command()
def inspect(
    source: str = typer.Argument(..., help="Export folder or manifest-summary.json (local path or s3://)."),
    partition_by: Optional[str] = typer.Option("year", help="Partition attribute, as convert would use it."),
    naming: str = typer.Option("snake", help="Column naming, as convert would use it."),
    workers: int = typer.Option(0, help="Worker processes (0: one per core)."),
    save_profile: Optional[str] = typer.Option(None, help="Also write the profile to this file (local or "
                                                          "s3://), for 'convert --profile'."),
) -> None:
    """Show an export's summary manifest and the schema inferred from every item."""
    from rich.table import Table

    from ddb_assets.lake.convert import ConvertOptions, profile_export
    from ddb_assets.lake.report import attribute_rows
    from ddb_assets.lake.schema import plan_table

    _check_naming(naming)
    options = ConvertOptions(partition_by=partition_by or None, naming=naming, workers=workers)
    progress, on_event = _conversion_progress()
    with progress:
        export, profile = profile_export(source, options, progress=on_event)
    summary = Table(title="manifest-summary.json", show_header=False)
    s = export.summary
    for key, value in [("exportArn", s.export_arn), ("tableArn", s.table_arn), ("exportTime", s.export_time),
                       ("startTime", s.start_time), ("endTime", s.end_time), ("outputFormat", s.output_format),
                       ("itemCount", f"{s.item_count:,}"), ("data files", str(len(export.files))),
                       ("s3", f"s3://{s.s3_bucket}/{s.s3_prefix or ''}"),
                       ("checksums", "md5 of every data file verified; " +
                        (", ".join(f"{c}.md5" for c in export.checksum_files_verified) or "no .md5 files") +
                        " verified")]:
        summary.add_row(key, str(value))
    console.print(summary)
    plan = plan_table(profile, options.schema_options)
    schema = Table(title=f"schema inferred from all {profile.items:,} items")
    for column in ("attribute", "types (count)", "null %", "mixed", "columns"):
        schema.add_column(column)
    for row in attribute_rows(profile, plan):
        schema.add_row("  " * row.depth + row.attribute,
                       ", ".join(f"{k} {v:,}" for k, v in row.types.items()),
                       f"{100 * row.null_fraction:.1f}", "yes" if row.mixed else "",
                       "\n".join(row.columns))
    console.print(schema)
    if plan.partition_column:
        console.print(f"partitioned by [bold]{plan.partition_column}[/] ({plan.partition_type})")
    if save_profile:
        from ddb_assets.exports.storage import resolve
        from ddb_assets.lake.profile import profile_to_json

        resolve(save_profile).write_bytes(profile_to_json(profile, export.export_id))
        console.print(f"profile saved to {save_profile}: 'convert --profile {save_profile}' converts this "
                      f"export in one pass")


def _lake_root(lake: Optional[str]) -> str:
    if lake:
        return lake
    from ddb_assets.settings import ConfigError, load_settings

    try:
        return load_settings().lake_root
    except ConfigError:
        return "var/lake"


def _engine_with_lake(lake: Optional[str], only: Optional[str], raw: list[str], schema: Optional[str]):  # type: ignore[no-untyped-def]
    from ddb_assets.exports.reader import open_export
    from ddb_assets.exports.storage import resolve
    from ddb_assets.query.duckdb_engine import DuckDBEngine, discover_reports, discover_tables, register_report

    root = resolve(_lake_root(lake))
    engine = DuckDBEngine()
    tables = discover_tables(root)
    if only is not None:
        if only not in tables:
            raise CliError(f"no table {only!r} in the lake at {root.uri} (found: {', '.join(tables) or 'none'})")
        tables = {only: tables[only]}
    for name, location in tables.items():
        engine.register_table(name, location, schema=schema)
    if only is None:
        for name, location in discover_reports(root).items():
            register_report(engine, name, location)
    for spec in raw:
        name, sep, source = spec.partition("=")
        if not sep or not name or not source:
            raise CliError(f"--raw takes NAME=SOURCE (an export folder or manifest), not {spec!r}")
        engine.register_raw_export(name, open_export(source), schema=schema)
    return engine, root, tables


@app.command()
def query(
    sql: str = typer.Argument(..., help="SQL to run (DuckDB dialect). Lake tables are views named after "
                                        "their folder; reports are <table>_<report>."),
    lake: Optional[str] = typer.Option(None, help="Lake root (default: the configured lake_root)."),
    table: Optional[str] = typer.Option(None, "--table", help="Register only this lake table."),
    raw: list[str] = typer.Option([], "--raw", help="Also register an export as NAME=SOURCE: its items as "
                                                     "one struct column `item` (item.customer_id.s)."),
    schema: Optional[str] = typer.Option(None, help="Schema to register tables in, e.g. default (for SQL "
                                                    "written as \"default\".\"data\")."),
    output: str = typer.Option("table", "--format", help="table, csv or json"),
    limit: int = typer.Option(1000, help="Rows printed at most in table format."),
) -> None:
    """Run SQL over the lake with the embedded DuckDB engine and print the result."""
    import duckdb

    engine, _, _ = _engine_with_lake(lake, table, raw, schema)
    try:
        try:
            result = engine.query(sql).table
        except duckdb.Error as exc:
            raise CliError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        engine.close()
    if output == "csv":
        import pyarrow.csv as pacsv

        buffer = __import__("io").BytesIO()
        pacsv.write_csv(result, buffer)
        sys.stdout.write(buffer.getvalue().decode("utf-8"))
    elif output == "json":
        import json

        for row in result.to_pylist():
            sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
    elif output == "table":
        from rich.table import Table

        out = Table(show_lines=False)
        for column in result.column_names:
            out.add_column(column)
        for row in result.slice(0, limit).to_pylist():
            out.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(out)
        if result.num_rows > limit:
            console.print(f"({result.num_rows:,} rows, first {limit:,} shown)")
    else:
        raise CliError(f"--format must be table, csv or json, not {output!r}")


@app.command()
def tables(
    lake: Optional[str] = typer.Option(None, help="Lake root (default: the configured lake_root)."),
) -> None:
    """List the lake's published tables and reports, with their columns."""
    from rich.table import Table

    engine, root, found = _engine_with_lake(lake, None, [], None)
    try:
        if not found:
            console.print(f"no published tables under {root.uri}")
        for name, meta in engine.tables.items():
            out = Table(title=f"{name}: {meta.rows:,} rows, {len(meta.partitions)} partitions"
                              + (f" by {meta.partition_column}" if meta.partition_column else "")
                              + f", export {meta.source['export_id']}")
            for column in ("column", "type", "from attribute"):
                out.add_column(column)
            for column in meta.columns:
                out.add_row(column["name"], column["type"], f"{column['attribute']} ({column['descriptor']})")
            if meta.partition_column:
                out.add_row(meta.partition_column, str(meta.partition_type), "(partition folder)")
            console.print(out)
        for name in [r[0] for r in engine.connection.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]:
            if name not in engine.tables and not name.startswith("__"):
                console.print(f"report view: {name}")
    finally:
        engine.close()


def main() -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from ddb_assets.aws.dynamodb_exports import ExportFailed, ExportTimeout
    from ddb_assets.exports.errors import ExportFormatError
    from ddb_assets.lake.convert import ScratchSpaceError
    from ddb_assets.lake.plan_checks import ProfileMismatch
    from ddb_assets.lake.publish import PublishConflict
    from ddb_assets.settings import ConfigError

    try:
        app()
    except (CliError, ExportFormatError, ExportFailed, ExportTimeout, ConfigError, LookupError, ScratchSpaceError,
            PublishConflict, ProfileMismatch) as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        err_console.print(f"[red]error:[/] {error.get('Code')}: {error.get('Message')}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except BotoCoreError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
