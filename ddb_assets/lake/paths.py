"""Hive-style partition folder names, escaped the way Hive and Athena expect."""

from __future__ import annotations

# Characters Hive escapes in partition values (FileUtils.escapePathName), plus control characters.
_UNSAFE = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(0x20)}


def hive_escape(value: str) -> str:
    return "".join(f"%{ord(ch):02X}" if ch in _UNSAFE else ch for ch in value)


def partition_folder(column: str, value: str) -> str:
    return f"{hive_escape(column)}={hive_escape(value)}"
