"""Child processes that end with their parent.

A conversion's worker processes write Parquet files for as long as they live: if the process that
started them is killed (``kill -9``, the OOM killer, a Dagster run terminated), orphaned workers
would go on writing files no commit will ever reference, and hold memory and CPU. So every worker
process, and every long-running child of ``ddb-assets dev``, is tied to its parent:

- on Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG)`` delivers a signal to the child the
  moment its parent dies, whatever the cause;
- everywhere, a daemon thread in the child polls ``os.getppid()`` and ends the process when the
  parent changes (the child was re-parented: its parent is gone). It also watches an ``owner``
  process, for workers whose parent is a fork server rather than the process that owns them.

Plain Python, no dependency: imported by worker processes and used as a launcher.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 0.2


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Linux only: ask the kernel to send ``signum`` to this process when its parent dies.
    Returns False where this is not available (the polling fallback still applies)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def die_with_parent(parent: int | None, owner: int | None = None, signum: int = signal.SIGKILL) -> None:
    """End this process when ``parent`` (the pid that started it; None: whatever its parent is
    now) or ``owner`` (the process it works for, when that is not its parent: a fork server's
    children) is gone.

    Call first thing in the child. A known ``parent`` guards the race where the parent died before
    the death signal was set up: the child then exits at once.
    """
    set_parent_death_signal(signum)
    if parent is None:
        parent = os.getppid()
    if os.getppid() != parent or (owner is not None and not _alive(owner)):
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(POLL_SECONDS)
            if os.getppid() != parent or (owner is not None and not _alive(owner)):
                os.kill(os.getpid(), signum)
                os._exit(1)  # if the signal is caught or ignored

    threading.Thread(target=watch, name="ddb-assets-parent-watch", daemon=True).start()


def worker_start(parent: int | None, owner: int | None = None) -> None:
    """A pool worker's initializer: it ends with its parent (``die_with_parent``), and Ctrl-C (a
    terminal sends SIGINT to the whole process group) ends it quietly, exit code 130: the parent
    reports the interruption once, not one KeyboardInterrupt traceback per worker. A parent that
    ignores SIGINT (started under ``trap '' INT``, or as a background job of a script) keeps
    its workers ignoring it too: otherwise the group's SIGINT would end the workers under a parent
    that goes on. SIGTERM ends a worker at once, whatever handler the parent had when it forked (the
    command line's turns SIGTERM into an interruption of the parent: cli_interrupts.py)."""
    die_with_parent(parent, owner)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str]) -> None:
    """``python -m ddb_assets.lake.lifetime PARENT_PID SIGNAL PROGRAM ARGS...``: exec PROGRAM with the
    parent death signal set (it survives exec), so PROGRAM ends when PARENT_PID does (Linux; elsewhere
    PROGRAM just runs)."""
    parent, signum, program = int(argv[0]), int(argv[1]), argv[2:]
    set_parent_death_signal(signum)
    if os.getppid() != parent:
        sys.exit(1)
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
