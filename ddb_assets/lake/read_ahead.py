"""Files read on threads ahead of the one being processed, handed over in their original order.

A copy-on-write merge rewrites every file holding a touched key (with changes spread at random,
every file of a terabyte table) and compaction every file of its groups: each is a read (on S3 a GET
of tens to hundreds of MB after ~50-100 ms to the first byte) then a write (CPU: zstd). Read one after
the other, the two never overlap. Here the next files are read while the current one is written:
pyarrow releases the GIL while it fetches and decodes, so threads are enough.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Parquet bytes (the files' ``file_size_in_bytes``) read ahead at most. Arrow in memory is several
# times the Parquet size (zstd and dictionaries shrink columns 3-10x), and a merge's peak memory is
# what sizes the machine it runs on: 256 MiB of Parquet is about 1-2 GiB of Arrow on top of the file
# being written. A file bigger than that is still read ahead, alone (at least one file always is).
READ_AHEAD_BYTES = 256 << 20
# Files read at once (and at most this many ahead): a few overlap S3's latency and keep a connection
# pool busy while the writing thread compresses; more would crowd out the CPU the writer needs.
READ_AHEAD_FILES = 4


class ReadAhead(Generic[T, R]):
    """``read(item)`` for each of ``items``, yielded in the order of ``items``, read up to
    ``files`` (default READ_AHEAD_FILES) at once on threads, at most ``max_bytes`` (the sum of
    ``size(item)``, in bytes; default READ_AHEAD_BYTES) read or being read ahead of the item the
    caller holds, but always at least the next one. Raises ValueError when ``files`` < 1.

    Use as a context manager::

        with ReadAhead(files, read, size=lambda f: f.file_size_in_bytes) as tables:
            for table in tables:
                ...

    The first item whose ``read`` raised (in the order of ``items``) raises its error in the
    loop, after every item before it was yielded; on leaving the block (that error, the caller's
    own, KeyboardInterrupt, or a break) reads not started are never started and those running are
    waited for, so no read outlives the block. ``size`` must not raise."""

    def __init__(self, items: Iterable[T], read: Callable[[T], R], size: Callable[[T], int], *,
                 max_bytes: int | None = None, files: int | None = None, thread_name_prefix: str = "read-ahead"):
        # None: the module's constants as they are now (not as they were at import).
        max_bytes = READ_AHEAD_BYTES if max_bytes is None else max_bytes
        files = READ_AHEAD_FILES if files is None else files
        if files < 1:
            raise ValueError(f"files must be at least 1, not {files}")
        self._items, self._read, self._size = list(items), read, size
        self._max_bytes, self._files, self._prefix = max_bytes, files, thread_name_prefix
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[int, Future[R]]] = deque()

    def __enter__(self) -> Iterator[R]:
        self._pool = ThreadPoolExecutor(max(1, min(self._files, len(self._items))),
                                        thread_name_prefix=self._prefix)
        return self._iterate()

    def __exit__(self, *exc: object) -> None:
        for _, future in self._pending:
            future.cancel()  # not started: never will be; running: waited for below
        self._pending.clear()
        if self._pool is not None:
            # Threads cannot be stopped mid-read: waiting for the few running (at most ``files``,
            # within ``max_bytes``) is what leaves no read behind, even after Ctrl-C.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _iterate(self) -> Iterator[R]:
        pool = self._pool
        assert pool is not None, "ReadAhead is iterated inside its with block"
        items, following, ahead = self._items, 0, 0  # ahead: bytes of the pending items

        def fill() -> None:
            nonlocal following, ahead
            while following < len(items) and len(self._pending) < self._files:
                size = self._size(items[following])
                if self._pending and ahead + size > self._max_bytes:
                    return  # the next one would not fit: it waits for the caller to take one
                self._pending.append((size, pool.submit(self._read, items[following])))
                following, ahead = following + 1, ahead + size

        fill()
        while self._pending:
            size, future = self._pending[0]
            result = future.result()  # the read's error is raised here; later reads stop on exit
            self._pending.popleft()
            ahead -= size
            fill()  # before handing it over: the next reads run while the caller works
            yield result
            del result  # while the next read is waited for, the caller's copy is the only one


__all__ = ["READ_AHEAD_BYTES", "READ_AHEAD_FILES", "ReadAhead"]
