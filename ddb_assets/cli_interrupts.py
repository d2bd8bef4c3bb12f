"""Ctrl-C and SIGTERM on the command line: one line, exit code 130 (143 for SIGTERM), nothing half-done.

``stop_on_signals`` (called by main) makes SIGTERM stop a command as Ctrl-C does, by raising
``KeyboardInterrupt`` in the main thread: every cleanup on the way out runs (a conversion's files
and the folders it made are removed, lake/leftovers.py), where the default action would end the
process on the spot. A signal the process was started ignoring (``trap '' INT``, a background job of a
script) stays ignored. ``stopped`` then gives the one line and the exit code.

A command that commits wraps itself in ``AfterCommit``. Before the commit an interrupt stops the
run (exit code 130, ``interrupted: nothing was committed``). After it, the snapshot is the table's
whatever happens next, so an exit code saying the command failed would be false. The commit itself
is a critical section: from the ``committing`` event (just before the catalog commit) SIGINT and
SIGTERM are deferred; if the commit lands, the command finishes (its summary, a change history
catching up), one line on stderr says the interrupt came after the commit, and the exit code is 0;
if it fails, its error is reported as usual. A second signal while the rest still runs stops it
(after the commit: the same line and exit code 0). Once committed, a signal arriving while the
process ends is ignored.
"""

from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Any, Callable, Optional

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the signals that stopped (or were deferred by) this command, in order
_detail: list[str] = []  # what the interrupted command has to add (nothing was committed, ...)


def stop_on_signals() -> None:
    """Main thread, before the command runs: SIGINT and SIGTERM raise KeyboardInterrupt (each
    recorded for ``stopped``), unless the process was started ignoring them."""
    for signum in _SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _stop)


def _stop(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def interrupted_by() -> Optional[int]:
    """The signal that interrupted the command (SIGINT or SIGTERM), or None."""
    return _received[-1] if _received else None


def add_detail(text: str) -> None:
    """What the line of an interrupted command adds after ``interrupted: `` (the last said wins)."""
    _detail.append(text)


def stopped() -> tuple[str, int]:
    """The line (without ``error:``) and exit code of a command stopped by an interrupt: SIGTERM
    ``terminated``, 143 (128 + 15); else ``interrupted``, 130 (Ctrl-C)."""
    terminated = interrupted_by() == signal.SIGTERM
    word, code = ("terminated", 128 + signal.SIGTERM) if terminated else ("interrupted", 128 + signal.SIGINT)
    return (f"{word}: {_detail[-1]}" if _detail else word), code


class AfterCommit:
    """A context manager around a command that commits: ``watching`` wraps its progress callback
    to learn of the commit (the ``committing`` event; ``committed`` and its ``snapshot_id``, or
    ``said``: what landed, in words, for a commit that makes no snapshot)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self.snapshot_id: Optional[int] = None
        self.landed: list[str] = []  # what is committed, in words: one entry per commit (maintain makes two)
        self.interrupted = False
        self._committing = False
        self._previous: dict[int, Any] = {}

    def watching(self, on_event: Callable[[str, dict], None]) -> Callable[[str, dict], None]:  # type: ignore[type-arg]
        def watched(kind: str, info: dict) -> None:  # type: ignore[type-arg]
            if kind == "committing":
                self._hold()
                self._committing = True
            elif kind == "committed":
                self._hold()
                if info.get("snapshot_id") is not None:
                    self.snapshot_id = info["snapshot_id"]
                self.landed.append(info.get("said") or f"snapshot {info['snapshot_id']} is committed")
                self._committing = False
            on_event(kind, info)
        return watched

    def _hold(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self._previous[signum] = signal.signal(signum, self._defer)

    def _defer(self, signum: int, frame: Any) -> None:
        _received.append(signum)
        if self.interrupted:  # a second signal: stop the rest now
            raise KeyboardInterrupt
        self.interrupted = True

    def __enter__(self) -> "AfterCommit":
        return self

    def __exit__(self, kind: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> bool:
        # Committed: the process is ending with exit code 0, and a late signal must not turn that
        # into 130. Not committed (the commit failed): the previous handlers again.
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if self.landed else previous)
        stopped = kind is not None and issubclass(kind, KeyboardInterrupt)
        if self.landed and (self.interrupted or stopped):
            word = "terminated" if interrupted_by() == signal.SIGTERM else "interrupted"
            self._say(f"{word} after the commit: {'; '.join(self.landed)}")
            return stopped  # an interrupt after the commit is no failure: exit code 0
        if stopped:
            add_detail("the commit was under way: whether it landed, `ddb-assets history` shows" if self._committing
                       else "nothing was committed")
        return False
