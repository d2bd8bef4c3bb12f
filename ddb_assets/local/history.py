"""A table's write history: what every item looked like at every instant of the PITR window.

Full exports with ``ExportTime`` replay it to one instant; incremental exports compare two
instants and report the keys written in between. It is pruned as the PITR window moves, so it
costs one entry per key plus the writes inside the window, not every write ever made.

Plain Python, no moto: the emulator feeds it (``local/emulator.py``) and tests drive it directly.
Items are DynamoDB JSON (``{"name": {"S": "..."}}``); times are epoch seconds of the world clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]


@dataclass(frozen=True)
class Write:
    """One put, update or delete: the item's whole state right after it (``None``: deleted)."""

    at: float  # epoch seconds
    key: str  # canonical primary key (see emulator._key_of)
    item: Item | None


@dataclass(frozen=True)
class Change:
    """What an incremental export says about one key: its state just before the window (``old``),
    its state at the window's end (``new``), and when it was last written inside the window."""

    key: str
    old: Item | None  # None: absent before the window (an insert)
    new: Item | None  # None: absent at the end (a delete)
    last_write_at: float  # epoch seconds of the key's last write inside the window

    @property
    def kind(self) -> str:
        """``insert``, ``update`` or ``delete`` (EXPORT_FORMAT.md §4.3)."""
        return "insert" if self.old is None else "delete" if self.new is None else "update"


@dataclass
class WriteHistory:
    """Per table: ``base`` holds each key's state before ``base_time`` (the PITR window's start
    once pruned; absent keys are not kept), ``writes`` every write since, in time order."""

    base: dict[str, Item] = field(default_factory=dict)
    base_time: float = -math.inf
    writes: list[Write] = field(default_factory=list)

    def record(self, at: float, key: str, item: Item | None) -> Write:
        """Append a write. Its time is never earlier than the last one's (a clock put back to real
        time must not reorder history). Returns the write as recorded."""
        latest = self.writes[-1].at if self.writes else self.base_time
        write = Write(max(at, latest), key, item)
        self.writes.append(write)
        return write

    def prune(self, cutoff: float) -> int:
        """Forget what no restorable instant ``>= cutoff`` needs: writes older than ``cutoff``
        fold into ``base`` (per key, only the newest survives; a delete drops the key). A cutoff
        at or before ``base_time`` does nothing: what was pruned stays pruned. Returns how many
        writes were folded."""
        if cutoff <= self.base_time:
            return 0
        folded = 0
        for write in self.writes:
            if write.at >= cutoff:
                break
            if write.item is None:
                self.base.pop(write.key, None)
            else:
                self.base[write.key] = write.item
            folded += 1
        del self.writes[:folded]
        self.base_time = cutoff
        return folded

    def items_at(self, moment: float, *, inclusive: bool = True) -> list[Item]:
        """The table at ``moment``: with ``inclusive``, writes at exactly ``moment`` included;
        without, the state just before it (what a window ending there leaves). Raises ValueError
        for a moment before ``base_time``: that past has been pruned."""
        return [item for item in self._state(moment, inclusive=inclusive).values() if item is not None]

    def changes(self, start: float, end: float) -> list[Change]:
        """The keys written in ``[start, end)``, each once: its state just before ``start`` and at
        the end, with the time of its last write in the window. Keys absent at both ends (inserted
        and deleted inside the window) are left out; keys written back to exactly their old state
        are kept (they were written; see EXPORT_FORMAT.md §4.3 and docs/local_world.md). Ordered by
        last write. Raises ValueError for a start before ``base_time``."""
        before = self._state(start, inclusive=False)
        last: dict[str, Write] = {}
        for write in self.writes:
            if write.at >= end:
                break
            if write.at >= start:
                last.pop(write.key, None)  # re-insert: keep the dict ordered by last write
                last[write.key] = write
        return [Change(key, before.get(key), write.item, write.at) for key, write in last.items()
                if before.get(key) is not None or write.item is not None]

    def _state(self, moment: float, *, inclusive: bool) -> dict[str, Item | None]:
        if moment < self.base_time:
            raise ValueError(f"the history before {moment} has been pruned (it starts at {self.base_time})")
        state: dict[str, Item | None] = dict(self.base)
        for write in self.writes:
            if write.at > moment or (write.at == moment and not inclusive):
                break
            state[write.key] = write.item
        return state

    def __len__(self) -> int:
        """Entries held: one per key in ``base`` plus the writes since."""
        return len(self.base) + len(self.writes)
