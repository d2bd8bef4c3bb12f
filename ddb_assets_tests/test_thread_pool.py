"""An interrupt is not held up by a thread stuck on an endpoint that stopped answering
(exports/thread_pool.py ``io_threads``; cli.py ``_exit_without_stuck_threads``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from ddb_assets.exports.thread_pool import io_threads

pytestmark = pytest.mark.fast


def test_an_interrupt_leaves_the_pool_at_once_and_a_normal_exit_waits() -> None:
    stuck = threading.Event()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with io_threads(2, "test-io") as pool:
            running = pool.submit(stuck.wait)
            waiting = [pool.submit(time.sleep, 0) for _ in range(3)]
            time.sleep(0.05)
            raise KeyboardInterrupt
    assert time.monotonic() - started < 1.0  # not held up by the stuck call
    assert not running.done()
    stuck.set()
    running.result(timeout=5)
    assert all(f.done() for f in waiting)

    with io_threads(2, "test-io") as pool:
        slow = pool.submit(time.sleep, 0.3)
    assert slow.done()  # a normal exit waits for every call


def test_an_interrupted_command_exits_without_waiting_for_a_stuck_thread() -> None:
    script = ("import threading, time, sys\n"
              "from ddb_assets import cli\n"
              "threading.Thread(target=time.sleep, args=(60,), name='stuck-read').start()\n"
              "cli._exit_without_stuck_threads(130)\n"
              "print('not reached')\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 130 and "not reached" not in done.stdout
    assert time.monotonic() - started < 15  # the thread's 60 s are not waited for


def test_with_no_stuck_thread_the_command_exits_as_usual() -> None:
    script = ("import threading, time\n"
              "from ddb_assets import cli\n"
              "threading.Thread(target=time.sleep, args=(0.2,)).start()\n"
              "cli._exit_without_stuck_threads(130)\n"
              "print('exits normally')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "exits normally" in done.stdout
