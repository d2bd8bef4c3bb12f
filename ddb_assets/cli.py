"""``ddb-assets``: the command line. Each subcommand's --help says what it does."""

from __future__ import annotations

import difflib
import importlib
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from ddb_assets.wording import counted

try:  # typer 0.26 and later carry their own copy of click
    import typer._click as typer_click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    import click as typer_click  # type: ignore[no-redef]
    from click import exceptions as click_errors  # type: ignore[no-redef]


class _HelpFormatter(typer_click.HelpFormatter):  # type: ignore[misc,valid-type]
    """click's plain help (it wraps at the terminal's width, at most 80 columns, and never cuts a
    word), except that a word is never broken at a hyphen either: ``manifest-summary.json``,
    ``--save-profile`` and ``ddb-assets`` stay whole, so help piped or copied still reads."""

    def write_usage(self, *args: Any, **kwargs: Any) -> None:
        with _whole_words():
            super().write_usage(*args, **kwargs)

    def write_text(self, *args: Any, **kwargs: Any) -> None:
        with _whole_words():
            super().write_text(*args, **kwargs)

    def write_dl(self, *args: Any, **kwargs: Any) -> None:
        with _whole_words():
            super().write_dl(*args, **kwargs)


@contextmanager
def _whole_words() -> Iterator[None]:
    """click's ``wrap_text`` builds its ``TextWrapper`` from its ``_textwrap`` module at each call:
    for the duration, that wrapper keeps hyphenated words whole."""
    module = importlib.import_module(typer_click.HelpFormatter.__module__.rsplit(".", 1)[0] + "._textwrap")
    original = module.TextWrapper

    class WholeWords(original):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "break_on_hyphens": False})

    module.TextWrapper = WholeWords
    try:
        yield
    finally:
        module.TextWrapper = original


class _Context(typer_click.Context):  # type: ignore[misc,valid-type]
    formatter_class = _HelpFormatter


class _Group(TyperGroup):
    """The command group: every command's help uses the formatter above, and the list of
    commands shows each one's first sentence whole (click would cut it at 45 characters)."""

    context_class = _Context

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            command.context_class = _Context

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, command.get_short_help_str(limit=1_000)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Group,
    help="DynamoDB point-in-time exports turned into a typed, partitioned Parquet lake.\n\n"
         "Runs against AWS through the ordinary AWS settings (credentials chain, AWS_REGION, "
         "AWS_ENDPOINT_URL), or against the local world started by `ddb-assets emulator`.\n\n"
         "Errors are one line, `error: ...`, exit code 1 (2 for a usage error, after the usage line); "
         "DDB_ASSETS_DEBUG=1 also prints the traceback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: wrapped, never truncated, the same on a terminal and piped
)


def _console(stderr: bool = False) -> Console:
    """Rich output that never hard-wraps: text soft-wraps (a terminal folds a long line, a copy of
    it keeps it whole), and output piped or captured has no width at all, so ARNs, paths, tables
    and progress lines keep their natural width there whatever COLUMNS says. No log decorations
    (times, ``file.py:123``)."""
    terminal = Console(stderr=stderr).is_terminal
    return Console(stderr=stderr, soft_wrap=True, width=None if terminal else 1_000_000, log_time=False,
                   log_path=False)


console = _console()
err_console = _console(stderr=True)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


# Times as users type them and as ddb-assets prints them (a high-water mark: 2026-11-30T00:00:00.517Z).
TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _client(service: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(service, region_name=_region())


def _one_of(*choices: str):  # type: ignore[no-untyped-def]
    """An option's callback: the value if it is one of ``choices`` (in any case; returned as
    spelled there), else a usage error naming them. Checked as the command line is parsed."""
    def check(value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")

    return check


EXPORT_FORMATS = ("DYNAMODB_JSON", "ION")
PORT = {"min": 0, "max": 65535, "metavar": "PORT"}


@app.command(short_help="The whole pipeline on the local world, through Dagster.")
def demo(
    items: int = typer.Option(3000, min=1, metavar="N", help="How many sample reviews to load."),
    seed: int = typer.Option(7, metavar="N", help="Seed of the sample data (same seed, same data)."),
    export_format: str = typer.Option("DYNAMODB_JSON", "--format", metavar="[DYNAMODB_JSON|ION]",
                                      callback=_one_of(*EXPORT_FORMATS), help="The export's format."),
    lake: str = typer.Option("var/lake", metavar="DIR", help="Lake folder the demo publishes into (kept "
                                                             "afterwards)."),
    exports: str = typer.Option("var/exports", metavar="DIR", help="Folder the export is copied to, as "
                                "<bucket>/<key> (kept afterwards: `inspect` and `convert` read it; with "
                                "--incremental, every export the demo made)."),
    dagster_home: Optional[str] = typer.Option(None, metavar="DIR", help="Dagster home for the runs (default: "
                                               "$DAGSTER_HOME, else var/dagster, the one `make dev` shows)."),
    incremental: bool = typer.Option(False, "--incremental", help="Instead: the table with incremental: set, "
                                     "through the same assets: a full export into the lake, then windows of changes "
                                     "exported incrementally and merged (change history on), then the reconciliation "
                                     "check (a fresh full export into reviews_check, compared with the merged "
                                     "table)."),
    windows: Optional[int] = typer.Option(None, min=1, max=96, metavar="N",
                                          help="--incremental: how many 15-minute windows (default 4)."),
) -> None:
    """The whole pipeline on the local world, through Dagster: load sample reviews, export the table
    (PITR), validate the export, convert it to partitioned Parquet, build the report tables. Also
    writes the AWS walkthrough's tables (default.data, default.ddbs3_parquetpartitioned__output_flat_partitioned).

    With --incremental: the incremental chain instead, through Dagster into the same home: per
    15-minute window (the local world's clock is driven) incremental_export, the export sensor,
    raw_export and parquet merging it, with the freshness check; then the reconciliation check
    (exit code 1 if the merged table and the fresh full export differ). Its clock runs ahead of real
    time: the Dagster home's exports and the lake table's high-water mark are left ahead, and `demo`
    with the same home or lake refuses until then."""
    from ddb_assets.local.demo import DemoRefused, run_demo

    if windows is not None and not incremental:
        raise click_errors.UsageError("--windows is for --incremental")
    started = time.monotonic()
    if incremental:
        from ddb_assets.local.demo import load_sample_table
        from ddb_assets.local.incremental_demo import run_incremental_demo

        try:
            outcome = run_incremental_demo(
                lambda line: console.print(line, highlight=False, soft_wrap=True, markup=False), items=items,
                seed=seed, windows=4 if windows is None else windows, export_format=export_format, lake_root=lake,
                dagster_home=dagster_home, load=lambda world, n, s: load_sample_table(world, n, s, console),
                exports_root=exports)
        except DemoRefused as exc:
            raise CliError(str(exc)) from None
        if not outcome["equal"]:
            raise CliError("the merged table differs from the fresh full export (see above)")
        console.print(f"[green]incremental demo finished in {time.monotonic() - started:.1f}s[/]")
        return
    try:
        run_demo(console, items=items, seed=seed, export_format=export_format, lake_root=lake,
                 exports_root=exports, dagster_home=dagster_home)
    except DemoRefused as exc:
        raise CliError(str(exc)) from None
    console.print(f"[green]demo finished in {time.monotonic() - started:.1f}s[/]")


@app.command(short_help="The local AWS world plus `dagster dev` on http://127.0.0.1:3000.")
def dev(
    port: int = typer.Option(3000, **{**PORT, "min": 1}, help="Port of the Dagster UI."),
    emulator_port: int = typer.Option(4566, **{**PORT, "min": 1}, help="Port of the local AWS world."),
    host: str = typer.Option("127.0.0.1", metavar="ADDRESS", help="Address both listen on."),
    sample_items: int = typer.Option(3000, min=0, metavar="N", help="Sample reviews loaded into the `reviews` "
                                                                    "table."),
    dagster_home: Optional[str] = typer.Option(None, metavar="DIR", help="Dagster home (default: $DAGSTER_HOME, "
                                                                         "else var/dagster: the demo's runs are "
                                                                         "there)."),
    lake: Optional[str] = typer.Option(None, metavar="DIR", help="Lake root (default: $DDB_ASSETS_LAKE_ROOT, else "
                                                                 "var/lake)."),
) -> None:
    """The local AWS world (with the sample `reviews` table) and `dagster dev` on the local profile,
    until Ctrl-C or SIGTERM (which stop both, and every process they started). Refuses to start
    when another `dev` serves the same Dagster home or a port is taken, naming the process."""
    from ddb_assets.local.dev import DevRefused, run_dev

    try:
        code = run_dev(host=host, port=port, emulator_port=emulator_port, sample_items=sample_items,
                       home=Path(dagster_home) if dagster_home else None, lake=lake,
                       log=lambda line: console.print(line, highlight=False, soft_wrap=True, markup=False))
    except DevRefused as exc:
        raise CliError(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def emulator(
    port: int = typer.Option(4566, **PORT, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", metavar="ADDRESS", help="Address to bind."),
    sample_items: int = typer.Option(0, min=0, metavar="N", help="Create the `reviews` table with this many "
                                                                 "sample items (before the world is announced)."),
) -> None:
    """Serve the local AWS world (moto with faithful DynamoDB exports) until Ctrl-C."""
    from ddb_assets.local.demo import EXPORT_BUCKET, load_sample_table
    from ddb_assets.local.world import BindError, LocalWorld

    world = LocalWorld(port=port, host=host)
    try:
        world.start()
    except BindError as exc:
        raise CliError(str(exc)) from None
    if sample_items:  # before the announcement: a client that starts on it finds the table whole
        load_sample_table(world, sample_items, 7, console)
        console.print(f"table [bold]reviews[/] loaded; export bucket [bold]{EXPORT_BUCKET}[/]")
    console.print(f"local AWS world listening on [bold]{world.endpoint}[/]")
    console.print("point the AWS SDK and ddb-assets at it with:")
    for key, value in world.env().items():
        console.print(f"  export {key}={value}", highlight=False)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        world.stop()


@app.command(short_help="Show or move the local world's clock.")
def clock(
    advance: Optional[str] = typer.Option(None, metavar="DURATION", help="Move the clock ahead by this long: 900 "
                                                                          "(seconds), 90s, 15m, 2h, 1d."),
    set_to: Optional[datetime] = typer.Option(None, "--set", metavar="TIME", formats=TIME_FORMATS, help="Move the clock to this instant "
                                              "(ISO-8601; UTC unless a zone is given), never backwards; with "
                                              "--advance, to that much after it."),
    freeze: bool = typer.Option(False, "--freeze", help="Stand still (at --set, or at now, plus --advance): every "
                                                        "write gets that time until the clock is moved again."),
    real_time: bool = typer.Option(False, "--real-time", help="Flow with the wall clock again. A clock ahead of "
                                                              "the wall clock keeps its lead (it never moves "
                                                              "backwards); alone, without the other options."),
) -> None:
    """Show or move the local world's clock (write times, PITR windows, export times), so that
    15-minute incremental windows and 35-day PITR windows pass at once.

    The clock only moves forward. It belongs to the world at AWS_ENDPOINT_URL (`ddb-assets
    emulator`); a new world starts at the wall clock."""
    from ddb_assets.local.clock import ClockClient

    # Every option is checked before the clock is touched: a refused command changes nothing.
    if real_time and (advance is not None or set_to is not None or freeze):
        raise click_errors.UsageError("--real-time goes alone (it cannot be combined with --advance, --set or --freeze)")
    step = _seconds(advance) if advance is not None else 0.0
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise CliError("the clock belongs to the local world: start `ddb-assets emulator` and set AWS_ENDPOINT_URL")
    remote = ClockClient(endpoint)
    try:
        if real_time:
            remote.real_time()
        elif set_to is not None:  # one request: refused as a whole, or done
            remote.set(set_to.replace(tzinfo=set_to.tzinfo or timezone.utc).timestamp() + step, frozen=freeze)
        elif freeze or advance is not None:
            remote.advance(step, frozen=True if freeze else None)
        state = remote.state()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:  # requests' connection errors
        raise CliError(f"no local world answers at {endpoint} ({type(exc).__name__}): start `ddb-assets "
                       f"emulator`, or point AWS_ENDPOINT_URL at it") from None
    console.print(f"{state['iso']}  ({'frozen' if state['frozen'] else 'running'}, "
                  f"{_lead(state['offset'])})", highlight=False)
    if real_time and state["offset"] >= 0.5:
        err_console.print(f"note: the clock stays {_duration(state['offset'])} ahead of the wall clock and flows "
                          f"from there: it never moves backwards (a new world, after restarting `ddb-assets "
                          f"emulator`, starts at the wall clock)", highlight=False, markup=False, soft_wrap=True)


def _seconds(text: str) -> float:
    """``--advance``'s duration in seconds: a number of seconds, or one with s, m, h or d; never
    negative, infinite or not a number."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    try:
        seconds = float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise typer.BadParameter(f"{text!r} is not a duration: expected seconds (900) or a number with s, m, h "
                                 f"or d (90s, 15m, 2h, 1d), 0 or more", param_hint="'--advance'")
    return seconds


def _duration(seconds: float) -> str:
    """``3725`` → ``1h 2m 5s``; whole seconds, largest units first, zero parts left out."""
    left, parts = round(abs(seconds)), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts)


def _lead(offset: float) -> str:
    """Where the world clock stands against the wall clock: ``on the wall clock``, ``1h ahead of
    the wall clock``, ``5m 2s behind the wall clock`` (a frozen clock falls behind)."""
    if abs(offset) < 0.5:
        return "on the wall clock"
    return f"{_duration(offset)} {'ahead of' if offset > 0 else 'behind'} the wall clock"


@app.command()
def load(
    table: str = typer.Option("reviews", metavar="NAME", help="Table to create (if missing) and fill."),
    items: int = typer.Option(3000, min=1, metavar="N", help="How many sample reviews."),
    seed: int = typer.Option(7, metavar="N", help="Seed of the sample data."),
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
    console.print(f"{counted(written, 'item')} written to {table}", highlight=False, markup=False)


@app.command(short_help="Start a PITR export of TABLE (full, or a window's changes) and wait for it.")
def export(
    table: str = typer.Argument(..., metavar="TABLE", help="Table name or ARN."),
    bucket: str = typer.Option("ddb-exports", metavar="BUCKET", help="S3 bucket the export is written to."),
    prefix: Optional[str] = typer.Option(None, metavar="PREFIX", help="S3 prefix (default: exports/<table>)."),
    export_format: str = typer.Option("DYNAMODB_JSON", "--format", metavar="[DYNAMODB_JSON|ION]",
                                      callback=_one_of(*EXPORT_FORMATS), help="The export's format."),
    export_time: Optional[datetime] = typer.Option(None, metavar="TIME", formats=TIME_FORMATS, help="Point in time to export (ISO-8601, "
                                                                              "UTC); default now."),
    client_token: Optional[str] = typer.Option(None, metavar="TOKEN", help="Idempotency token (8 hours)."),
    wait: bool = typer.Option(True, help="Wait for the export to finish."),
    incremental: bool = typer.Option(False, "--incremental", help="An incremental export of the window --from .. "
                                                                  "--to: only what changed (15 minutes to 24 "
                                                                  "hours); merge it with convert."),
    from_time: Optional[datetime] = typer.Option(None, "--from", metavar="TIME", formats=TIME_FORMATS, help="Incremental: "
                                                 "ExportFromTime (ISO-8601, UTC, inclusive)."),
    to_time: Optional[datetime] = typer.Option(None, "--to", metavar="TIME", formats=TIME_FORMATS, help="Incremental: ExportToTime "
                                                                                  "(ISO-8601, UTC, exclusive)."),
    view: Optional[str] = typer.Option(None, metavar="[NEW_AND_OLD_IMAGES|NEW_IMAGE]",
                                       callback=_one_of("NEW_AND_OLD_IMAGES", "NEW_IMAGE"),
                                       help="Incremental: what each changed item's line holds (default "
                                            "NEW_AND_OLD_IMAGES)."),
) -> None:
    """Start a PITR export (ExportTableToPointInTime) of TABLE and, by default, wait for it: a full
    export, or with --incremental the changes of a window."""
    from botocore.exceptions import ClientError

    from ddb_assets.aws.dynamodb_exports import start_export, table_arn_of, wait_for_export

    # The options' combinations are checked before anything is asked of AWS.
    if incremental and (from_time is None or to_time is None or export_time is not None):
        raise click_errors.UsageError("--incremental needs --from and --to (the window), and no --export-time")
    if not incremental and (from_time is not None or to_time is not None or view is not None):
        raise click_errors.UsageError("--from, --to and --view are for --incremental exports")
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
    utc = lambda moment: moment.replace(tzinfo=moment.tzinfo or timezone.utc) if moment else None  # noqa: E731
    window = None
    if incremental:
        window = (utc(from_time), utc(to_time))
    started = start_export(ddb, table_arn=arn, bucket=bucket, prefix=prefix or f"exports/{name}",
                           export_format=export_format, export_time=utc(export_time),
                           client_token=client_token, incremental=window, view=view or "NEW_AND_OLD_IMAGES")
    console.print(f"export started: {started['ExportArn']}", highlight=False, markup=False)
    if wait:
        shown: list[str] = []

        def on_poll(description: dict, elapsed: float) -> None:  # type: ignore[type-arg]
            # One line per status, not per poll (polls back off to every 30 s over an export's minutes).
            status = description["ExportStatus"]
            if status != "COMPLETED" and status not in shown:
                shown.append(status)
                console.print(f"{status} after {elapsed:.0f}s (waiting for COMPLETED)", highlight=False)

        from ddb_assets.cli_interrupts import add_detail

        started_wait = time.monotonic()
        try:
            done = wait_for_export(ddb, started["ExportArn"], on_poll=on_poll)
        except KeyboardInterrupt:  # only the wait stops: DynamoDB has no way to cancel an export
            add_detail(f"the export goes on in DynamoDB (it cannot be stopped): {started['ExportArn']}")
            raise
        console.print(f"[green]COMPLETED[/] after {time.monotonic() - started_wait:.0f}s: {counted(done['ItemCount'], 'item')}, "
                      f"manifest s3://{bucket}/{done['ExportManifest']}", highlight=False)


@app.command("generate-export")
def generate_export(
    dest: Path = typer.Argument(..., metavar="DEST", help="Folder standing in for the bucket root."),
    items: int = typer.Option(1_000_000, min=1, metavar="N", help="How many sample reviews."),
    files: int = typer.Option(16, min=1, metavar="N", help="How many data files (hash ranges)."),
    seed: int = typer.Option(7, metavar="N", help="Seed of the sample data."),
    export_format: str = typer.Option("DYNAMODB_JSON", "--format", metavar="[DYNAMODB_JSON|ION]",
                                      callback=_one_of(*EXPORT_FORMATS), help="The export's format."),
    prefix: str = typer.Option("bench", metavar="PREFIX", help="Export prefix inside DEST."),
) -> None:
    """Write a sample export straight to a folder, in the exact AWS layout (for benchmarks)."""
    from ddb_assets.local.bulk_export import generate_folder_export

    summary_path = generate_folder_export(dest, items=items, files=files, seed=seed,
                                          export_format=export_format, prefix=prefix, console=console)
    console.print(f"export written: {summary_path}", highlight=False, markup=False)


# lake.schema.NAMING_MODES, lake.writer.COMPRESSIONS and lake.shards.options.RUNNERS (a test keeps them
# equal), spelled out so that parsing the command line imports neither pyarrow nor pyiceberg.
NAMINGS = ("snake", "glue")
COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "none")
RUNNERS = ("local", "spark", "glue", "emr_serverless")
WORKERS_HELP = "Worker processes (0: one per core, or none for an export under 20,000 items)."


JSON_READER_HELP = ("JSON parser: arrow-rs (less CPU; pyarrow's reader takes any piece it cannot be shown to "
                    "read exactly) or pyarrow.")


JSON_READERS = ("arrow-rs", "pyarrow")  # exports.json_reader.JSON_READERS, without importing pyarrow here


def _conversion_progress():  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # auto_refresh=False: no refresh thread, so the conversion can fork its workers (a process
    # with other threads must use the slower forkserver).
    class _Progress(Progress):
        def stop(self) -> None:
            if self.tasks:
                return super().stop()
            # Stopped before its first task (a bad export): rich would print an empty display, a
            # blank line that the error message would then follow.
            self.live.transient = True
            self.live.stop()

    progress = _Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err_console,
                         auto_refresh=False)
    tasks: dict[str, int] = {}
    totals = {"items": 0, "rows": 0}  # events carry one data file's or one worker's share: show running totals

    def on_event(kind: str, info: dict) -> None:  # type: ignore[type-arg]
        if kind == "opened":
            tasks["parse"] = progress.add_task("parse + verify", total=info["files"], detail="")
        elif kind == "parsed":
            totals["items"] += info["rows"]
            progress.advance(tasks["parse"])
            progress.update(tasks["parse"], detail=counted(totals['items'], 'item'))
        elif kind == "replanned":
            # The items need another plan than the one pass guessed: read again, in two stages.
            progress.console.print(f"re-planning: {info['why']}", highlight=False, markup=False, soft_wrap=True)
            for name in ("parse", "write"):
                if name in tasks:
                    progress.reset(tasks[name], total=progress.tasks[tasks[name]].total if name == "parse" else None)
            totals.update(items=0, rows=0)
        elif kind == "planned" and "write" in tasks:
            progress.update(tasks["write"], detail=counted(info['columns'], 'column'))
        elif kind == "planned":
            tasks["write"] = progress.add_task("write parquet", total=None, detail=counted(info['columns'], 'column'))
        elif kind == "written":
            totals["rows"] += info["rows"]
            progress.advance(tasks["write"], info["files"])
            progress.update(tasks["write"], detail=counted(totals['rows'], 'row'))
        elif kind == "merge":
            # An incremental export's merge: the candidate files' key columns scanned, then (copy-on-
            # write) the files holding touched keys rewritten; thousands of files on a big table.
            name = f"merge {info['step']}"
            if name not in tasks and not info["total"]:
                return  # no file to read: no line
            if name not in tasks:
                tasks[name] = progress.add_task("find touched rows" if info["step"] == "scan" else "rewrite files",
                                                total=info["total"], detail="")
            detail = (f"files read, touched keys in {counted(info['affected'], 'file')}" if info["step"] == "scan"
                      else "files")
            # total too: a commit retried after a conflict scans the table as it is then, from 0
            progress.update(tasks[name], total=info["total"], completed=info["done"], detail=detail)
        elif kind == "committed" and "write" in tasks:
            # The data files the snapshot added, as the summary counts them: the small files a
            # partition's workers wrote were merged into one before the commit. A merge-on-read
            # merge also adds position-delete files, which hold no row: said apart.
            deletes = info.get("delete_files", 0)
            done = info.get("files", int(progress.tasks[tasks["write"]].completed) + deletes) - deletes
            rows = counted(totals['rows'], 'row')
            progress.update(tasks["write"], total=done, completed=done,
                            detail=f"{rows} in {counted(done, 'data file')}, {counted(deletes, 'position-delete file')}"
                            if deletes else f"{rows} in {counted(done, 'file')}")
        progress.refresh()

    return progress, on_event


def _summary_lines(rows: list[tuple[str, str]]) -> None:
    """Key/value lines that never wrap (ARNs, URIs and paths stay whole when piped or captured)."""
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        console.print(f"{key:<{width}}  {value}", highlight=False, soft_wrap=True, markup=False)


def _catalog_config(catalog: Optional[str], namespace: Optional[str]):  # type: ignore[no-untyped-def]
    """``--catalog``'s CatalogConfig; a value it cannot be is a usage error (exit 2)."""
    from ddb_assets.lake.catalog import CatalogConfig, CatalogError

    try:
        return CatalogConfig.parse(catalog, namespace)
    except CatalogError as exc:
        raise click_errors.UsageError(str(exc)) from None


@contextmanager
def _options_checked() -> Iterator[None]:
    """Around making ConvertOptions from the command line: the options it checks as it is made
    (partitioning, naming, sizes), before anything is read, are usage errors there (exit 2, after
    the usage line), as typer's own checks of the values are."""
    from ddb_assets.lake.partitioning import PartitionError
    from ddb_assets.lake.schema import OptionError

    try:
        yield
    except OptionError as exc:
        raise typer.BadParameter(exc.problem, param_hint=f"'--{exc.option.replace('_', '-')}'") from None
    except PartitionError as exc:
        raise typer.BadParameter(str(exc).removeprefix("partition_by "), param_hint="'--partition-by'") from None


def _as_of_value(value: Optional[str]) -> Optional[str]:
    """``--as-of``'s callback: a snapshot id or an ISO-8601 time (as lake.tables.resolve_snapshot
    reads it), else a usage error."""
    text = (value or "").strip()
    if value is None or text.lstrip("-").isdigit():
        return value
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a snapshot id nor an ISO-8601 time "
                                 f"(2026-11-30T12:00:00Z, 2026-11-30)") from None
    return value


def _raw_values(values: list[str]) -> list[str]:
    """``--raw``'s callback: each value NAME=SOURCE, else a usage error."""
    for spec in values:
        name, sep, source = spec.partition("=")
        if not sep or not name or not source:
            raise typer.BadParameter(f"{spec!r} is not NAME=SOURCE (a view name, then an export folder or "
                                     f"manifest)")
    return values


QUERY_FORMATS = ("table", "vertical", "csv", "json")  # query.output.FORMATS (a test keeps them equal)
QUERY_FORMAT_HELP = (
    "table: a grid (on a terminal too narrow for it, vertical instead); vertical: one line per column, a block "
    "per row (psql's \\x); csv: a header line, then RFC 4180 rows; json: one object per line. Every type prints "
    "in every format: decimals exact (in json as strings, \"1.50\"), binary as base64, times as ISO-8601 "
    "(2025-11-30T00:09:00Z), NULL empty in csv; lists, sets, structs and maps as JSON text in table, vertical and "
    "csv. A repeated column name gets _1, _2 in json.")

CATALOG_HELP = ("Iceberg catalog: sql (the default: a SQLite file, catalog.db in the lake folder), "
                "sqlite:///relative/catalog.db or sqlite:////absolute/catalog.db (another SQLite file, as "
                "SQLAlchemy reads it: three slashes then the path), glue (AWS Glue, what Athena reads) or "
                "rest:https://host/path (an Iceberg REST catalog).")
LAKE_HELP = ("Lake root: a folder or s3:// (default: lake_root of the configuration; with --lake the "
             "configuration file is not read).")
NAMESPACE_HELP = "Catalog namespace, the Glue database (default: the configuration's, ddb_lake)."


@app.command()
def convert(
    source: str = typer.Argument(..., metavar="SOURCE", help="Export folder (.../AWSDynamoDB/<export-id>/) or "
                                                             "its manifest-summary.json; local path or s3://."),
    dest: str = typer.Argument(..., metavar="DEST", help="The table's own folder (its data/ and metadata/ go "
                                                         "there; local path or s3://). The table is named after "
                                                         "its last segment; a table of that name at another "
                                                         "location is refused."),
    partition_by: Optional[str] = typer.Option(None, metavar="SPEC", help="ATTR (identity), "
                                               "year|month|day|hour(ATTR[, UNIT]) or bucket(N, ATTR); '' for none. "
                                               "Default: the table's partitioning, or none for a new table."),
    naming: Optional[str] = typer.Option(None, metavar="[snake|glue]", callback=_one_of(*NAMINGS),
                                         help="Column names. snake: review_text, reviewer__name; glue: AWS Glue "
                                              "Relationalize names such as item.product_title.s (default: the "
                                              "table's, else snake)."),
    workers: int = typer.Option(0, min=0, metavar="N", help=WORKERS_HELP),
    max_depth: Optional[int] = typer.Option(None, min=1, max=16, metavar="N", help="Map levels flattened into "
                                            "columns, 1 to 16; deeper maps become JSON text (default: the "
                                            "table's, else 3)."),
    dictionary_keys: Optional[int] = typer.Option(None, min=1, metavar="N", help="A map with more distinct keys "
                                                  "is kept as one JSON column (default: the table's, else 64)."),
    work_dir: Optional[str] = typer.Option(None, metavar="DIR", help="Local folder for the parsed items between "
                                           "the two stages (default: TMPDIR); needs up to about 0.8x the "
                                           "export's decompressed size."),
    compression: str = typer.Option("zstd", metavar="CODEC", callback=_one_of(*COMPRESSIONS),
                                    help="Parquet codec: zstd (smallest files), snappy (for readers without "
                                         "zstd), lz4, gzip or none."),
    json_reader: str = typer.Option("arrow-rs", metavar="[arrow-rs|pyarrow]", callback=_one_of(*JSON_READERS),
                                    help=JSON_READER_HELP),
    profile: Optional[str] = typer.Option(None, metavar="FILE", help="The export's profile from 'inspect "
                                          "--save-profile': the schema is planned up front and the export "
                                          "converted in one pass, with no work folder."),
    catalog: Optional[str] = typer.Option(None, metavar="CATALOG", help=CATALOG_HELP + " An s3:// DEST needs "
                                                                                      "one other than sql."),
    namespace: Optional[str] = typer.Option(None, metavar="NAME", help="Catalog namespace, the Glue database "
                                                                       "(default: ddb_lake)."),
    table_name: Optional[str] = typer.Option(None, metavar="NAME", help="Name in the catalog (default: DEST's "
                                                                        "last segment)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Re-plan the table's schema and partitioning from "
                                                          "scratch (new columns; the partitioning and naming "
                                                          "options given, else the table's) and replace every data "
                                                          "file, in one commit (one snapshot): "
                                                          "also to convert the export the table holds again, an "
                                                          "older one, or one of another DynamoDB table (which the "
                                                          "table then holds). The table's chain starts again at "
                                                          "the export: its high-water mark is the export's time, "
                                                          "and the incremental exports after it apply again, in "
                                                          "order."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="Incremental exports: apply a window that "
                                                                      "starts before the table's high-water "
                                                                      "mark, by write time (changes written "
                                                                      "before the mark are skipped)."),
    key: Optional[List[str]] = typer.Option(None, "--key", metavar="ATTR", help="A key attribute of the DynamoDB "
                                            "table (give the partition key, then the sort key: --key pk --key "
                                            "sk): an item lacking one, or a full export holding a key twice, is "
                                            "refused (default: not checked)."),
    merge_mode: Optional[str] = typer.Option(None, "--merge-mode", metavar="[copy-on-write|merge-on-read]",
                                             callback=_one_of("copy-on-write", "merge-on-read"),
                                             help="Incremental exports: copy-on-write rewrites every data file "
                                                  "holding a changed key; merge-on-read writes Iceberg "
                                                  "position-delete files instead (far less to write; readers "
                                                  "apply them until `maintain` compacts). Recorded in the "
                                                  "table's write.merge.mode; default: that property, else "
                                                  "copy-on-write."),
    history: bool = typer.Option(False, "--history", help="Incremental exports: also append each change (key, "
                                                          "operation, write time, new and old images) to the change "
                                                          "history table <table>_changes, created if needed; "
                                                          "catches up exports it lacks."),
    runner: str = typer.Option("local", metavar="[local|spark|glue|emr_serverless]", callback=_one_of(*RUNNERS),
                               help="local: worker processes on this machine; spark: shard tasks in one Spark "
                                    "application (spark-submit; needs the spark extra and Java); glue: shard "
                                    "tasks in AWS Glue job runs (--glue-job, --staging); emr_serverless: shard "
                                    "tasks in EMR Serverless job runs (--emr-application, --emr-role, "
                                    "--emr-entry-point, --staging). Incremental exports always merge on this "
                                    "machine."),
    glue_job: Optional[str] = typer.Option(None, metavar="NAME", help="--runner glue: the Glue job whose script "
                                           "'ddb-assets shard package' uploaded."),
    emr_application: Optional[str] = typer.Option(None, metavar="ID", help="--runner emr_serverless: the EMR "
                                                  "Serverless application (Spark) that runs the job."),
    emr_role: Optional[str] = typer.Option(None, metavar="ARN", help="--runner emr_serverless: the job runtime "
                                           "role (reads the export, writes the table's files and --staging)."),
    emr_entry_point: Optional[str] = typer.Option(None, metavar="URI", help="--runner emr_serverless: the job "
                                                  "script 'ddb-assets shard package' uploaded (s3://)."),
    emr_py_files: Optional[str] = typer.Option(None, metavar="URI", help="--runner emr_serverless: the package's "
                                               "zip 'ddb-assets shard package' uploaded (spark.submit.pyFiles; "
                                               "omit when the application's Python has the package)."),
    staging: Optional[str] = typer.Option(None, metavar="DIR", help="--runner glue or emr_serverless: the s3:// "
                                          "folder the shard specs and results pass through; --runner spark: a "
                                          "local or s3:// one (default: a temporary local folder, for local[N] "
                                          "only: a cluster master needs a folder its executors reach, which "
                                          "write each shard's result there)."),
    spark_master: Optional[str] = typer.Option(None, metavar="MASTER", help="spark-submit's --master for "
                                               "--runner spark: local[N], spark://HOST:7077, yarn (default: "
                                               "local[*])."),
    shards: Optional[int] = typer.Option(None, min=0, metavar="N", help="Shard tasks for --runner spark, glue or "
                                         "emr_serverless "
                                         "(0, the default: about one per 256 MiB of gzip input, at least two, at "
                                         "most one per data file)."),
) -> None:
    """Convert a DynamoDB export into an Iceberg table of typed, flattened Parquet, in one commit.

    A full export creates the table, or gives an existing one a new snapshot replacing its data,
    with its stored schema extended by what the export brings (new attributes become columns,
    names never change meaning). An incremental export is merged: its upserts and deletes by
    primary key, in one snapshot, if its window starts at the table's high-water mark. The previous
    snapshot stays readable (see `history`, `query --as-of`)."""
    from ddb_assets.cli_interrupts import AfterCommit
    from ddb_assets.exports.reader import open_export
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets.lake.profile import profile_from_json

    runner_options = _runner_options(runner, spark_master, shards, glue_job, staging,
                                     emr={"--emr-application": emr_application, "--emr-role": emr_role,
                                          "--emr-entry-point": emr_entry_point, "--emr-py-files": emr_py_files})
    given = {"partition_by": partition_by, "naming": naming, "max_depth": max_depth, "dictionary_keys": dictionary_keys}
    defaults = {"partition_by": None, "naming": "snake", "max_depth": 3, "dictionary_keys": 64}
    with _options_checked():  # bad values fail here, before the export is opened
        options = ConvertOptions(
            **{key: (value or None if key == "partition_by" else value) if value is not None else defaults[key]
               for key, value in given.items()},
            workers=workers, work_dir=work_dir, compression=compression, json_reader=json_reader,
            catalog=_catalog_config(catalog, namespace),
            table_name=table_name, rebuild=rebuild, allow_overlap=allow_overlap, history=history,
            runner=runner_options, key_attributes=tuple(key or ()),
            merge_mode=merge_mode,
            from_table=frozenset(key for key, value in given.items() if value is None))  # the table's own
    export, known = open_export(source), None
    if profile:
        try:
            saved_for, known = profile_from_json(resolve(profile).read_bytes(), obj=profile)
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValueError):
                raise CliError(str(exc)) from None
            from ddb_assets.cli_errors import environment_message

            raise CliError(f"--profile: {environment_message(exc)}") from None
        if saved_for != export.export_id:
            raise CliError(f"{profile} is the profile of export {saved_for}, not of {export.export_id}")
    progress, on_event = _conversion_progress()
    with AfterCommit(_say) as after:
        with progress:
            result = convert_export(export, dest, options, progress=after.watching(on_event), known=known)
        _converted(result, history=history, runner=runner, work_dir=work_dir)


def _say(line: str) -> None:
    """One line on stderr, as written (no markup)."""
    err_console.print(line, highlight=False, markup=False, soft_wrap=True)


def _converted(result: Any, *, history: bool, runner: str, work_dir: Optional[str]) -> None:
    """The summary lines of a conversion (``unchanged``, or what it committed)."""
    from ddb_assets.lake.convert import export_record
    from ddb_assets.lake.record import high_water_mark, iso_millis

    commit, plan = result.commit, result.plan
    mb = result.uncompressed_bytes / 1e6
    spec = plan.schema.partition
    partitions = result.partitions
    changes = commit.schema_changes
    merge, record = result.merge, export_record(result.export)
    mark = ("high-water mark", f"{iso_millis(high_water_mark(commit.table)[0])} (the --from of the next "
                               f"incremental export)")
    if result.unchanged:
        from ddb_assets.lake.guards import applying_snapshot

        applied_by = applying_snapshot(commit.table, result.export.export_id) or commit.snapshot_id
        _summary_lines([("unchanged", f"{result.table}: export {result.export.export_id} was applied already "
                                      f"(snapshot {applied_by})"
                                      + ("" if record.incremental else "; --rebuild converts it again")), mark,
                        *_history_lines(result)])
        _history_failed(result)
        return
    rows = [("committed", f"{result.table} snapshot {commit.snapshot_id}" + (" (new table)" if commit.created else "")),
            ("export", result.export.summary.export_arn)]
    if merge is not None:
        rows += [("merged", f"{counted(merge.upserts, 'upsert')}, {counted(merge.deletes, 'delete')} "
                            f"({merge.deletes_missing:,} of keys the table did not hold), "
                            + (f"{counted(merge.delete_files, 'position-delete file')} written (merge-on-read)"
                               if merge.merge_mode == "merge-on-read" else
                               f"{counted(merge.files_rewritten, 'file')} rewritten")),
                 ("window", f"{record.export_from_time} to {record.export_to_time} (the table's high-water mark now)")]
        rows += [("warning", warning) for warning in merge.warnings]
    else:
        rows.append(mark)
    rows += [
            ("items", f"{sum(p['rows'] for p in partitions.values()):,} written; the table now holds {commit.rows:,}"),
            ("partitions", f"{len(partitions):,}" + (f" by {spec.text}" if spec else " (unpartitioned)")),
            ("files", f"{commit.added:,} added"
                      + (f" ({counted(commit.added - commit.delete_files, 'data file')}, "
                         f"{counted(commit.delete_files, 'position-delete file')})" if commit.delete_files else "")
                      + f", {commit.removed:,} replaced (kept for older snapshots until maintenance)"),
            ("parquet bytes", f"{sum(p['bytes'] for p in partitions.values()):,}"),
            ("columns", f"{len(plan.columns)}" + (f" ({'; '.join(changes)})" if changes else "")),
            ("input", f"{mb:,.1f} MB uncompressed, {result.compressed_bytes / 1e6:,.1f} MB gzip"),
            ("time", f"{result.seconds:.2f}s, {mb / max(result.seconds, 1e-9):,.1f} MB/s"),
            ("read", result.path or f"{result.shards} shard tasks on the {runner} runner"),
            ("scratch", "none: the shard tasks write the files (no work folder here)" if result.shards else
             "none: one pass" if result.one_pass else
             f"{result.scratch_bytes / 1e6:,.1f} MB at most in {work_dir or tempfile.gettempdir()}"),
            ("parse", result.parse_path),
            ("location", result.location),
            ("metadata", commit.metadata_location)]
    if plan.variants:
        rows.append(("mixed types", ", ".join(f"{k} {v}" for k, v in plan.variants.items())))
    rows += [("warning", warning) for warning in result.warnings]
    if plan.vanished:
        rows.append(("vanished", ", ".join(plan.vanished) + " (kept as columns, null in this export's rows)"))
    if history and merge is None:
        rows.append(("history", f"{result.table}_changes: a full export adds no changes (the history starts with "
                                f"the next incremental export merged)"))
    _summary_lines(rows + _history_lines(result))
    _history_failed(result)


def _history_lines(result: Any) -> list[tuple[str, str]]:
    if result.history is None:
        return []
    appended = ", ".join(f"{rows:,} change{'' if rows == 1 else 's'} of export {export_id}"
                         for export_id, rows in result.history.appended)
    if appended:
        said = f"appended {appended}"
    elif result.history.began_after:
        said = (f"not appended: the history records the windows from {result.history.began_after} on (when it "
                f"was turned on), and this one ends before that")
    else:
        said = "holds this export already"
    return [("history", f"{result.table}_changes: {said}")]


def _history_failed(result: Any) -> None:
    if result.history_error:
        raise CliError(result.history_error)


def _runner_options(runner: str, spark_master: Optional[str], shards: Optional[int], glue_job: Optional[str] = None,
                    staging: Optional[str] = None,
                    emr: Optional[dict[str, Optional[str]]] = None):  # type: ignore[no-untyped-def]
    from ddb_assets.lake.shards.options import RunnerOptions

    emr = emr or {}
    # An option of another runner would be ignored silently: refused, like any combination that
    # does not go together.
    misplaced = [name for name, value, runners in (("--spark-master", spark_master, ("spark",)),
                                                    ("--shards", shards, ("spark", "glue", "emr_serverless")),
                                                    ("--glue-job", glue_job, ("glue",)),
                                                    *((name, value, ("emr_serverless",)) for name, value in emr.items()),
                                                    ("--staging", staging, ("spark", "glue", "emr_serverless")))
                 if value is not None and runner not in runners]
    if misplaced:
        raise click_errors.UsageError(f"{', '.join(misplaced)} {'is' if len(misplaced) == 1 else 'are'} not for "
                                      f"--runner {runner}")
    spark_master = "local[*]" if spark_master is None else spark_master
    shards = 0 if shards is None else shards
    try:
        return RunnerOptions(kind=runner, shards=shards, spark_master=spark_master, staging=staging,
                             glue_job=glue_job, emr_application=emr.get("--emr-application"),
                             emr_role=emr.get("--emr-role"), emr_entry_point=emr.get("--emr-entry-point"),
                             emr_py_files=emr.get("--emr-py-files"))
    except ValueError as exc:  # an option combination (--runner glue without --glue-job, ...): a usage error
        raise click_errors.UsageError(f"--{exc}") from None


shard_app = typer.Typer(cls=_Group, help="Shard tasks: the pieces of a conversion that runners hand to other "
                        "machines.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(shard_app, name="shard")


def _s3_folder(value: str) -> str:
    if not value.startswith("s3://"):
        raise typer.BadParameter(f"{value!r} is not an s3:// folder (Glue and EMR Serverless jobs read from S3)")
    return value


@shard_app.command("package", short_help="Build the wheel and upload it and the job's script to S3 (Glue, EMR "
                                         "Serverless).")
def shard_package(
    to: str = typer.Option(..., metavar="DIR", callback=_s3_folder,
                           help="The s3:// folder the Glue or EMR Serverless job reads the package and its script "
                                "from."),
) -> None:
    """Package what the glue and emr_serverless runners' executors need: build this package's
    wheel (pip wheel --no-deps, from the source checkout) and upload it, the same archive named
    .zip, and the job's script to --to. Prints what to set on the Glue job (ScriptLocation, and
    --additional-python-modules: Glue installs the wheel and its dependencies from PyPI), what
    the emr_serverless runner takes (the entry point, and the zip for spark.submit.pyFiles; the
    dependencies come with the application's Python or a virtualenv archive), and the settings'
    blocks."""
    from ddb_assets.lake.shards.package import PackageError, package

    try:
        done = package(to)
    except PackageError as exc:
        raise CliError(str(exc)) from None
    _summary_lines([("wheel", done.wheel), ("script", done.script), ("modules", done.modules),
                    ("on the job", f"Command.ScriptLocation {done.script}; GlueVersion 5.0 (Python 3.11); "
                                   f"--additional-python-modules {done.wheel} (Glue installs the wheel and its "
                                   f"dependencies; --extra-py-files {done.wheel} only where they are installed "
                                   f"already)"),
                    ("settings", "runner: glue; glue: {job: <the job's name>, staging: s3://<bucket>/<prefix>/}"),
                    ("emr serverless", f"--emr-entry-point {done.script} --emr-py-files {done.modules} (the "
                                       f"dependencies: a virtualenv archive in spark.archives, see README)"),
                    ("settings", f"runner: emr_serverless; emr_serverless: {{application_id: <id>, "
                                 f"execution_role_arn: <the job role's ARN>, entry_point: {done.script}, "
                                 f"py_files: {done.modules}, staging: s3://<bucket>/<prefix>/}}")])


@shard_app.command("run", short_help="Run one shard task here (a runner's worker; commits nothing).")
def shard_run(
    spec: str = typer.Option(..., metavar="FILE", help="The shard spec (JSON, as a runner writes it): local path or s3://."),
    result: Optional[str] = typer.Option(None, metavar="FILE", help="Where the result JSON goes (default: beside "
                                                                    "the spec, <spec name>.result.json)."),
) -> None:
    """Run one shard task here: read and check its data files (and, for a writing shard, write its
    Parquet files into the table's data folder, named by run, attempt and shard). Commits nothing:
    the runner's driver commits every shard's result in one snapshot. Bad input is reported in the
    result (and here, with its file and line; exit code 1)."""
    from ddb_assets.lake.shards.worker import result_path_for, run_shard_at

    try:
        done = run_shard_at(spec, result)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    where = result or result_path_for(spec)
    if done.error is not None:
        raise CliError(f"{done.error.message} (result: {where})")
    _summary_lines([("shard", f"{done.shard} (numbered from 0, as its files; attempt {done.attempt}) of run {done.run}"),
                    ("items", f"{sum(r.items for r in done.reads):,} read from {counted(len(done.reads), 'data file')}"),
                    ("files", f"{len(done.written):,} written, {sum(w.rows for w in done.written):,} rows"),
                    ("time", f"{done.seconds:.2f}s"),
                    ("result", where)])


@app.command()
def inspect(
    source: str = typer.Argument(..., metavar="SOURCE", help="Export folder or manifest-summary.json (local path "
                                                             "or s3://)."),
    partition_by: Optional[str] = typer.Option(None, metavar="SPEC", help="Partitioning, as convert's "
                                                                          "--partition-by."),
    naming: str = typer.Option("snake", metavar="[snake|glue]", callback=_one_of(*NAMINGS),
                               help="Column naming, as convert's --naming."),
    workers: int = typer.Option(0, min=0, metavar="N", help=WORKERS_HELP),
    save_profile: Optional[str] = typer.Option(None, metavar="FILE", help="Also write the profile to this file "
                                                                          "(local or s3://), for 'convert "
                                                                          "--profile'."),
    json_reader: str = typer.Option("arrow-rs", metavar="[arrow-rs|pyarrow]", callback=_one_of(*JSON_READERS),
                                    help=JSON_READER_HELP),
) -> None:
    """Show an export's summary manifest and the schema inferred from every item."""
    from rich.table import Table

    from ddb_assets.exports.json_reader import ReaderCounts
    from ddb_assets.lake.convert import ConvertOptions, profile_export
    from ddb_assets.lake.evolution import plan_table
    from ddb_assets.lake.report import attribute_rows

    with _options_checked():
        options = ConvertOptions(partition_by=partition_by or None, naming=naming, workers=workers,
                                 json_reader=json_reader)
    progress, on_event = _conversion_progress()
    readers = ReaderCounts()

    def on_parsed(kind: str, info: dict) -> None:  # type: ignore[type-arg]
        if kind == "parsed":
            readers.add(info["readers"])
        on_event(kind, info)

    with progress:
        export, profile = profile_export(source, options, progress=on_parsed)
    s = export.summary
    if s.incremental:
        when = [("window", f"{s.export_from_time} to {s.export_to_time} (ExportFromTime inclusive, ExportToTime "
                           f"exclusive)"),
                ("outputView", s.output_view or "not given (NEW_AND_OLD_IMAGES is the default)")]
        count = f"{s.item_count:,} change lines: {counted(s.item_count - profile.deletes, 'upsert')}, " \
                f"{counted(profile.deletes, 'delete')}"
    else:
        when, count = [("exportTime", str(s.export_time))], f"{s.item_count:,}"
    _summary_lines([("exportArn", s.export_arn), ("tableArn", s.table_arn), ("exportType", s.export_type), *when,
                    ("startTime", s.start_time), ("endTime", s.end_time), ("outputFormat", s.output_format),
                    ("itemCount", count), ("data files", str(len(export.files))),
                    ("s3", f"s3://{s.s3_bucket}/{s.s3_prefix or ''}"),
                    ("checksums", "md5 of every data file verified; " +
                     (", ".join(f"{c}.md5" for c in export.checksum_files_verified) or "no .md5 files") +
                     " verified"), ("parse", readers.describe(json_reader, s.output_format))])
    plan = plan_table(profile, options.schema_options, options.partition)
    schema = Table(title=f"schema inferred from all {counted(profile.items, 'item')}")
    for column in ("attribute", "types (count)", "null %", "mixed", "columns"):
        schema.add_column(column)
    for row in attribute_rows(profile, plan):
        schema.add_row("  " * row.depth + row.attribute,
                       ", ".join(f"{k} {v:,}" for k, v in row.types.items()),
                       f"{100 * row.null_fraction:.1f}", "yes" if row.mixed else "",
                       "\n".join(row.columns))
    console.print(schema)
    source_column = plan.schema.partition_source()
    if options.partition is not None and source_column is not None:
        console.print(f"partitioned by {options.partition.text} (column {source_column.name}, {source_column.type_}; "
                      f"{counted(len(profile.partition_values), 'partition')})", highlight=False, markup=False)
    if save_profile:
        from ddb_assets.exports.storage import resolve
        from ddb_assets.lake.profile import profile_to_json

        resolve(save_profile).write_bytes(profile_to_json(profile, export.export_id))
        console.print(f"profile saved to {save_profile}: 'convert --profile {save_profile}' converts this "
                      f"export in one pass", highlight=False, markup=False, soft_wrap=True)


def _lake(lake: Optional[str], catalog: Optional[str], namespace: Optional[str]):  # type: ignore[no-untyped-def]
    """(lake root Location, CatalogConfig, pyiceberg catalog). With --lake, as convert does: that
    lake with --catalog, or the SQLite catalog in its folder; the configuration file is not read.
    Without, the configuration's lake_root and catalog (DDB_ASSETS_CONFIG, else the packaged local
    profile); --catalog and --namespace override its catalog."""
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.catalog import CATALOG_FILE, CatalogConfig, open_catalog, relative_sqlite_hint

    given = lake is not None
    configured = None  # the configuration file, when the catalog is the one it names
    lake_from = ""  # where the lake came from, when no --lake named it
    if lake is None:
        from ddb_assets.settings import config_path, load_settings

        settings = load_settings()  # a bad configuration is an error here, never a silent default
        lake = settings.lake_root
        config = _catalog_config(catalog, namespace) if catalog else settings.catalog.config()
        configured = None if catalog else config_path()
        lake_from = f"lake_root of {config_path()}"
        if namespace and not catalog:
            config = CatalogConfig(config.kind, config.uri, namespace, config.properties)
    else:
        config = _catalog_config(catalog, namespace)
    root = resolve(lake)
    default_sql = config.kind == "sql" and config.uri is None
    # The folder matters only when the catalog lives in it; a Glue, REST or named SQLite catalog
    # knows where its tables are.
    if root.scheme == "file" and default_sql and not os.path.isdir(root.path):
        if os.path.exists(root.path):  # a file: converting "into it" cannot work, so no such advice
            where = f"--lake {root.uri}" if given else f"the lake {root.uri} ({lake_from})"
            raise CliError(f"{where} is a file, not a lake folder: give the folder that holds the lake's "
                           f"{CATALOG_FILE}")
        if given:
            raise CliError(f"--lake {root.uri} does not exist (convert an export into it first: ddb-assets convert "
                           f"SOURCE {root.uri}/TABLE)")
        raise CliError(f"the lake {root.uri} ({lake_from}) does not exist: give --lake, or convert an export "
                       f"into it first")
    # These commands only read: opening a SQLite catalog that is not there would create an empty one.
    if default_sql and root.scheme == "file" and not os.path.isfile(os.path.join(root.path, CATALOG_FILE)):
        if not given:  # the configuration named this folder: say which file, and the ways out it has
            raise CliError(f"the lake {root.uri} ({lake_from}) has no catalog ({CATALOG_FILE}): convert an export "
                           f"into it first, or give --lake, or --catalog")
        raise CliError(f"the lake {root.uri} has no catalog ({CATALOG_FILE}): convert an export into it first, "
                       f"or give the catalog (--catalog)")
    if config.kind == "sql" and config.uri and config.uri.startswith("sqlite:///") and ":memory:" not in config.uri \
            and not os.path.isfile(config.uri[len("sqlite:///"):]):
        if configured is not None:  # the user gave no --catalog: the file and key that named it are at fault
            raise CliError(f"{configured}: catalog.uri: the catalog {config.uri} does not exist (correct the "
                           f"uri, or make the catalog: convert an export with --catalog {config.uri})"
                           + relative_sqlite_hint(config.uri))
        raise CliError(f"the catalog {config.uri} does not exist (convert an export with this --catalog first)"
                       + relative_sqlite_hint(config.uri))
    return root, config, open_catalog(config, root)


def _engine_with_lake(lake: Optional[str], catalog: Optional[str], namespace: Optional[str], only: Optional[str],
                      raw: list[str], schema: Optional[str], as_of: Optional[str] = None,
                      sql: Optional[str] = None):  # type: ignore[no-untyped-def]
    from ddb_assets.exports.reader import open_export
    from ddb_assets.lake.catalog import list_tables, namespaces_named_in
    from ddb_assets.query.duckdb_engine import DuckDBEngine, NameCollision

    if as_of is not None and as_of.strip().lstrip("-").isdigit() and only is None:  # before the lake is opened
        raise click_errors.UsageError("--as-of SNAPSHOT_ID needs --table (snapshot ids are per table); a time "
                                      "applies to all")
    root, config, iceberg = _lake(lake, catalog, namespace)
    names = list_tables(iceberg, config.namespace)
    if only is not None and only not in names:
        raise CliError(f"no table {only!r} in the lake at {root.uri} (found: {', '.join(names) or 'none'})")
    engine = DuckDBEngine()
    engine.register_catalog(iceberg, config.namespace, only=only, schema=schema, as_of=as_of)
    if only is None and sql is not None:
        # Every namespace the SQL names is a DuckDB schema of that name ("default"."data"); the
        # configured one's tables are also unqualified, as above. Only the named ones: a Glue
        # catalog can hold many databases, and each table costs a scan plan.
        for other in namespaces_named_in(iceberg, sql):
            if other != (schema or "main"):
                engine.register_catalog(iceberg, other, schema=other, as_of=as_of)
    for spec in raw:  # each NAME=SOURCE (the option's callback checked)
        name, _, source = spec.partition("=")
        try:
            engine.register_raw_export(name, open_export(source), schema=schema)
        except NameCollision as exc:
            raise CliError(f"--raw {name}: {exc}") from None
    return engine, root, config, iceberg


# SQL may start with a comment ("-- top customers\nSELECT ..."): an unknown option-like
# argument is passed on as the SQL (or an extra argument) rather than refused by the option
# parser, and the command tells the two apart.
@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def query(
    ctx: typer.Context,
    sql: str = typer.Argument(..., metavar="SQL", help="One SQL statement (DuckDB dialect), quoted as "
                                      "one argument. Lake tables are views named after the table; reports are "
                                      "<table>_<report>; the tables of any other catalog namespace the SQL names "
                                      "are in a schema of that name (\"default\".\"data\")."),
    lake: Optional[str] = typer.Option(None, metavar="DIR", help=LAKE_HELP),
    catalog: Optional[str] = typer.Option(None, metavar="CATALOG", help=CATALOG_HELP),
    namespace: Optional[str] = typer.Option(None, metavar="NAME", help=NAMESPACE_HELP),
    table: Optional[str] = typer.Option(None, "--table", metavar="NAME", help="Register only this lake table."),
    as_of: Optional[str] = typer.Option(None, metavar="SNAPSHOT|TIME", callback=_as_of_value, help="Read the table(s) as of a snapshot "
                                        "id (with --table) or an ISO-8601 time (2026-11-30T12:00:00Z); at a time, tables made "
                                        "later are left out, named on stderr."),
    raw: list[str] = typer.Option([], "--raw", metavar="NAME=SOURCE", callback=_raw_values, help="Also register an export (its folder "
                                  "or manifest) as NAME: its items as one struct column `item` "
                                  "(item.customer_id.s). Repeatable."),
    schema: Optional[str] = typer.Option(None, metavar="NAME", help="Schema to register tables in, e.g. default "
                                                                    "(for SQL written as \"default\".\"data\")."),
    output: str = typer.Option("table", "--format", metavar="[table|vertical|csv|json]",
                               callback=_one_of(*QUERY_FORMATS), help=QUERY_FORMAT_HELP),
    limit: int = typer.Option(1000, min=1, metavar="N", help="Rows printed at most in table and vertical format "
                                                             "(csv and json print every row)."),
) -> None:
    """Run SQL over the lake with the embedded DuckDB engine and print the result."""
    import duckdb

    from ddb_assets.query.duckdb_engine import EmptyStatement, failure_hint, named_tables
    from ddb_assets.query.output import render

    # Unknown options reach here as words (SQL may start with "-- a comment"): an option-like
    # word is a usage error as anywhere else, and so is SQL in several arguments.
    words = [sql, *ctx.args]
    for word in words:
        if re.fullmatch(r"--?[A-Za-z][\w-]*(=\S*)?", word):
            name = word.partition("=")[0]
            known = [o for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("-")]
            raise click_errors.NoSuchOption(name, possibilities=difflib.get_close_matches(name, known), ctx=ctx)
    if ctx.args:
        raise click_errors.UsageError(f"the SQL is {len(words)} arguments; quote it as one "
                                      f"(ddb-assets query \"SELECT ...\")", ctx=ctx)
    try:
        statements = len(duckdb.extract_statements(sql))
    except duckdb.Error:
        statements = 1  # not parseable: the engine reports it, with the tables it could not read
    if statements > 1:
        raise CliError(f"the SQL holds {statements} statements; query runs one at a time: run each with its own "
                       f"ddb-assets query")
    engine, _, _, _ = _engine_with_lake(lake, catalog, namespace, table, raw, schema, as_of, sql)
    try:
        try:
            result = engine.query(sql).table
        except EmptyStatement as exc:
            raise CliError(str(exc)) from None
        except duckdb.Error as exc:
            # A table the SQL names but that is not registered is why DuckDB says it does not
            # exist: that cause is the one to give, not DuckDB's.
            broken = [f"table {name} could not be read: {engine.errors[name]}"
                      for name in named_tables(sql, engine.errors)]
            absent = [f"{engine.left_out[name]}: the SQL names it, so the query cannot run"
                      for name in named_tables(sql, engine.left_out)]
            if broken or absent:
                raise CliError("; ".join([*broken, *absent])) from None
            first = str(exc).splitlines()[0]
            raise CliError(f"query failed: {first}{failure_hint(first, sql)}") from None
    finally:
        engine.close()
    # The tables left out are reported (stderr: the result on stdout stays clean).
    for name, why in engine.left_out.items():
        err_console.print(f"note: table {name} left out: {why}", highlight=False, markup=False, soft_wrap=True)
    for name, why in engine.errors.items():
        err_console.print(f"warning: table {name} cannot be read, left out: {why}", highlight=False, markup=False,
                          soft_wrap=True)
    # A terminal's width decides between the grid and one line per column; piped or captured
    # output has no width, so nothing is ever wrapped or squeezed for it.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    rendered = render(result, output, width=width, limit=limit,
                      unicode=(sys.stdout.encoding or "").lower().replace("-", "") in ("utf8", "utf_8"))
    for note in rendered.notes:
        err_console.print(note, highlight=False, markup=False, soft_wrap=True)
    sys.stdout.write(rendered.text)


@app.command()
def tables(
    lake: Optional[str] = typer.Option(None, metavar="DIR", help=LAKE_HELP),
    catalog: Optional[str] = typer.Option(None, metavar="CATALOG", help=CATALOG_HELP),
    namespace: Optional[str] = typer.Option(None, metavar="NAME", help=NAMESPACE_HELP + " One namespace is "
                                            "listed: the demo's walkthrough tables are in --namespace default."),
    output: str = typer.Option("table", "--format", metavar="[table|json]", callback=_one_of("table", "json"),
                               help="table, or json: per table its identifier, catalog, metadata_location, "
                                    "current snapshot, rows, high-water mark, source table, partition spec and "
                                    "schema with each column's source attribute (a stable interface)."),
) -> None:
    """List the tables of one catalog namespace (reports included) with their snapshot, high-water
    mark, partitioning and columns (each with the attribute it comes from)."""
    import json

    from rich.table import Table

    from ddb_assets.lake.catalog import list_tables, load_table
    from ddb_assets.lake.tables import describe

    root, config, iceberg = _lake(lake, catalog, namespace)
    described, errors = [], {}
    for name in list_tables(iceberg, config.namespace):
        try:
            described.append(describe(load_table(iceberg, config.namespace, name), config.describe()))
        except Exception as exc:  # noqa: BLE001 - one unreadable table must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
    if output == "json":
        sys.stdout.write(json.dumps({"tables": described, "errors": errors}, indent=1) + "\n")
        return
    if not described and not errors:
        others = sorted(".".join(n) for n in _namespaces(iceberg) if ".".join(n) != config.namespace)
        console.print(f"no tables in {config.describe()} catalog namespace {config.namespace} (lake {root.uri})"
                      + (f"; the catalog's other namespaces: {', '.join(others)} (--namespace)" if others else ""),
                      highlight=False, soft_wrap=True)
    for entry in described:
        spec = ", ".join(f"{p['transform']}({p['source']})" + (f" of attribute {p['attribute']['text']}"
                                                              if p["attribute"] else "")
                         for p in entry["partition_spec"]) or "nothing"
        console.print(f"{entry['identifier']}: {counted(entry['rows'], 'row')}, {counted(entry['data_files'], 'file')}, "
                      f"partitioned by {spec}" + (f", export {entry['export_id']}" if entry["export_id"] else "")
                      + (f", high-water mark {entry['high_water_mark']}" if entry["high_water_mark"] else ""),
                      highlight=False, soft_wrap=True, markup=False)
        out = Table()
        for column in ("id", "column", "type", "source"):
            out.add_column(column)
        for column in entry["schema"]:
            out.add_row(str(column["id"]), column["name"], column["type"],
                        column["source"]["text"] if column["source"] else "")
        console.print(out)
        console.print(f"metadata: {entry['metadata_location']}", highlight=False, soft_wrap=True, markup=False)
    for name, why in errors.items():
        err_console.print(f"warning: table {name} cannot be read: {why}", highlight=False, soft_wrap=True,
                          markup=False)


def _table(lake: Optional[str], catalog: Optional[str], namespace: Optional[str], name: str):  # type: ignore[no-untyped-def]
    from ddb_assets.lake.catalog import list_tables, load_table

    root, config, iceberg = _lake(lake, catalog, namespace)
    table = load_table(iceberg, config.namespace, name)
    if table is None:
        found = list_tables(iceberg, config.namespace)
        raise CliError(f"no table {name!r} in the lake at {root.uri} (found: {', '.join(found) or 'none'})")
    return table


@app.command()
def history(
    table: str = typer.Argument(..., metavar="TABLE", help="Table name."),
    lake: Optional[str] = typer.Option(None, metavar="DIR", help=LAKE_HELP),
    catalog: Optional[str] = typer.Option(None, metavar="CATALOG", help=CATALOG_HELP),
    namespace: Optional[str] = typer.Option(None, metavar="NAME", help=NAMESPACE_HELP),
    output: str = typer.Option("table", "--format", metavar="[table|json]", callback=_one_of("table", "json"),
                               help="table: one line per snapshot; json: a list of snapshots."),
) -> None:
    """The table's snapshots, oldest first: when, what made it (convert, rebuild, merge,
    compaction; in a change history, history append or history rollback; or another writer's
    operation), which export, rows, files added and removed; the current one, and those a rollback
    left behind (rolled back), are marked."""
    import json

    from ddb_assets.lake.tables import history as table_history

    entries = table_history(_table(lake, catalog, namespace, table))
    if output == "json":
        sys.stdout.write(json.dumps(entries, indent=1) + "\n")
        return
    # Plain lines, not a table: snapshot and export ids stay whole in any terminal or pipe.
    console.print(f"{table}: {counted(len(entries), 'snapshot')}, oldest first", highlight=False, markup=False)
    header = f"{'snapshot':<20} {'committed (UTC)':<24} {'action':<16} {'export':<24} {'rows':>12} {'files':>11}"
    console.print(header, highlight=False, markup=False, soft_wrap=True)
    for e in entries:
        files = f"+{e['files_added']}/-{e['files_removed']}"
        mark = "  current" if e["current"] else "  rolled back" if e["rolled_back"] else ""
        console.print(f"{e['snapshot_id']:<20} {e['committed_at']:<24} {e['action']:<16} {e['export_id'] or '-':<24} "
                      f"{e['rows']:>12,} {files:>11}" + mark, highlight=False, markup=False, soft_wrap=True)


@app.command()
def rollback(
    table: str = typer.Argument(..., metavar="TABLE", help="Table name."),
    snapshot_id: int = typer.Argument(..., metavar="SNAPSHOT_ID", help="An earlier snapshot of the table (see "
                                                                       "`history`)."),
    lake: Optional[str] = typer.Option(None, metavar="DIR", help=LAKE_HELP),
    catalog: Optional[str] = typer.Option(None, metavar="CATALOG", help=CATALOG_HELP),
    namespace: Optional[str] = typer.Option(None, metavar="NAME", help=NAMESPACE_HELP),
) -> None:
    """Make an earlier snapshot current again (one commit; later snapshots stay until maintenance)."""
    from ddb_assets.cli_interrupts import AfterCommit
    from ddb_assets.lake.tables import rollback as table_rollback

    iceberg_table = _table(lake, catalog, namespace, table)
    current = iceberg_table.current_snapshot()
    already = current is not None and current.snapshot_id == snapshot_id
    with AfterCommit(_say) as after:
        rolled = table_rollback(iceberg_table, snapshot_id, on_event=after.watching(lambda kind, info: None))
        _rolled_back(table, rolled, already=already)


def _rolled_back(table: str, rolled: Any, *, already: bool = False) -> None:
    if already:
        console.print(f"{table} is at snapshot {rolled.current_snapshot().snapshot_id} already: nothing was "
                      f"committed (metadata {rolled.metadata_location})", highlight=False, soft_wrap=True,
                      markup=False)
        return
    console.print(f"{table} is at snapshot {rolled.current_snapshot().snapshot_id} again "
                  f"(metadata {rolled.metadata_location})", highlight=False, soft_wrap=True, markup=False)


@app.command(short_help="Compact small files, expire old snapshots, remove orphan files and stale uploads.")
def maintain(
    table: str = typer.Argument(..., metavar="TABLE", help="Table name."),
    lake: Optional[str] = typer.Option(None, metavar="DIR", help=LAKE_HELP),
    catalog: Optional[str] = typer.Option(None, metavar="CATALOG", help=CATALOG_HELP),
    namespace: Optional[str] = typer.Option(None, metavar="NAME", help=NAMESPACE_HELP),
    expire_after_days: Optional[float] = typer.Option(
        None, min=0, max=36500, metavar="DAYS", help="Expire snapshots older than this many days... (default: the "
                                                     "configuration's maintenance.expire_after_days, 7)"),
    keep_snapshots: Optional[int] = typer.Option(
        None, min=1, metavar="N", help="...keeping at least this many; the current one always stays (default: "
                                       "maintenance.keep_snapshots, 10)."),
    grace_hours: Optional[float] = typer.Option(
        None, min=0, max=876000, metavar="HOURS", help="Remove unreferenced files, and abort incomplete "
                                                       "multipart uploads, older than this many hours (default: "
                                                       "maintenance.orphan_grace_hours, 24)."),
    small_file_mb: Optional[float] = typer.Option(
        None, min=0, metavar="MB", help="Compact partitions holding several files under this size, or files with "
                                        "position deletes (merge-on-read; 0: no compaction; default: "
                                        "maintenance.small_file_bytes, 32 MB)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be done; change nothing."),
    work_dir: Optional[str] = typer.Option(None, metavar="DIR", help="Where conversions keep their scratch "
                                           "(convert --work-dir; default TMPDIR): folders of runs no longer "
                                           "running are removed."),
) -> None:
    """Compact small files (folding position deletes), expire old snapshots, remove orphan files (of failed
    runs and expired snapshots), abort a table on S3's incomplete multipart uploads (of writers killed
    mid-file) older than the grace period, and remove the scratch folders of conversions that were killed. Options not
    given come from the configuration's maintenance: block (as the Dagster maintenance job runs it);
    with --lake, where the configuration is not read, from its defaults."""
    from datetime import timedelta

    from ddb_assets.cli_interrupts import AfterCommit
    from ddb_assets.lake.maintenance import MaintenanceOptions, maintain as run_maintenance
    from ddb_assets.lake.scratch import remove_stale_scratch
    from ddb_assets.settings import MaintenanceSettings, load_settings

    configured = MaintenanceSettings() if lake is not None else load_settings().maintenance
    options = MaintenanceOptions(
        expire_after=timedelta(days=configured.expire_after_days if expire_after_days is None else expire_after_days),
        keep_snapshots=configured.keep_snapshots if keep_snapshots is None else keep_snapshots,
        grace=timedelta(hours=configured.orphan_grace_hours if grace_hours is None else grace_hours),
        small_file_bytes=configured.small_file_bytes if small_file_mb is None else int(small_file_mb * (1 << 20)),
        dry_run=dry_run)
    iceberg_table = _table(lake, catalog, namespace, table)
    with AfterCommit(_say) as after:  # its commits (compaction, expiry) are critical sections, as convert's
        result = run_maintenance(iceberg_table, options, on_event=after.watching(lambda kind, info: None))
        scratch = remove_stale_scratch(work_dir, dry_run=dry_run)
        _maintained(iceberg_table, result, scratch, dry_run=dry_run, work_dir=work_dir)
    if options.grace < timedelta(hours=1) and not dry_run:
        err_console.print(f"warning: a grace of {options.grace.total_seconds() / 3600:g} hours: files of a conversion "
                          f"or merge still writing to {table} may be removed as orphans (its commit then fails); "
                          f"keep it longer than your longest run", highlight=False, markup=False, soft_wrap=True)


def _maintained(iceberg_table: Any, result: Any, scratch: list, *, dry_run: bool,  # type: ignore[type-arg]
                work_dir: Optional[str]) -> None:
    would = "would be " if dry_run else ""
    _summary_lines([("table", f"{'.'.join(iceberg_table.name())} at {iceberg_table.location()}"),
                    ("compacted", f"{counted(len(result.compacted), 'partition')} {would}rewritten"
                                  + (f" ({counted(sum(b for b, _ in result.compacted.values()), 'file')} into "
                                     f"{len(result.compacted)}"
                                     + (f", {counted(result.folded_delete_files, 'position-delete file')} folded"
                                        if result.folded_delete_files else "") + ")"
                                     if result.compacted else "")),
                    ("expired", f"{counted(len(result.expired_snapshots), 'snapshot')} {would}expired"),
                    ("orphans", f"{counted(len(result.orphans), 'file')} {would}removed, {counted(result.orphan_bytes, 'byte')}"),
                    *([("uploads", f"{counted(len(result.aborted_uploads), 'incomplete multipart upload')} "
                                   f"{would}aborted" + (" (not all: see the error)" if result.uploads_error else ""))]
                      if iceberg_table.location().startswith("s3://") else []),
                    ("scratch", f"{counted(len(scratch), 'folder')} of ended runs {would}removed, "
                                f"{counted(sum(s.bytes for s in scratch), 'byte')} in {work_dir or tempfile.gettempdir()}"),
                    ("time", f"{result.seconds:.2f}s")])
    if result.uploads_error:  # the rest is done (and said above); the uploads are not: exit code 1
        raise CliError(result.uploads_error)


def _namespaces(iceberg: Any) -> list[tuple[str, ...]]:
    """The catalog's namespaces (none when it cannot list them: a hint only)."""
    try:
        return [tuple(n) for n in iceberg.list_namespaces()]
    except Exception:  # noqa: BLE001 - a catalog that cannot list namespaces only loses the hint
        return []


def main() -> None:
    """The console script. Usage errors (an unknown option, a missing argument, a value out of
    range or not among the choices) print the usage line and ``error: ...``, exit code 2. Every
    other error the user can act on prints ``error: ...`` on one line, exit code 1: our own
    refusals, bad exports, AWS errors, and the environment's (a read-only or full disk, a missing
    bucket, a catalog file that is not one, a server that does not answer), naming the path or
    URI. ``DDB_ASSETS_DEBUG=1`` also prints the traceback. Anything else is a bug: a traceback.
    Ctrl-C prints ``interrupted`` (``interrupted: nothing was committed`` for a command that
    commits), exit code 130; SIGTERM the same with ``terminated``, 143 (cli_interrupts.py)."""
    from ddb_assets.cli_interrupts import interrupted_by, stop_on_signals

    stop_on_signals()
    try:
        code = app(standalone_mode=False)
        if code == 130:  # typer's answer to a KeyboardInterrupt in the command (no command returns 130)
            _interrupted()
    except KeyboardInterrupt:  # one that came outside the command (typer catches those inside)
        _interrupted()
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        _usage_error(exc)
    except click_errors.ClickException as exc:
        _error(exc.format_message(), exc)
    except typer.Abort as exc:  # end of input where some was needed (typer exits 130 on Ctrl-C itself)
        _error("aborted", exc)
    except Exception as exc:  # noqa: BLE001 - the user's and the environment's errors become one line; bugs stay tracebacks
        if interrupted_by() is not None:  # what the interrupt broke (a worker it ended, a connection): no error
            _interrupted()
        message = _one_line(exc)
        if message is None:
            raise
        _error(message, exc)
    # Not standalone, click returns what the command returned (None), or an exit code (--help, typer.Exit).
    sys.exit(code if isinstance(code, int) else 0)


# The errors the user can act on, by the module that defines each: looked up when an error arrives,
# and only in the modules this run imported (an error can only come from a module that is loaded),
# so that main() imports nothing: ``--help`` and each command pay for the modules they use only.
_ACTIONABLE = (("ddb_assets.exports.errors", "ExportFormatError"), ("ddb_assets.aws.dynamodb_exports", "ExportFailed"),
               ("ddb_assets.aws.dynamodb_exports", "ExportTimeout"), ("ddb_assets.settings", "ConfigError"),
               ("ddb_assets.lake.convert", "ScratchSpaceError"), ("ddb_assets.lake.commit", "CommitConflict"),
               ("ddb_assets.lake.guards", "Refused"), ("ddb_assets.lake.plan_checks", "ProfileMismatch"),
               ("ddb_assets.lake.evolution", "SchemaConflict"), ("ddb_assets.lake.partitioning", "PartitionError"),
               ("ddb_assets.lake.catalog", "CatalogError"), ("ddb_assets.lake.shards.spec", "ShardFailed"),
               ("ddb_assets.lake.tables", "RollbackRefused"))


def _loaded(module: str, name: str) -> tuple[type, ...]:
    """The class ``name`` of ``module`` if that module is imported (else an empty tuple)."""
    kind = getattr(sys.modules.get(module), name, None)
    return (kind,) if isinstance(kind, type) else ()


def _one_line(exc: Exception) -> Optional[str]:
    """What main() prints after ``error:`` for an error the user can act on (our refusals, bad
    exports, AWS errors, the environment's), or None for a bug (its traceback is shown)."""
    from ddb_assets.cli_errors import environment_message

    option_error = _loaded("ddb_assets.lake.schema", "OptionError")
    if option_error and isinstance(exc, option_error):  # the CLI's spelling of the option
        return f"--{exc.option.replace('_', '-')} {exc.problem}"  # type: ignore[attr-defined]
    actionable = (CliError, LookupError) + tuple(kind for place in _ACTIONABLE for kind in _loaded(*place))
    if isinstance(exc, actionable):
        return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    client_error = _loaded("botocore.exceptions", "ClientError")
    if client_error and isinstance(exc, client_error):
        error = exc.response.get("Error", {})  # type: ignore[attr-defined]
        return f"{error.get('Code')}: {error.get('Message')}"
    botocore_error = _loaded("botocore.exceptions", "BotoCoreError")
    if botocore_error and isinstance(exc, botocore_error):
        return str(exc)
    return environment_message(exc)


def _usage_error(exc: click_errors.UsageError) -> None:
    """The usage line, then ``error: MESSAGE (see COMMAND --help)``; exit code 2, as click's."""
    context = exc.ctx
    message = exc.format_message()
    # click's sentences ("No such option: --x.", "Invalid value for '--n': Input should be ...") as
    # the rest of our lines: lower case, no final period.
    message = re.sub(r"^([A-Z])(?=[a-z ])", lambda m: m[1].lower(), message)
    message = re.sub(r"^(invalid value for '[^']+': )(?:Value error, )?([A-Z])(?=[a-z ])",
                     lambda m: m[1] + m[2].lower(), message)
    message = re.sub(r"(?<!\.)\.$", "", message)  # a final period, not an ellipsis (rest:https://...)
    if context is not None:
        err_console.print(context.get_usage(), highlight=False, markup=False, soft_wrap=True)
        message += f" (see {context.command_path} --help)"
    _error(message, exc, code=exc.exit_code)


def _interrupted() -> None:
    """The one line of a command stopped by Ctrl-C or SIGTERM, and its exit code (130, 143)."""
    from ddb_assets.cli_interrupts import stopped

    line, code = stopped()
    err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    _exit_without_stuck_threads(code)
    sys.exit(code)


# How long an interrupted command waits for its other threads (S3 reads, deletes) to end.
THREADS_GRACE_SECONDS = 2.0


def _exit_without_stuck_threads(code: int) -> None:
    """Exit now with ``code`` when threads other than this one are still running after
    THREADS_GRACE_SECONDS: Python's exit would wait for each (a read stuck on an endpoint that
    stopped answering, for minutes). What they leave is what an interrupted run leaves (files no
    snapshot refers to, for maintenance); the line above is already printed."""
    import os
    import threading
    import time

    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    deadline = time.monotonic() + THREADS_GRACE_SECONDS
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in others):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _error(message: str, exc: Optional[BaseException] = None, code: int = 1) -> None:
    """``error: MESSAGE`` on one line (whitespace runs, line breaks included, become one space; the
    message is text, never markup), and exit ``code``. With DDB_ASSETS_DEBUG=1, the traceback of
    ``exc`` first."""
    import traceback

    from rich.text import Text

    from ddb_assets.cli_errors import debug_requested

    if exc is not None and debug_requested():
        traceback.print_exception(exc, file=sys.stderr)
    err_console.print(Text.assemble(("error:", "red"), " ", " ".join(message.split())), highlight=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
