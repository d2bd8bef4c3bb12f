"""A thread pool that does not hold up an interrupt.

``with ThreadPoolExecutor(...)`` waits, on the way out, for every call already running; a call
stuck on an endpoint that stopped answering (a socket that never times out) then holds up Ctrl-C
and any error for as long as it waits. For work whose results are only read (S3 reads, existence
checks, deletes), ``io_threads`` waits on a normal exit only: on an exception (KeyboardInterrupt
included) it cancels what has not started and returns at once, leaving the running calls to end
on their own (the CLI exits without waiting for them either: cli.py ``_interrupted``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def io_threads(workers: int, name: str) -> Iterator[ThreadPoolExecutor]:
    """A ThreadPoolExecutor of ``workers`` threads named ``name``-N (see the module docstring)."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
