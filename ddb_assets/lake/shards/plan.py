"""Cut an export's data files into shards of about equal work.

A gzip data file cannot be split, so one file is the smallest unit. Hot partition keys make some
files several times the others: files go biggest first, each to the least loaded shard (greedy
longest-processing-time, within 4/3 of the best split). A file's weight is its listed size in
bytes when every file's size is known, else its item count from the manifest.
"""

from __future__ import annotations

import math
from typing import Sequence

from ddb_assets.lake.shards.spec import ShardFile

SHARD_BYTES = 256 << 20  # automatic shard count: about one shard per this much gzip input


def shard_count(files: Sequence[ShardFile], wanted: int = 0) -> int:
    """``wanted`` shards (0: one per ``SHARD_BYTES`` of listed input, at least two), never more
    than there are files with items, never fewer than one."""
    busy = sum(1 for f in files if f.items) or 1
    if wanted:
        return max(1, min(wanted, busy))
    total = sum(f.bytes or 0 for f in files)
    return max(1, min(busy, max(2, math.ceil(total / SHARD_BYTES))))


def plan_shards(files: Sequence[ShardFile], shards: int) -> list[list[ShardFile]]:
    """``files`` in at most ``shards`` groups of about equal weight (see the module docstring),
    each in export order; no group is empty. A file the manifest says holds no items is still read
    (its md5 and count are checked) and weighs 1."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    sized = all(f.bytes is not None for f in files)
    groups: list[list[ShardFile]] = [[] for _ in range(shards)]
    loads = [0] * shards
    # ties broken by export order, so a plan is the same every time for the same export
    for f in sorted(files, key=lambda f: (-((f.bytes or 0) if sized else f.items), f.index)):
        target = loads.index(min(loads))
        groups[target].append(f)
        loads[target] += max(1, (f.bytes or 0) if sized else f.items)
    return [sorted(group, key=lambda f: f.index) for group in groups if group]
