"""Ctrl-C once a command's snapshot is committed: the command finishes and exits 0.

Before the commit an interrupt stops the run (exit code 130, nothing committed). After it, the
snapshot is the table's whatever happens next, so an exit code saying the command failed would be
false. The commit itself is a critical section: from the ``committing`` event (just before the
catalog commit) a SIGINT is deferred; if the commit lands, the command finishes (its summary, a
change history catching up), one line on stderr says the interrupt came after the commit, and the
exit code is 0; if it fails, its error is reported as usual. A second SIGINT while the rest still
runs stops it (after the commit: the same line and exit code 0). Once committed, a SIGINT arriving
while the process ends is ignored.
"""

from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Any, Callable, Optional


class AfterCommit:
    """A context manager around a command that commits: ``watching`` wraps its progress callback
    to learn of the commit (the ``committed`` event and its ``snapshot_id``)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self.snapshot_id: Optional[int] = None
        self.interrupted = False
        self._previous: Any = None

    def watching(self, on_event: Callable[[str, dict], None]) -> Callable[[str, dict], None]:  # type: ignore[type-arg]
        def watched(kind: str, info: dict) -> None:  # type: ignore[type-arg]
            if kind == "committing":
                self._hold()
            elif kind == "committed":
                self._hold()
                self.snapshot_id = info["snapshot_id"]
            on_event(kind, info)
        return watched

    def _hold(self) -> None:
        if self._previous is None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._defer)

    def _defer(self, signum: int, frame: Any) -> None:
        if self.interrupted:  # a second Ctrl-C: stop the rest now
            raise KeyboardInterrupt
        self.interrupted = True

    def __enter__(self) -> "AfterCommit":
        return self

    def __exit__(self, kind: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> bool:
        if self._previous is not None:
            # Committed: the process is ending with exit code 0, and a late Ctrl-C must not turn that
            # into 130. Not committed (the commit failed): the previous handler again.
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.snapshot_id is not None else self._previous)
        stopped = kind is not None and issubclass(kind, KeyboardInterrupt)
        if self.snapshot_id is not None and (self.interrupted or stopped):
            self._say(f"interrupted after the commit: snapshot {self.snapshot_id} is committed")
            return stopped  # an interrupt after the commit is no failure: exit code 0
        return False
