"""A conversion killed with kill -9 leaves no worker behind (none goes on writing files), and its
scratch folder is removed by the next run or by maintenance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from ddb_assets.local.bulk_export import generate_folder_export
from ddb_assets_tests.cli_helpers import ddb_assets_command, run_cli

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")

# A threaded host (as Dagster is): the conversion then takes its forkserver path.
THREADED_CONVERT = """
import sys, threading, time
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.profile import profile_from_json
from ddb_assets.exports.storage import resolve
_, known = profile_from_json(resolve(sys.argv[3]).read_bytes(), obj=sys.argv[3])
convert_export(sys.argv[1], sys.argv[2], ConvertOptions(workers=2), known=known)
"""


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                    parents[int(entry.name)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.exists() else {}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """An export big enough that its conversion is still running a moment after it starts, and its
    saved profile (for the one-pass mode)."""
    tmp = tmp_path_factory.mktemp("hygiene")
    folder = generate_folder_export(tmp / "src", items=30_000, files=4, seed=3).parent
    profile = tmp / "profile.json"
    inspected = run_cli("inspect", str(folder), "--save-profile", str(profile))
    assert inspected.returncode == 0, inspected.stderr
    yield folder, profile


def _kill_mid_conversion(command: list[str], lake: Path, settle: float = 0.4) -> tuple[set[int], dict[str, int]]:
    """Start ``command``, kill -9 it once its workers run; returns (its descendants then, files then)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and process.poll() is None:
            workers = _descendants(process.pid)
            if len([p for p in workers if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]) >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"the conversion ended before it could be killed: {process.stderr.read()}"
        time.sleep(settle)  # the workers are reading and writing now
        workers = _descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return workers, _files(lake)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _assert_all_gone(workers: set[int], lake: Path, files_at_kill: dict[str, int]) -> None:
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in workers if _alive(pid)]
    for pid in workers:  # never leave them to the rest of the session
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not survivors, survivors
    time.sleep(2)
    assert _files(lake) == files_at_kill  # nothing was written after the kill


@pytest.mark.parametrize("one_pass", [True, False], ids=["one-pass", "two-stage"])
def test_kill_9_of_a_cli_conversion_takes_its_workers_with_it(export: tuple[Path, Path], tmp_path: Path,
                                                             one_pass: bool) -> None:
    folder, profile = export
    lake = tmp_path / "lake"
    command = [*ddb_assets_command(), "convert", str(folder), str(lake / "t"), "--workers", "2",
               "--work-dir", str(tmp_path / "scratch")] + (["--profile", str(profile)] if one_pass else [])
    workers, at_kill = _kill_mid_conversion(command, lake)
    assert len(workers) >= 2
    _assert_all_gone(workers, lake, at_kill)


def test_kill_9_of_a_threaded_host_takes_the_fork_server_and_its_workers(export: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    folder, profile = export
    lake = tmp_path / "lake"
    workers, at_kill = _kill_mid_conversion([sys.executable, "-c", THREADED_CONVERT, str(folder), str(lake / "t"),
                                             str(profile)], lake, settle=1.5)
    assert len(workers) >= 3  # the fork server and two workers (and maybe the resource tracker)
    _assert_all_gone(workers, lake, at_kill)
