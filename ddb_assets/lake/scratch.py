"""Scratch folders of two-stage conversions, and removing those of runs that are gone.

A two-stage conversion spills the parsed export to ``<work dir>/ddb-assets-XXXXXXXX/`` (up to about
0.8x the export's decompressed size) and removes it when it ends. A run that is killed, or whose
host dies, cannot: so each folder carries an owner file naming the process that made it (host,
pid, the process's start time and the machine's boot id, so a reused pid is not mistaken for the
owner), and the next conversion in the same work dir, or ``ddb-assets maintain``, removes the
folders whose owner is no longer running. Folders of other hosts (a shared work dir) are left to
their hosts. Folders from before owner files (no owner file) are removed once older than a grace
period, and only if they hold nothing but spill files; so are the query engine's profiling files
(``ddb-assets-profile-*.json``, a few kilobytes) that a killed process left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass

PREFIX = "ddb-assets-"
OWNER_FILE = "owner.json"
SPILL_NAME = re.compile(r"^\d{6}-\d{4}\.arrow$")  # lake.convert's spill files
# query.duckdb_engine's profiling output (kilobytes, removed at once unless the process is killed).
PROFILE_FILE = re.compile(r"^ddb-assets-profile-[A-Za-z0-9_]+\.json$")
UNMARKED_GRACE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class RemovedScratch:
    path: str
    bytes: int
    reason: str


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as source:
            return source.read().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_record() -> dict[str, object]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _start_time(pid), "boot": _boot_id(),
            "created": time.time()}


def make_scratch(work_dir: str | None) -> str:
    """A new scratch folder in ``work_dir`` (default TMPDIR), marked as this process's. Returns its path."""
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
    path = tempfile.mkdtemp(prefix=PREFIX, dir=work_dir)
    with open(os.path.join(path, OWNER_FILE), "w", encoding="utf-8") as owner:
        json.dump(owner_record(), owner)
    return path


def _why_stale(path: str, now: float) -> str | None:
    """Why the scratch folder ``path`` belongs to no running process (None: it may, keep it)."""
    try:
        with open(os.path.join(path, OWNER_FILE), encoding="utf-8") as source:
            owner = json.load(source)
    except FileNotFoundError:
        # Made before owner files existed: ours only if it holds nothing but spill files.
        try:
            names = os.listdir(path)
            age = now - os.stat(path).st_mtime
        except OSError:
            return None
        if age > UNMARKED_GRACE_SECONDS and all(SPILL_NAME.match(name) for name in names):
            return f"no owner file, untouched for {age / 3600:.0f} h"
        return None
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return None  # another host's (a shared work dir): only that host can tell
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return None
    boot = _boot_id()
    if owner.get("boot") and boot and owner["boot"] != boot:
        return f"made by pid {pid} before the machine restarted"
    if not _running(pid):
        return f"pid {pid}, which made it, is not running"
    started = _start_time(pid)
    if owner.get("start") and started and owner["start"] != started:
        return f"pid {pid}, which made it, has ended (the pid now belongs to another process)"
    return None


def _size(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass
    return total


def remove_stale_scratch(work_dir: str | None = None, dry_run: bool = False) -> list[RemovedScratch]:
    """Remove (or with ``dry_run`` only list) the scratch folders in ``work_dir`` (default TMPDIR)
    left by conversions whose process is gone. Never raises for a folder it cannot read or remove."""
    base = work_dir or tempfile.gettempdir()
    removed = []
    now = time.time()
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    try:
        leftovers = [e for e in os.scandir(base) if PROFILE_FILE.match(e.name) and e.is_file(follow_symlinks=False)]
    except OSError:
        leftovers = []
    for entry in leftovers:
        try:
            stat = entry.stat(follow_symlinks=False)
            if now - stat.st_mtime > UNMARKED_GRACE_SECONDS:
                if not dry_run:
                    os.unlink(entry.path)
                removed.append(RemovedScratch(entry.path, stat.st_size, "a query profile left by a killed process"))
        except OSError:
            continue
    for entry in entries:
        reason = _why_stale(entry.path, now)
        if reason is None:
            continue
        size = _size(entry.path)
        if not dry_run:
            shutil.rmtree(entry.path, ignore_errors=True)
            if os.path.exists(entry.path):
                continue
        removed.append(RemovedScratch(entry.path, size, reason))
    return removed
