"""The ordered read-ahead of a copy-on-write rewrite and of compaction (lake/read_ahead.py): files
come back in their order whatever order their reads end in, the bytes read ahead stay within the
bound (one file always, however big), and a failed read or the caller's own error leaves no read
running and starts none after it. The read function is injected: these are the helper's own rules."""

from __future__ import annotations

import threading
import time

import pytest

from ddb_assets.lake.read_ahead import ReadAhead

pytestmark = pytest.mark.fast


class Reads:
    """A read function that records what was read when, and the bytes read ahead at each read's
    start: of the files started and not yet taken by the caller, all but the first (the helper
    hands a file over after starting the next reads: the caller may not have taken it yet; or the
    caller waits for it: then the bound is checked a file short, which still fails a helper that
    ignores it)."""

    def __init__(self, sizes: list[int], delays: dict[int, float] | None = None,
                 failures: dict[int, Exception] | None = None):
        self.sizes, self.delays, self.failures = sizes, delays or {}, failures or {}
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.finished: list[int] = []
        self.held: set[int] = set()  # started, not yet taken
        self.running = 0
        self.most_running = 0
        self.most_held: list[tuple[int, int]] = []  # (bytes ahead, files ahead) at each start

    def __call__(self, index: int) -> int:
        with self.lock:
            self.started.append(index)
            self.held.add(index)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            ahead = sorted(self.held)[1:]
            self.most_held.append((sum(self.sizes[i] for i in ahead), len(ahead)))
        try:
            time.sleep(self.delays.get(index, 0.002))
            if index in self.failures:
                raise self.failures[index]
            return index
        finally:
            with self.lock:
                self.running -= 1
                self.finished.append(index)

    def take(self, index: int) -> None:
        with self.lock:
            self.held.discard(index)


def test_files_come_in_order_within_the_bytes_bound_and_one_huge_file_alone() -> None:
    sizes = [10, 300, 50, 50, 50, 700, 20, 20, 20, 20, 20, 200, 5, 490, 10]
    # Early files slow, later ones fast: reads end out of order.
    reads = Reads(sizes, delays={0: 0.05, 1: 0.04, 2: 0.03, 7: 0.03, 11: 0.02})
    got = []
    with ReadAhead(range(len(sizes)), reads, size=lambda i: sizes[i], max_bytes=500, files=3) as results:
        for index in results:
            reads.take(index)
            got.append(index)
            time.sleep(0.005)  # the caller's own work (the write), while the next files are read
    assert got == list(range(len(sizes)))
    assert sorted(reads.started) == list(range(len(sizes)))  # each read once
    for ahead_bytes, ahead_files in reads.most_held:
        # Within the bound, or a single file over it (the 700 one) read alone.
        assert ahead_bytes <= 500 or ahead_files == 1, reads.most_held
        assert ahead_files <= 3
    assert reads.most_running >= 2  # reads did overlap: the helper reads ahead


def test_a_failed_read_raises_after_the_files_before_it_and_nothing_is_read_past_the_window() -> None:
    sizes = [10] * 30
    k = 6
    # File k fails late, file k+1 fails at once: the error is file k's, the first in order.
    reads = Reads(sizes, delays={k: 0.05, k + 2: 0.3},
                  failures={k: OSError("file 6: connection reset"), k + 1: ValueError("file 7")})
    got = []
    with pytest.raises(OSError, match="file 6"):
        with ReadAhead(range(len(sizes)), reads, size=lambda i: sizes[i], max_bytes=1000, files=3) as results:
            for index in results:
                reads.take(index)
                got.append(index)
    assert got == list(range(k))
    # The window after the caller took file k-1: files k to k+2; none later was started.
    assert max(reads.started) <= k + 2
    # File k+2 (slow) had started: it was waited for, no read outlives the block.
    assert sorted(reads.finished) == sorted(reads.started) and reads.running == 0


def test_the_callers_interrupt_leaves_no_read_running_and_starts_none() -> None:
    sizes = [10] * 20
    reads = Reads(sizes, delays={i: 0.05 for i in range(20)})
    with pytest.raises(KeyboardInterrupt):
        with ReadAhead(range(len(sizes)), reads, size=lambda i: sizes[i], files=4) as results:
            for index in results:
                reads.take(index)
                if index == 2:
                    raise KeyboardInterrupt  # as Ctrl-C in the caller's write
    started = list(reads.started)
    assert max(started) <= 2 + 4 and reads.running == 0 and sorted(reads.finished) == sorted(started)
    time.sleep(0.1)
    assert reads.started == started  # nothing started after the block


def test_a_single_thread_reads_in_order_and_no_files_is_nothing() -> None:
    reads = Reads([5, 5, 5])
    with ReadAhead(range(3), reads, size=lambda i: 5, files=1) as results:
        assert list(results) == [0, 1, 2]
    assert reads.most_running == 1
    with ReadAhead([], reads, size=lambda i: 5) as results:
        assert list(results) == []
    with pytest.raises(ValueError, match="at least 1"):
        ReadAhead(range(3), reads, size=lambda i: 5, files=0)
