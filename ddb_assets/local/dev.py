"""``ddb-assets dev`` (what ``make dev`` runs): the local AWS world plus ``dagster dev`` on the local
profile, supervised.

- One per Dagster home: a lock file in the home (``ddb-assets-dev.lock``, an ``flock`` the kernel
  releases when the process dies, however it dies) records who holds it; a second ``dev`` on the
  same home refuses, naming that process. Busy ports are refused too, naming the process that
  listens on them.
- The banner is printed only once the UI answers.
- SIGTERM and Ctrl-C stop everything: ``dagster dev`` gets SIGTERM (it shuts its webserver, daemon
  and code server down), then whatever is left in its process group (run workers, conversion
  workers) is killed. ``dagster dev`` is also tied to this process (``lake.lifetime``), so even
  ``kill -9`` of this process stops it.
- The home gets a ``dagster.yaml`` with telemetry off (the only switch Dagster has for its
  telemetry banner) and a run queue checked every second, and the ``dagster dev`` supersession
  warning is filtered by its exact text.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable

from ddb_assets.wording import counted

LOCK_FILE = "ddb-assets-dev.lock"
# Dagster 1.13 marks `dagster dev` superseded by `dg dev` (dagster-dg-cli, which needs a [tool.dg]
# project); the warning is raised by click's callback in the `dagster` process itself. Python's
# own filter syntax, matched against the start of the message: nothing else is hidden.
SUPERSESSION_FILTER = "ignore:Function `dev_command` is superseded"
TELEMETRY_OFF = ("# Written by ddb-assets: Dagster prints a telemetry notice on the first run of an "
                 "instance\n# unless this is set (dagster_shared/telemetry). Set it to true to send "
                 "usage statistics.\ntelemetry:\n  enabled: false\n")
QUICK_QUEUE = ("# Written by ddb-assets: queued runs start within a second (Dagster's default checks the "
               "queue every 5 s).\nrun_coordinator:\n  module: dagster._core.run_coordinator\n"
               "  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n")
# What the home's dagster.yaml gets when it does not set these keys itself.
HOME_DEFAULTS = {"telemetry": TELEMETRY_OFF, "run_coordinator": QUICK_QUEUE}
STOP_TIMEOUT_SECONDS = 45


class DevRefused(RuntimeError):
    """``dev`` cannot start: the home is in use or a port is taken. The message names who holds it."""


def default_dagster_home() -> Path:
    """``$DAGSTER_HOME``, else ``var/dagster`` below the current folder (what ``make dev`` and
    ``make demo`` share)."""
    return Path(os.environ.get("DAGSTER_HOME") or "var/dagster").absolute()


def prepare_dagster_home(home: Path) -> Path:
    """Create the Dagster home with a ``dagster.yaml``: telemetry off and a queue checked every
    second, for each key the file does not set already (a user's choice stays). Returns the home,
    absolute."""
    import yaml

    home = home.absolute()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and (home / "dagster.yml").exists():
        config = home / "dagster.yml"
    text = config.read_text(encoding="utf-8") if config.exists() else ""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return home  # the user's file; Dagster will say what is wrong with it
    missing = [block for key, block in HOME_DEFAULTS.items() if not isinstance(document, dict) or key not in document]
    if missing:
        config.write_text(text + ("\n" if text and not text.endswith("\n") else "") + "".join(missing),
                          encoding="utf-8")
    return home


@dataclass
class DevLock:
    """The home's lock: held for as long as the process that took it lives."""

    path: Path
    handle: IO[str]

    @classmethod
    def acquire(cls, home: Path, info: dict[str, Any]) -> "DevLock":
        """Take the lock and record ``info`` in it; raises DevRefused naming the current holder."""
        import fcntl

        path = home / LOCK_FILE
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise already_running(home, read_lock(home)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(info))
        handle.flush()
        return cls(path, handle)

    def release(self) -> None:
        self.handle.close()  # closing the descriptor releases the flock


def already_running(home: Path, holder: dict[str, Any]) -> DevRefused:
    """The refusal of a second ``dev`` on ``home``, naming the process that holds it."""
    return DevRefused(f"{holder.get('command', 'ddb-assets dev')} is already running on the Dagster home {home}: "
                      f"{describe_holder(holder)}. Stop it first (Ctrl-C in its terminal, or kill "
                      f"{holder.get('pid', '<pid>')}), or give this one another DAGSTER_HOME")


def read_lock(home: Path) -> dict[str, Any]:
    """What the lock file says about its holder ({} if nothing readable)."""
    try:
        value = json.loads((home / LOCK_FILE).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def lock_held(home: Path) -> dict[str, Any] | None:
    """The holder's record if a ``dev`` process holds the home's lock now, else None."""
    import fcntl

    path = home / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return read_lock(home)
    return None


def describe_holder(info: dict[str, Any]) -> str:
    if not info:
        return "held by a process that left no record"
    parts = [f"pid {info.get('pid')}"]
    if info.get("ui"):
        parts.append(f"UI {info['ui']}")
    if info.get("endpoint"):
        parts.append(f"local AWS world {info['endpoint']}")
    if info.get("started"):
        parts.append(f"since {info['started']}")
    return ", ".join(parts)


def port_holder(host: str, port: int) -> str | None:
    """The process listening on ``port`` ("pid 123 (cmdline)"), if this system lets us see it
    (Linux /proc, for processes of the same user)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            continue
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                if os.readlink(fd.path) in inodes:
                    return f"pid {entry.name} ({command_line(int(entry.name))})"
        except OSError:
            continue
    return None


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            return raw.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:160]
    except OSError:
        return "?"


def check_port(host: str, port: int, what: str) -> None:
    """Raises DevRefused if ``port`` on ``host`` cannot be bound, naming the listener if known."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind (SO_REUSEADDR): connections of a server just stopped (TIME_WAIT)
        # do not hold the port; a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise DevRefused(f"cannot use port {port} on {host} for {what}: {exc.strerror}") from None
            holder = port_holder(host, port)
            raise DevRefused(f"port {port} on {host} (for {what}) is already in use"
                             + (f" by {holder}" if holder else " by another process")
                             + "; stop it or choose another port") from None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _dagster_executable() -> str:
    beside = Path(sys.executable).parent / "dagster"
    if beside.exists():
        return str(beside)
    import shutil

    found = shutil.which("dagster")
    if not found:
        raise DevRefused("the `dagster` command is not installed in this environment (pip install -e .)")
    return found


def workspace_file(home: Path) -> Path:
    """The repository's workspace.yaml beside the package (editable installs, checkouts), else an
    equivalent written into the home: `dev` works from any folder."""
    import ddb_assets

    beside = Path(ddb_assets.__file__).resolve().parents[1] / "workspace.yaml"
    if beside.exists():
        return beside
    generated = home / "workspace.yaml"
    generated.write_text("load_from:\n  - python_module:\n      module_name: ddb_assets.definitions\n"
                         "      location_name: ddb_assets\n", encoding="utf-8")
    return generated


def cancel_orphaned_runs(home: Path, reason: str) -> list[str]:
    """Mark the runs this home shows as in progress canceled; returns their ids.

    Only for a home whose lock we hold: no process can be running them any more (the run workers
    of a stopped or killed ``dev`` are gone with it), and Dagster's default run launcher cannot
    check a run worker's health, so they would otherwise show as in progress forever."""
    import dagster as dg

    with dg.DagsterInstance.local_temp(str(home)) as instance:
        statuses = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
        runs = instance.get_runs(filters=dg.RunsFilter(statuses=statuses))
        for run in runs:
            instance.report_run_canceled(run, message=reason)
        return [run.run_id for run in runs]


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def run_dev(*, host: str = "127.0.0.1", port: int = 3000, emulator_port: int = 4566, sample_items: int = 3000,
            home: Path | None = None, lake: str | None = None, log: Callable[[str], None] = print) -> int:
    """Serve the local world and the Dagster UI until SIGTERM/SIGINT; returns the exit code.

    Raises DevRefused (nothing started) when the home is locked or a port is taken.
    """
    from ddb_assets.local.demo import EXPORT_BUCKET, load_sample_table
    from ddb_assets.local.world import LocalWorld, PortInUseError

    # Everything that can refuse is asked before anything is made: a refused start leaves no home
    # folder, dagster.yaml or lock file behind (lock_held makes none).
    home = (home or default_dagster_home()).absolute()
    holder = lock_held(home) if home.is_dir() else None
    if holder is not None:
        raise already_running(home, holder)
    check_port(host, emulator_port, "the local AWS world")
    check_port(host, port, "the Dagster UI")
    home = prepare_dagster_home(home)
    lake_root = os.path.abspath(lake or os.environ.get("DDB_ASSETS_LAKE_ROOT") or "var/lake")
    endpoint = f"http://{host}:{emulator_port}"
    ui = f"http://{host}:{port}"
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lock = DevLock.acquire(home, {"command": "ddb-assets dev", "pid": os.getpid(), "ui": ui, "endpoint": endpoint,
                                  "lake": lake_root, "started": started})
    stop: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    world = None
    dagster = None
    try:
        stale = cancel_orphaned_runs(home, "marked canceled by ddb-assets dev: the dev session running it had ended")
        if stale:
            log(f"{counted(len(stale), 'run')} left in progress by an earlier session marked canceled: {', '.join(stale)}")
        world = LocalWorld(port=emulator_port, host=host)
        try:
            world.start()
        except PortInUseError as exc:
            raise DevRefused(str(exc)) from None
        if sample_items:
            from rich.console import Console

            load_sample_table(world, sample_items, 7, Console(stderr=True))
        if stop:
            return 0
        env = {**os.environ, "DAGSTER_HOME": str(home), "DDB_ASSETS_ENDPOINT_URL": endpoint,
               "DDB_ASSETS_LAKE_ROOT": lake_root,
               "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), SUPERSESSION_FILTER]))}
        command = [_dagster_executable(), "dev", "-w", str(workspace_file(home)), "-h", host, "-p", str(port)]
        # Its own process group (so everything it starts can be stopped at once, and a Ctrl-C
        # reaches it through us, once), tied to this process by the parent death signal.
        dagster = subprocess.Popen([sys.executable, "-m", "ddb_assets.lake.lifetime", str(os.getpid()),
                                    str(int(signal.SIGTERM)), *command], env=env, start_new_session=True,
                                   stderr=subprocess.PIPE)
        threading.Thread(target=relay_stderr, args=(dagster.stderr, sys.stderr.buffer), daemon=True,
                         name="ddb-assets-dagster-stderr").start()
        while not stop and dagster.poll() is None and not _http_ok(f"{ui}/server_info"):
            time.sleep(0.5)
        if dagster.poll() is not None:
            log(f"dagster dev exited with code {dagster.returncode} before serving the UI")
            return dagster.returncode or 1
        if not stop:
            log(f"local AWS world: {endpoint}   Dagster UI: {ui}   (Dagster home {home}, lake {lake_root})")
            log(f"start an export from another shell:  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=testing "
                f"AWS_SECRET_ACCESS_KEY=testing ddb-assets export reviews   (bucket {EXPORT_BUCKET})")
            log(f"stop with Ctrl-C or `kill {os.getpid()}`")
        while not stop and dagster.poll() is None:
            time.sleep(0.5)
        if dagster.poll() is not None and not stop:
            log(f"dagster dev exited with code {dagster.returncode}")
            return dagster.returncode or 1
        return 0
    finally:
        if dagster is not None:
            _stop(dagster, log)
            stopped = cancel_orphaned_runs(home, "canceled: ddb-assets dev stopped while the run was in progress")
            if stopped:
                log(f"{counted(len(stopped), 'run')} in progress when dev stopped marked canceled: {', '.join(stopped)}")
        if world is not None:
            world.stop()
        lock.release()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def relay_stderr(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy ``dagster dev``'s stderr (its services' too: they share it) line by line, with one
    ``Aborted!`` at most: stopped while starting, each of dagster's click processes (dev, its
    webserver, its daemon) says it, after a blank line of its own."""
    aborted = False
    blank = b""
    for line in iter(source.readline, b""):
        if not line.strip():
            blank += line  # held until the next line tells whether it precedes an Aborted!
            continue
        if line.strip() == b"Aborted!":
            if aborted:
                blank = b""
                continue
            aborted = True
            blank = blank[:blank.index(b"\n") + 1] if b"\n" in blank else blank  # the processes' blanks: one
        sink.write(blank + line)
        sink.flush()
        blank = b""
    if blank:
        sink.write(blank)
        sink.flush()


def _stop(process: subprocess.Popen, log: Callable[[str], None]) -> None:
    """SIGTERM to ``dagster dev`` (an orderly shutdown of its services), then SIGKILL to whatever
    is left in its process group (run workers, conversion workers)."""
    if process.poll() is None:
        log("stopping dagster dev ...")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log(f"dagster dev did not stop within {STOP_TIMEOUT_SECONDS}s: killing it")
    _signal_group(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
