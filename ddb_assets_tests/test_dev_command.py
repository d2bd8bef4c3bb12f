"""`make dev` (`ddb-assets dev`): one per Dagster home, busy ports refused with their holder, a
quiet start, and SIGTERM stopping every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ddb_assets.local.dev import QUICK_QUEUE, TELEMETRY_OFF, lock_held, prepare_dagster_home
from ddb_assets_tests.cli_helpers import ddb_assets_command, free_port, run_cli


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


def _one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.fast
def test_prepare_dagster_home_turns_telemetry_off_once_and_keeps_a_users_choice(tmp_path: Path) -> None:
    import dagster as dg

    home = prepare_dagster_home(tmp_path / "home")
    assert (home / "dagster.yaml").read_text() == TELEMETRY_OFF + QUICK_QUEUE
    prepare_dagster_home(home)
    assert (home / "dagster.yaml").read_text() == TELEMETRY_OFF + QUICK_QUEUE  # not appended twice
    with dg.DagsterInstance.local_temp(str(home)) as instance:  # Dagster accepts it
        assert not instance.telemetry_enabled and instance.run_coordinator.dequeue_interval_seconds == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    prepare_dagster_home(other)
    assert (other / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n" + QUICK_QUEUE


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")
def test_a_second_dev_refuses_and_sigterm_stops_everything(tmp_path: Path) -> None:
    ui, emulator = free_port(), free_port()
    home, lake = tmp_path / "home", tmp_path / "lake"
    log_path = tmp_path / "dev.log"
    env = {**os.environ, "COLUMNS": "200"}
    with open(log_path, "w") as log:
        first = subprocess.Popen([*ddb_assets_command(), "dev", "--port", str(ui), "--emulator-port", str(emulator),
                                  "--sample-items", "20", "--dagster-home", str(home), "--lake", str(lake)],
                                 stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Dagster UI:" not in log_path.read_text() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        text = log_path.read_text()
        assert "Dagster UI:" in text, text
        for noise in ("Telemetry:", "SupersessionWarning", "is superseded"):
            assert noise not in text
        assert lock_held(home)["pid"] == first.pid

        # The same home: refused, naming the process that serves it.
        again = run_cli("dev", "--port", str(free_port()), "--emulator-port", str(free_port()), "--sample-items", "0",
                        "--dagster-home", str(home), cwd=tmp_path, timeout=60)
        _one_line_error(again, "already running on the Dagster home", f"pid {first.pid}", f":{ui}")
        # Another home, but the UI's port: refused, naming the listener (dagster's webserver).
        busy = run_cli("dev", "--port", str(ui), "--emulator-port", str(free_port()), "--sample-items", "0",
                       "--dagster-home", str(tmp_path / "home2"), cwd=tmp_path, timeout=60)
        _one_line_error(busy, f"port {ui}", "already in use by pid", "dagster_webserver")
        # The demo would have dev's sensors act on its runs: refused too.
        demo = run_cli("demo", "--items", "10", "--dagster-home", str(home), "--lake", str(tmp_path / "demo-lake"),
                       cwd=tmp_path, timeout=60)
        _one_line_error(demo, "already running on the Dagster home")

        children = _descendants(first.pid)
        assert len(children) >= 3  # dagster dev, its webserver, daemon and code server
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=90) == 0
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.5)
        survivors = {pid for pid in children if _alive(pid)}
        assert not survivors, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in survivors]
        assert lock_held(home) is None
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        for pid in _descendants(first.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_dev_refused_for_a_busy_port_leaves_nothing_it_made(tmp_path: Path) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        busy = server.getsockname()[1]
        new_home, user_home = tmp_path / "new-home", tmp_path / "user-home"
        user_home.mkdir()
        (user_home / "notes.txt").write_text("mine")
        for home in (new_home, user_home):
            for ports in (("--port", str(busy), "--emulator-port", str(free_port())),
                          ("--port", str(free_port()), "--emulator-port", str(busy))):
                refused = run_cli("dev", *ports, "--sample-items", "0", "--dagster-home", str(home), cwd=tmp_path,
                                  timeout=60)
                _one_line_error(refused, f"port {busy}", "already in use by pid")
        assert not new_home.exists()
        assert sorted(p.name for p in user_home.iterdir()) == ["notes.txt"]  # no dagster.yaml, no lock file
        assert sorted(p.name for p in tmp_path.iterdir()) == ["user-home"]  # nor var/ in the working folder


@pytest.mark.fast
def test_a_port_just_released_is_free_and_a_listened_one_is_not() -> None:
    import socket

    from ddb_assets.local.dev import DevRefused, check_port

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    with pytest.raises(DevRefused, match=f"port {port} .*already in use by pid {os.getpid()}"):
        check_port("127.0.0.1", port, "a test")
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
    server.close()
    client.close()
    check_port("127.0.0.1", port, "a test")  # a server restarted at once can bind it: so may we


@pytest.mark.fast
def test_dagsters_stderr_says_aborted_once_when_stopped_while_starting() -> None:
    """dagster dev, its webserver and its daemon each say "Aborted!" (after a blank line) when
    stopped while starting, interleaved as they come: relayed, it is said once; the rest as is."""
    import io

    from ddb_assets.local.dev import relay_stderr

    sink = io.BytesIO()
    relay_stderr(io.BytesIO(b"Launching\n\n\nAborted!\nAborted!\n\nAborted!\nbye\n\n"), sink)
    assert sink.getvalue() == b"Launching\n\nAborted!\nbye\n\n"
