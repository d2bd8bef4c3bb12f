"""The driver's storage requests of a round (writing its shard specs, reading the tasks' results)
made side by side: each is one S3 request whose time is mostly latency (tens of milliseconds), so
38,000 shards' specs and results one after another cost minutes a round on the driver.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Requests in flight at once: pyarrow's S3 client and boto3 pool connections; 32 keeps S3's
# per-prefix request rates (3,500 writes, 5,500 reads a second) far away.
IO_THREADS = 32


def in_parallel(work: Callable[[T], R], items: Iterable[T], threads: int = IO_THREADS) -> list[R]:
    """``[work(item) for item in items]``, up to ``threads`` at once, in the order of ``items``.
    Raises the error of the first item (in that order) whose ``work`` raised; work not started
    by then is not started."""
    items = list(items)
    if len(items) <= 1 or threads <= 1:
        return [work(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="ddb-assets-io")
    try:
        futures = [pool.submit(work, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["IO_THREADS", "in_parallel"]
