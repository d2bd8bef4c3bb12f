"""A conversion killed with kill -9 leaves no worker behind (none goes on writing files), and its
scratch folder is removed by the next run or by maintenance."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from ddb_assets.lake.scratch import OWNER_FILE, PREFIX, _start_time, remove_stale_scratch
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


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.exists() else {}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """An export big enough that its conversion is still running a moment after it starts, and its
    saved profile (for the one-pass mode)."""
    tmp = tmp_path_factory.mktemp("hygiene")
    folder = generate_folder_export(tmp / "src", items=100_000, files=4, seed=3).parent
    profile = tmp / "profile.json"
    inspected = run_cli("inspect", str(folder), "--save-profile", str(profile))
    assert inspected.returncode == 0, inspected.stderr
    yield folder, profile


def _kill_mid_conversion(command: list[str], lake: Path, needed: int = 2,
                         settle: float = 0.3) -> tuple[set[int], dict[str, int]]:
    """Start ``command``, kill -9 it once ``needed`` descendants (the resource tracker aside) run;
    returns (every descendant seen, files at the kill)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and process.poll() is None:
            workers = _descendants(process.pid)
            if len([p for p in workers if b"resource_tracker" not in _cmdline(p)]) >= needed:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"the conversion ended before it could be killed: {process.stderr.read()}"
        # The workers are reading and writing now. A fast machine may finish a worker's share within
        # the settle time, so every descendant seen is kept: each must be gone after the kill.
        time.sleep(settle)
        workers |= _descendants(process.pid)
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
    survivors = [_cmdline(pid)[:120] for pid in workers if _alive(pid)]
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
                                             str(profile)], lake, needed=3)
    assert len(workers) >= 3  # the fork server and two workers (and maybe the resource tracker)
    _assert_all_gone(workers, lake, at_kill)


def _scratch_folders(work_dir: Path) -> list[Path]:
    return sorted(work_dir.glob(f"{PREFIX}*")) if work_dir.exists() else []


def test_a_killed_runs_scratch_is_removed_by_the_next_run(export: tuple[Path, Path], tmp_path: Path) -> None:
    folder, profile = export
    lake, scratch = tmp_path / "lake", tmp_path / "scratch"
    command = [*ddb_assets_command(), "convert", str(folder), str(lake / "t"), "--workers", "2",
               "--work-dir", str(scratch)]
    workers, _ = _kill_mid_conversion(command, lake)
    [left] = _scratch_folders(scratch)  # the two-stage run's spill folder, its owner killed
    owner = json.loads((left / OWNER_FILE).read_text())
    assert owner["host"] == socket.gethostname() and not _alive(owner["pid"])

    again = run_cli("convert", str(folder), str(lake / "t"), "--workers", "1", "--work-dir", str(scratch),
                    "--profile", str(profile))
    assert again.returncode == 0, again.stderr
    assert _scratch_folders(scratch) == []


def test_maintain_removes_the_scratch_of_ended_runs_only(tmp_path: Path) -> None:
    from ddb_assets_tests import doctor

    export = doctor.make_export(tmp_path / "export", items=50)
    assert run_cli("convert", str(export), str(tmp_path / "lake" / "t"), "--workers", "1").returncode == 0
    scratch = tmp_path / "scratch"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = _fake_scratch(scratch, "dead", pid=int(ended.stdout))
    live = _fake_scratch(scratch, "live", pid=os.getpid(), start=_start_time(os.getpid()))
    result = run_cli("maintain", "t", "--lake", str(tmp_path / "lake"), "--work-dir", str(scratch))
    assert result.returncode == 0, result.stderr
    assert "1 folder of ended runs removed" in result.stdout
    assert not dead.exists() and live.exists()


def _fake_scratch(work_dir: Path, name: str, **owner: object) -> Path:
    folder = work_dir / f"{PREFIX}{name}"
    folder.mkdir(parents=True)
    (folder / "000000-0000.arrow").write_bytes(b"x" * 100)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "start": None, "boot": None, **owner}
    (folder / OWNER_FILE).write_text(json.dumps(record))
    return folder


@pytest.mark.fast
def test_which_scratch_folders_are_stale(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    me, started = os.getpid(), _start_time(os.getpid())
    kept = [_fake_scratch(tmp_path, "running", pid=me, start=started),
            _fake_scratch(tmp_path, "other-host", pid=int(ended.stdout), host="elsewhere"),
            _fake_scratch(tmp_path, "unreadable", pid="not a pid")]
    removed = [_fake_scratch(tmp_path, "ended", pid=int(ended.stdout)),
               _fake_scratch(tmp_path, "reused-pid", pid=me, start="1"),  # same pid, another process
               _fake_scratch(tmp_path, "before-reboot", pid=me, boot="another-boot-id")]
    young = tmp_path / f"{PREFIX}unmarked-young"
    young.mkdir()
    (young / "000001-0000.arrow").write_bytes(b"y")
    foreign = tmp_path / f"{PREFIX}unmarked-foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    old = tmp_path / f"{PREFIX}unmarked-old"
    old.mkdir()
    (old / "000002-0001.arrow").write_bytes(b"z")
    stale_profile = tmp_path / "ddb-assets-profile-abc123.json"
    stale_profile.write_text("{}")
    fresh_profile = tmp_path / "ddb-assets-profile-def456.json"
    fresh_profile.write_text("{}")
    long_ago = time.time() - 3 * 24 * 3600
    for path in (foreign, old, stale_profile):
        os.utime(path, (long_ago, long_ago))
    listed = remove_stale_scratch(str(tmp_path), dry_run=True)
    assert sorted(Path(r.path).name for r in listed) == sorted(f.name for f in [*removed, old, stale_profile])
    assert all(Path(r.path).exists() for r in listed)  # a dry run changes nothing
    done = remove_stale_scratch(str(tmp_path))
    assert {Path(r.path).name: r.bytes for r in done}[f"{PREFIX}ended"] > 100
    assert all(f.exists() for f in [*kept, young, foreign, fresh_profile])
    assert not any(f.exists() for f in [*removed, old, stale_profile])


def test_ctrl_c_ends_a_conversion_and_its_workers_quietly(export: tuple[Path, Path], tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group: exit code 130, no traceback (each
    worker used to print its own KeyboardInterrupt), no worker left."""
    folder, _ = export
    command = [*ddb_assets_command(), "convert", str(folder), str(tmp_path / "lake" / "t"), "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and process.poll() is None and len(workers) < 2:
            workers = {p for p in _descendants(process.pid) if b"resource_tracker" not in _cmdline(p)}
            time.sleep(0.05)
        assert process.poll() is None, "the conversion ended before it could be interrupted"
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)]


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_an_interrupt_ends_the_pool_without_a_traceback_from_its_manager_thread() -> None:
    """Interrupted, a conversion ends its pool's workers and cancels what has not started: the
    pool's manager thread, failing every future of a broken pool, must find none cancelled under
    it (before Python 3.12 it died on InvalidStateError, printing a traceback after the one line)."""
    import threading
    from concurrent.futures import ProcessPoolExecutor

    from ddb_assets.lake.convert import _stop

    died: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: died.append(args.exc_value)  # type: ignore[assignment]
    try:
        for _ in range(3):
            pool = ProcessPoolExecutor(max_workers=2)
            futures = [pool.submit(_nap, 30) for _ in range(6)]  # two running, four waiting
            time.sleep(1.0)
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                _stop(futures, pool)
            pool.shutdown(wait=True)
            assert all(f.done() for f in futures)
    finally:
        threading.excepthook = previous
    assert died == []
