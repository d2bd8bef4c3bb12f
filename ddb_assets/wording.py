"""Counts in the words users read: ``1 delete``, ``0 deletes``, ``3,000 items``."""

from __future__ import annotations


def counted(number: float, noun: str, plural: str | None = None) -> str:
    """``number`` with thousands separators, then ``noun`` for exactly one, else ``plural``
    (default: ``noun`` + ``s``). ``counted(1, "delete")`` → ``1 delete``; ``counted(2, "entry",
    "entries")`` → ``2 entries``; a fraction keeps its digits as given (``1.5 MB`` is the caller's)."""
    whole = isinstance(number, int) or float(number).is_integer()
    text = f"{int(number):,}" if whole else f"{number:,}"
    return f"{text} {noun if whole and int(number) == 1 else (plural or noun + 's')}"
