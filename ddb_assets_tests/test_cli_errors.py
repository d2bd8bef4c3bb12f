"""What the command line says when the input or the environment is wrong: a usage error is the
usage line and one ``error:`` line, exit code 2, before anything is read or written; an error of
the environment (a read-only or occupied path, a missing bucket, a catalog file that is not one, a
server that does not answer) or of the chain of incremental exports is one ``error:`` line naming
the path or URI, exit code 1, never a traceback; help reads at 80 columns."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from ddb_assets.cli_errors import environment_message
from ddb_assets.wording import counted
from ddb_assets_tests import doctor
from ddb_assets_tests.cli_helpers import ddb_assets_command, free_port, run_cli
from ddb_assets_tests.conftest import unique

COMMANDS = ["demo", "dev", "emulator", "clock", "load", "export", "generate-export", "convert", "inspect", "query",
            "tables", "history", "rollback", "maintain", "shard"]


# -- the words ---------------------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("number, noun, plural, expected", [
    (1, "delete", None, "1 delete"),
    (0, "delete", None, "0 deletes"),
    (2, "upsert", None, "2 upserts"),
    (3000, "item", None, "3,000 items"),
    (1, "entry", "entries", "1 entry"),
    (5, "entry", "entries", "5 entries"),
    (1.0, "file", None, "1 file"),  # rich's progress counts in floats
    (1.5, "day", None, "1.5 days"),
])
def test_counts_agree_with_their_number(number: float, noun: str, plural: str | None, expected: str) -> None:
    assert counted(number, noun, plural) == expected


@pytest.mark.fast
def test_the_command_lines_choices_are_the_libraries() -> None:
    """The CLI spells its choices out (parsing the command line imports neither pyarrow nor
    pyiceberg): they must stay the ones the code accepts."""
    from ddb_assets import cli
    from ddb_assets.lake.schema import NAMING_MODES
    from ddb_assets.lake.shards.options import RUNNERS
    from ddb_assets.lake.writer import COMPRESSIONS
    from ddb_assets.query.output import FORMATS

    assert (cli.NAMINGS, set(cli.COMPRESSIONS), cli.RUNNERS, cli.QUERY_FORMATS) == \
        (NAMING_MODES, set(COMPRESSIONS), RUNNERS, FORMATS)


# -- the environment's errors, as the system raises them ----------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("code, expected", [
    (errno.EROFS, "/x/lake: read-only file system: give a destination on a writable volume"),
    (errno.EACCES, "/x/lake: permission denied: fix its permissions, or give another destination"),
    (errno.ENOSPC, "/x/lake: no space left on the device: free some space, or give a destination on another volume "
                   "(--work-dir for convert's scratch)"),
    (errno.ENAMETOOLONG, "/x/lake: the name is too long: give a shorter path"),
])
def test_an_os_error_names_the_path_and_what_to_do(code: int, expected: str) -> None:
    assert environment_message(OSError(code, os.strerror(code), "/x/lake")) == expected


@pytest.mark.fast
def test_real_errors_of_files_databases_and_servers_become_one_line(tmp_path: Path) -> None:
    import pyarrow.fs
    import requests
    import sqlalchemy

    occupied = tmp_path / "a-file"
    occupied.write_text("")
    with pytest.raises(OSError) as raised:  # pyarrow words it: "Cannot create directory '...'. Detail: ..."
        pyarrow.fs.LocalFileSystem().create_dir(str(occupied / "lake"), recursive=True)
    assert environment_message(raised.value) == (f"{occupied / 'lake'}: a file stands where a folder is needed: "
                                                 f"give a folder path, or move the file away")

    garbage = tmp_path / "catalog.db"
    garbage.write_bytes(b"not a database, not at all")
    with pytest.raises(sqlalchemy.exc.DatabaseError) as db_error:
        with sqlalchemy.create_engine(f"sqlite:///{garbage}").connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1 FROM iceberg_tables"))
    assert environment_message(db_error.value) == ("the catalog database failed: file is not a database (give another --catalog, or repair or move the "
                                                   "catalog file)")

    port = free_port()
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{port}/v1/config", timeout=5)
    assert environment_message(refused.value) == (f"nothing answers at http://127.0.0.1:{port}/v1/config (Connection "
                                                  f"refused): start the server, or check the URI given (--catalog "
                                                  f"rest:..., AWS_ENDPOINT_URL)")
    assert environment_message(ValueError("a bug")) is None  # anything else keeps its traceback


# -- the same, through the command line -------------------------------------------------------

@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return doctor.make_export(tmp_path_factory.mktemp("export"), items=40, files=1)


def _one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit code 1 and, on stderr, exactly one line, ``expected``, beside progress bars."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [expected], result.stderr


def test_a_missing_profile_is_named_like_any_missing_file(tmp_path: Path, export: Path) -> None:
    _one_line(run_cli("convert", str(export), str(tmp_path / "lake" / "t"), "--profile", "nope.json", cwd=tmp_path),
              f"error: --profile: {tmp_path / 'nope.json'}: no such file or folder: check the path")
    assert not (tmp_path / "lake").exists()


def test_a_catalog_file_that_is_not_a_database_is_named(tmp_path: Path, export: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "catalog.db").write_text("garbage\n")
    expected = (f"error: the catalog sqlite:///{lake}/catalog.db cannot be opened (file is not a database): is it "
                f"an Iceberg SQL catalog? Give another --catalog, or repair or move the file")
    for args in (["convert", str(export), str(lake / "reviews"), "--workers", "1"], ["tables", "--lake", str(lake)],
                 ["query", "SELECT 1", "--lake", str(lake)]):
        _one_line(run_cli(*args), expected)
    assert (lake / "catalog.db").read_text() == "garbage\n" and sorted(p.name for p in lake.iterdir()) == ["catalog.db"]


def test_a_file_where_the_lake_folder_goes_is_named(tmp_path: Path, export: Path) -> None:
    occupied = tmp_path / "lake"
    occupied.write_text("")
    _one_line(run_cli("convert", str(export), str(occupied / "reviews"), "--workers", "1"),
              f"error: destination '{occupied / 'reviews'}' is inside the file {occupied}, not a folder: give a "
              f"table folder (a new one, or the table's own)")


# Ctrl-C at a chosen point of a real `ddb-assets convert` process: the point's function is wrapped
# to send the process SIGINT (as a terminal does) before or after calling it.
_INTERRUPTED_AT = """
import os, signal, sys
import ddb_assets.cli as cli, ddb_assets.lake.convert as convert
module, name, when = sys.argv[1:4]
place = {"cli": cli, "convert": convert}[module]
real = getattr(place, name)
def interrupted(*args, **kwargs):
    if when == "before":
        os.kill(os.getpid(), signal.SIGINT)
    result = real(*args, **kwargs)
    if when == "after":
        os.kill(os.getpid(), signal.SIGINT)
    return result
setattr(place, name, interrupted)
sys.argv = ["ddb-assets", *sys.argv[4:]]
cli.main()
"""


@pytest.mark.parametrize("point", [("cli", "_summary_lines", "after"), ("convert", "keep_profile", "before"),
                                   ("convert", "commit_export", "before"), ("convert", "commit_export", "after")],
                         ids=["after-the-summary", "while-finishing", "as-the-commit-starts", "as-the-commit-lands"])
def test_an_interrupt_after_the_commit_exits_0_saying_it_is_committed(tmp_path: Path, export: Path,
                                                                      point: tuple[str, str, str]) -> None:
    import json
    import sys

    lake = tmp_path / "lake"
    result = subprocess.run([sys.executable, "-c", _INTERRUPTED_AT, *point, "convert", str(export),
                             str(lake / "t"), "--workers", "1"], capture_output=True, text=True, timeout=180)
    snapshot = json.loads(run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout)[-1]["snapshot_id"]
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^committed +ddb_lake.t snapshot {snapshot} \(new table\)$", result.stdout, re.M)
    assert "metadata" in result.stdout  # the whole summary
    assert result.stderr.splitlines()[-1] == f"interrupted after the commit: snapshot {snapshot} is committed"


def test_an_interrupt_before_the_commit_exits_130_committing_nothing(tmp_path: Path, export: Path) -> None:
    import sys

    lake = tmp_path / "lake"
    # The last moment before the commit's critical section (the files are written, nothing committed).
    result = subprocess.run([sys.executable, "-c", _INTERRUPTED_AT, "convert", "_read_and_write", "after", "convert",
                             str(export), str(lake / "t"), "--workers", "1"], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 130 and "committed " not in result.stdout, result
    assert result.stderr.splitlines()[-1] == "interrupted: nothing was committed"
    assert not lake.exists()  # the files the run wrote, and the folders it made, are gone


# A real `ddb-assets convert` whose workers flush (and open their Parquet files) early and slowly,
# so that a signal can reach it while files of the run are on disk.
_SLOW_WRITER = """
import sys, time
import ddb_assets.cli as cli, ddb_assets.lake.writer as writer
writer.ROW_GROUP_ROWS = 200
flush = writer.PartitionedWriter._flush
def slow_flush(self, target):
    flush(self, target)
    time.sleep(0.05)
writer.PartitionedWriter._flush = slow_flush
sys.argv = ["ddb-assets", *sys.argv[1:]]
cli.main()
"""


@pytest.fixture(scope="module")
def bigger_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ddb_assets.local.bulk_export import generate_folder_export

    return generate_folder_export(tmp_path_factory.mktemp("bigger"), items=12_000, files=2, seed=5).parent


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _signalled_mid_write(export: Path, dest: Path, deliver: Any, *, ignore_sigint: bool = False,
                         extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Convert ``export`` into ``dest`` with two workers; once a Parquet file of the run is on
    disk, ``deliver(process)``; the finished process."""
    import signal
    import sys

    before = set(dest.rglob("*.parquet")) if dest.exists() else set()
    process = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, "convert", str(export), str(dest), "--workers",
                                "2", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True,
                               preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint
                               else None)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline and \
                not (set(dest.rglob("*.parquet")) - before if dest.exists() else set()):
            time.sleep(0.02)
        assert process.poll() is None, f"the conversion ended before its signal: {process.communicate()}"
        deliver(process)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("signal_name, to, code, line", [
    ("SIGINT", "group", 130, "interrupted: nothing was committed"),  # Ctrl-C in a terminal
    ("SIGINT", "parent", 130, "interrupted: nothing was committed"),  # kill -INT PID: the workers are ended
    ("SIGTERM", "parent", 143, "terminated: nothing was committed"),  # kill PID, timeout, a supervisor
    ("SIGTERM", "group", 143, "terminated: nothing was committed"),
])
def test_a_signal_mid_write_leaves_no_file_and_prints_one_line(tmp_path: Path, bigger_export: Path,
                                                              signal_name: str, to: str, code: int, line: str) -> None:
    import signal

    number = getattr(signal, signal_name)
    lake = tmp_path / "lake"
    result = _signalled_mid_write(bigger_export, lake / "t", lambda p: os.killpg(p.pid, number) if to == "group"
                                  else os.kill(p.pid, number))
    assert (result.returncode, result.stderr.splitlines()[-1]) == (code, line), result.stderr
    assert "Traceback" not in result.stderr and "BrokenProcessPool" not in result.stderr
    assert not lake.exists(), sorted(lake.rglob("*"))  # a new table: no file, no folder, no catalog left


def test_an_interrupted_run_of_an_existing_table_leaves_its_files_as_they_were(tmp_path: Path,
                                                                               bigger_export: Path) -> None:
    import signal

    lake = tmp_path / "lake"
    assert run_cli("convert", str(bigger_export), str(lake / "t"), "--workers", "1").returncode == 0
    files = {p: p.stat().st_size for p in lake.rglob("*") if p.is_file()}
    result = _signalled_mid_write(bigger_export, lake / "t", lambda p: os.killpg(p.pid, signal.SIGINT),
                                  extra=("--rebuild",))
    assert (result.returncode, result.stderr.splitlines()[-1]) == (130, "interrupted: nothing was committed")
    assert {p: p.stat().st_size for p in lake.rglob("*") if p.is_file()} == files


def test_ctrl_c_under_a_parent_that_ignores_it_changes_nothing(tmp_path: Path, bigger_export: Path) -> None:
    """A process started ignoring SIGINT (nohup-like launchers, a script's background job) is not
    interrupted by the group's SIGINT, and neither are its workers: the conversion commits."""
    import signal

    result = _signalled_mid_write(bigger_export, tmp_path / "lake" / "t", lambda p: os.killpg(p.pid, signal.SIGINT),
                                  ignore_sigint=True)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^committed +ddb_lake.t snapshot \d+ \(new table\)$", result.stdout, re.M)


def test_a_worker_killed_mid_write_is_one_line_and_leaves_no_file(tmp_path: Path, bigger_export: Path) -> None:
    import signal

    lake = tmp_path / "lake"

    def kill_a_worker(process: subprocess.Popen[str]) -> None:
        workers = [pid for pid in _children(process.pid) if b"resource_tracker" not in
                   Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(workers[0], signal.SIGKILL)  # as the OOM killer does

    result = _signalled_mid_write(bigger_export, lake / "t", kill_a_worker)
    _one_line(result, "error: a worker process ended abruptly (killed, perhaps by the system for want of memory); "
                      "nothing was committed: run it again, with fewer --workers if memory is short")
    assert not lake.exists(), sorted(lake.rglob("*"))


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only file system (a tmpfs mounted read-only), where the system can make one."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None or subprocess.run(
            [mount, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("mounting a read-only file system needs root and mount")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_destination_is_one_line_naming_it(read_only: Path, tmp_path: Path, export: Path) -> None:
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"  # the catalog elsewhere: the data files meet the read-only disk
    result = run_cli("convert", str(export), str(read_only / "lake" / "reviews"), "--workers", "1", "--catalog",
                     catalog)
    # Found before the export is read (no progress bar), naming the destination and the folder.
    assert result.stderr.splitlines() == [
        f"error: destination '{read_only / 'lake' / 'reviews'}' cannot be written: the folder {read_only} is on a "
        f"read-only file system: give a destination on a writable volume"]
    debug = run_cli("convert", str(export), str(read_only / "lake" / "reviews"), "--workers", "1", "--catalog",
                    catalog, env={"DDB_ASSETS_DEBUG": "1"})
    assert "Traceback" in debug.stderr and debug.stderr.splitlines()[-1] == result.stderr.splitlines()[-1]


def test_a_missing_bucket_is_named_before_the_export_is_read(aws_env: dict[str, str], tmp_path: Path,
                                                               export: Path) -> None:
    bucket = unique("missing")
    catalog = tmp_path / "catalog.db"
    result = run_cli("convert", str(export), f"s3://{bucket}/lake/reviews", "--workers", "1", "--catalog",
                     f"sqlite:///{catalog}", env=aws_env)
    assert result.returncode == 1
    # One line, before the parse's progress (nothing read) and before the catalog file is made.
    assert result.stderr.splitlines() == [
        f"error: destination 's3://{bucket}/lake/reviews' cannot be written: the bucket does not exist: create it, "
        f"or check the s3:// URI (NO_SUCH_BUCKET during PutObject)"]
    assert not catalog.exists()


@pytest.mark.parametrize("catalog, code, expected", [
    # A --catalog that cannot be one is a usage error (the usage line, then this one).
    ("rest", 2, "error: invalid value for '--catalog': 'rest': a rest catalog needs its endpoint, as "
                "rest:https://host/path (see ddb-assets {command} --help)"),
    ("rest:", 2, "error: invalid value for '--catalog': 'rest:': a rest catalog needs its endpoint, as "
                 "rest:https://host/path (see ddb-assets {command} --help)"),
    ("bogus", 2, "error: invalid value for '--catalog': 'bogus' is not a catalog: use sql, "
                 "sqlite:///relative/catalog.db, sqlite:////absolute/catalog.db, glue or rest:https://... (see "
                 "ddb-assets {command} --help)"),
    ("rest:http://127.0.0.1:{port}", 1, "error: no Iceberg REST catalog answers at http://127.0.0.1:{port} "
                                        "(Connection refused): start it, or check --catalog (catalog.uri in the "
                                        "configuration)"),
])
def test_a_rest_catalog_without_an_endpoint_or_a_server_is_one_line(tmp_path: Path, catalog: str, code: int,
                                                                    expected: str) -> None:
    port = free_port()
    for args in (["tables"], ["query", "SELECT 1"]):
        result = run_cli(*args, "--lake", str(tmp_path), "--catalog", catalog.format(port=port))
        assert (result.returncode, result.stdout) == (code, "")
        lines = result.stderr.splitlines()
        assert lines[-1] == expected.format(port=port, command=args[0])
        assert len(lines) == code  # a usage error's usage line first
        assert code == 1 or lines[0].startswith(f"Usage: ddb-assets {args[0]} [OPTIONS]")


def test_an_incremental_export_without_its_table_is_one_line(tmp_path: Path) -> None:
    """The chain's refusals (ChainError) are the user's to fix, not bugs."""
    from ddb_assets.local.export_writer import ExportRequest, FolderSink, IncrementalWindow, write_incremental_export
    from ddb_assets.local.history import Change

    at = lambda epoch: datetime.fromtimestamp(epoch, timezone.utc)  # noqa: E731
    start = 1_764_000_000
    arn = "arn:aws:dynamodb:us-east-1:000000000000:table/t"
    request = ExportRequest(export_arn=f"{arn}/export/{(start + 900) * 1000:014d}-0000abcd", table_arn=arn,
                            table_id="x", bucket="b", prefix="inc", output_format="DYNAMODB_JSON",
                            start_time=at(start + 901), export_time=at(start + 900), key_attributes=("pk", "sk"),
                            incremental=IncrementalWindow(at(start), at(start + 900)))
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    write_incremental_export(request, [Change("a", None, {**key, "v": {"N": "1"}}, start + 5)],
                             FolderSink(tmp_path / "bucket"))
    lake = tmp_path / "lake"
    result = run_cli("convert", str(tmp_path / "bucket" / request.folder), str(lake / "nothing_yet"), "--workers", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: table nothing_yet does not exist: ") and "convert the full export into it first" \
        in line, line
    assert not (lake / "nothing_yet" / "data").exists()


# -- usage errors -------------------------------------------------------------------------------

USAGE = [
    (["convert", "SRC", "DEST", "--workers", "-1"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--workers': input should be greater than or equal to 0"),
    (["convert", "SRC", "DEST", "--max-depth", "0"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--max-depth': input should be greater than or equal to 1"),
    (["convert", "SRC", "DEST", "--max-depth", "17"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--max-depth': input should be less than or equal to 16"),
    (["convert", "SRC", "DEST", "--dictionary-keys", "0"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--dictionary-keys': input should be greater than or equal to 1"),
    (["convert", "SRC", "DEST", "--naming", "camel"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--naming': 'camel' is not one of snake, glue"),
    (["convert", "SRC", "DEST", "--compression", "brotli"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--compression': 'brotli' is not one of zstd, snappy, lz4, gzip, none"),
    (["inspect", "SRC", "--workers", "-2"], "inspect [OPTIONS] {SOURCE}",
     "invalid value for '--workers': input should be greater than or equal to 0"),
    (["load", "--items", "-5"], "load [OPTIONS]",
     "invalid value for '--items': input should be greater than or equal to 1"),
    (["generate-export", "DEST", "--format", "XML"], "generate-export [OPTIONS] {DEST}",
     "invalid value for '--format': 'XML' is not one of DYNAMODB_JSON, ION"),
    (["generate-export", "DEST", "--files", "0"], "generate-export [OPTIONS] {DEST}",
     "invalid value for '--files': input should be greater than or equal to 1"),
    (["export", "t", "--view", "NEW_IMAGE"], "export [OPTIONS] {TABLE}",
     "--from, --to and --view are for --incremental exports"),
    (["export", "t", "--incremental", "--from", "2026-01-01T00:00:00"], "export [OPTIONS] {TABLE}",
     "--incremental needs --from and --to (the window), and no --export-time"),
    (["export", "t", "--incremental", "--from", "2026-01-01T00:00:00", "--to", "2026-01-01T00:15:00", "--view",
      "OLD_IMAGE"], "export [OPTIONS] {TABLE}",
     "invalid value for '--view': 'OLD_IMAGE' is not one of NEW_AND_OLD_IMAGES, NEW_IMAGE"),
    (["emulator", "--port", "70000"], "emulator [OPTIONS]",
     "invalid value for '--port': input should be less than or equal to 65535"),
    (["clock", "--advance", "-5m"], "clock [OPTIONS]",
     "invalid value for '--advance': '-5m' is not a duration: expected seconds (900) or a number with s, m, h or d "
     "(90s, 15m, 2h, 1d), 0 or more"),
    (["convert", "SRC", "DEST", "--runner", "sparky"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--runner': 'sparky' is not one of local, spark, glue, emr_serverless"),
    (["convert", "SRC", "DEST", "--shards", "-1"], "convert [OPTIONS] {SOURCE} {DEST}",
     "invalid value for '--shards': input should be greater than or equal to 0"),
    (["maintain", "t", "--keep-snapshots", "0"], "maintain [OPTIONS] {TABLE}",
     "invalid value for '--keep-snapshots': input should be greater than or equal to 1"),
    # An option of another mode would be ignored silently (found by a new user).
    (["convert", "SRC", "DEST", "--shards", "3", "--spark-master", "local[2]"], "convert [OPTIONS] {SOURCE} {DEST}",
     "--spark-master, --shards are not for --runner local"),
    (["convert", "SRC", "DEST", "--runner", "spark", "--glue-job", "j"], "convert [OPTIONS] {SOURCE} {DEST}",
     "--glue-job is not for --runner spark"),
    (["demo", "--windows", "5"], "demo [OPTIONS]", "--windows is for --incremental"),
]


@pytest.mark.parametrize("args, usage, message", USAGE, ids=[" ".join(u[0]) for u in USAGE])
def test_a_usage_error_is_the_usage_line_and_one_error_line(tmp_path: Path, args: list[str], usage: str,
                                                            message: str) -> None:
    result = run_cli(*args, cwd=tmp_path, env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    command = args[0]
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr == (f"Usage: ddb-assets {usage}\n"
                             f"error: {message} (see ddb-assets {command} --help)\n")
    assert list(tmp_path.iterdir()) == []  # refused while parsing: nothing was written


# -- help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [None, *COMMANDS, "shard run"])
def test_help_reads_at_80_columns(command: str | None) -> None:
    result = run_cli(*(command.split() if command else []), "--help", env={"COLUMNS": "80"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Usage: ddb-assets" + (f" {command} " if command else " ")), lines[0]
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert not any(ch in result.stdout for ch in "╭╮╰╯│─…"), result.stdout  # no rich panels, nothing cut short
    if command is None:  # every command listed, with its whole first sentence
        listed = re.findall(r"^  ([a-z][\w-]*) {2,}", result.stdout, re.M)
        assert listed == COMMANDS, listed
        return
    options = set(re.findall(r"--[a-z][a-z-]*[a-z]", result.stdout))
    for hyphenated in options:  # an option name is never broken over two lines
        assert not any(line.rstrip().endswith(hyphenated.rsplit("-", 1)[0] + "-") for line in lines), hyphenated


# -- the emulator -------------------------------------------------------------------------------

def test_the_emulator_announces_its_address_once_it_serves_it_with_the_sample_table() -> None:
    import boto3

    port = free_port()
    process = subprocess.Popen([*ddb_assets_command(), "emulator", "--port", str(port), "--sample-items", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        for line in process.stdout:
            if "listening on" in line or time.monotonic() > deadline:
                break
        assert line.strip() == f"local AWS world listening on http://127.0.0.1:{port}", line
        # At once, with no retry: the world answers, and the sample table is whole.
        ddb = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        assert ddb.scan(TableName="reviews", Select="COUNT")["Count"] == 5
    finally:
        process.terminate()
        process.wait(timeout=30)




@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system with 200 KiB of room (a tmpfs), where the system can make one."""
    folder = tmp_path / "small"
    folder.mkdir()
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None or subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("mounting a small file system needs root and mount")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_destination_is_one_line_naming_the_file_and_nothing_is_committed(small_disk: Path, tmp_path: Path,
                                                                                    export: Path) -> None:
    big = doctor.make_export(tmp_path / "big", items=5000, files=2)
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    table = small_disk / "lake" / "reviews"
    result = run_cli("convert", str(big), str(table), "--workers", "1", "--catalog", catalog)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(rf"error: {re.escape(str(table))}/data/\S+\.parquet: no space left on the device: free some "
                        rf"space, or give a destination on another volume \(--work-dir for convert's scratch\)",
                        line), line
    assert list((table / "data").rglob("*.parquet")) == []  # the failed run's files are removed
    # Nothing was committed: the same table converts from a smaller export afterwards.
    retried = run_cli("convert", str(export), str(table), "--workers", "1", "--catalog", catalog)
    assert retried.returncode == 0, retried.stderr
    assert "(new table)" in retried.stdout


def test_a_read_only_work_folder_is_named_as_the_work_folder(read_only: Path, tmp_path: Path, export: Path) -> None:
    result = run_cli("convert", str(export), str(tmp_path / "lake" / "reviews"), "--workers", "1",
                     "--work-dir", str(read_only / "scratch"))
    _one_line(result, f"error: cannot make a scratch folder in the work folder {read_only / 'scratch'} (read-only "
                      f"file system). A conversion keeps the parsed export there between its two stages: give a "
                      f"writable folder with room (convert --work-dir, or convert_work_dir in the settings)")
    assert not (tmp_path / "lake" / "reviews" / "metadata").exists()  # nothing committed


# Any command, with a signal sent to itself (as a terminal or `kill` does) as a chosen function of a
# module or class is called (before or after the call).
_SIGNALLED_AT = """
import importlib, os, signal, sys
import ddb_assets.cli as cli
module, name, when, signal_name = sys.argv[1:5]
place = importlib.import_module(module)
*owners, attribute = name.split(".")
for owner in owners:
    place = getattr(place, owner)
real = getattr(place, attribute)
number = getattr(signal, signal_name)
def signalled(*args, **kwargs):
    if when == "before":
        os.kill(os.getpid(), number)
    result = real(*args, **kwargs)
    if when == "after":
        os.kill(os.getpid(), number)
    return result
setattr(place, attribute, signalled)
sys.argv = ["ddb-assets", *sys.argv[5:]]
cli.main()
"""


@pytest.fixture(scope="module")
def two_snapshots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A lake whose table t has two snapshots (two full exports), and their ids, oldest first."""
    import json

    tmp = tmp_path_factory.mktemp("two")
    lake = tmp / "lake"
    for number in range(2):
        folder = doctor.make_export(tmp / f"export{number}", items=40, files=1, seed=number)
        assert run_cli("convert", str(folder), str(lake / "t"), "--workers", "1").returncode == 0
    return lake, [e["snapshot_id"] for e in json.loads(run_cli("history", "t", "--lake", str(lake), "--format",
                                                                "json").stdout)]


def _signalled(point: tuple[str, str, str], *args: str, signal_name: str = "SIGINT") -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-c", _SIGNALLED_AT, *point, signal_name, *args], capture_output=True,
                          text=True, timeout=180)


def _history(lake: Path) -> list[tuple[int, bool]]:
    import json

    return [(e["snapshot_id"], e["current"]) for e in
            json.loads(run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout)]


@pytest.mark.parametrize("command, point, line", [
    (["tables"], ("ddb_assets.lake.tables", "describe", "before"), "interrupted"),
    (["history", "t"], ("ddb_assets.lake.tables", "history", "before"), "interrupted"),
    (["query", "SELECT count(*) FROM t"], ("ddb_assets.query.duckdb_engine", "DuckDBEngine.register_catalog", "after"),
     "interrupted"),
    (["rollback", "t", "{first}"], ("ddb_assets.lake.tables", "two_step_rebuilds", "before"),
     "interrupted: nothing was committed"),
    (["maintain", "t", "--expire-after-days", "0", "--keep-snapshots", "1"],
     ("ddb_assets.lake.maintenance", "compact_small_files", "before"), "interrupted: nothing was committed"),
], ids=["tables", "history", "query", "rollback", "maintain"])
def test_ctrl_c_in_any_command_is_one_line_and_exit_130(two_snapshots: tuple[Path, list[int]], command: list[str],
                                                       point: tuple[str, str, str], line: str) -> None:
    lake, snapshots = two_snapshots
    before = _history(lake)
    args = [a.format(first=snapshots[0]) for a in command]
    result = _signalled(point, *args, "--lake", str(lake))
    assert (result.returncode, result.stderr.splitlines()) == (130, [line]), result.stderr
    assert _history(lake) == before  # nothing committed


def test_sigterm_in_any_command_is_one_line_and_exit_143(two_snapshots: tuple[Path, list[int]]) -> None:
    lake, _ = two_snapshots
    result = _signalled(("ddb_assets.lake.tables", "history", "before"), "history", "t", "--lake", str(lake),
                        signal_name="SIGTERM")
    assert (result.returncode, result.stderr, result.stdout) == (143, "terminated\n", "")


def test_ctrl_c_in_inspect_ends_its_workers_quietly(export: Path) -> None:
    result = _signalled(("ddb_assets.lake.convert", "_start_stage_one", "after"), "inspect", str(export),
                        "--workers", "2")
    assert result.returncode == 130 and result.stderr.splitlines()[-1] == "interrupted", result.stderr
    assert "Traceback" not in result.stderr


def test_an_interrupt_as_a_rollback_commits_lets_it_land(tmp_path: Path, two_snapshots: tuple[Path, list[int]]) -> None:
    lake, snapshots = two_snapshots
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)  # the shared lake stays as it is
    result = _signalled(("pyiceberg.table.update.snapshot", "ManageSnapshots.commit", "before"), "rollback", "t",
                        str(snapshots[0]), "--lake", str(copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"t is at snapshot {snapshots[0]} again")
    assert result.stderr.splitlines() == [f"interrupted after the commit: table t is at snapshot {snapshots[0]} again"]
    assert (snapshots[0], True) in _history(copy)


def test_an_interrupt_as_maintain_expires_lets_it_land_and_finish(tmp_path: Path,
                                                                  two_snapshots: tuple[Path, list[int]]) -> None:
    lake, snapshots = two_snapshots
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    result = _signalled(("pyiceberg.table.update.snapshot", "ExpireSnapshots.commit", "before"), "maintain", "t",
                        "--expire-after-days", "0", "--keep-snapshots", "1", "--lake", str(copy))
    assert result.returncode == 0, result.stderr
    assert "1 snapshot expired" in result.stdout and "orphans" in result.stdout  # it finished
    assert result.stderr.splitlines() == ["interrupted after the commit: 1 snapshot expired"]
    assert _history(copy) == [(snapshots[1], True)]
