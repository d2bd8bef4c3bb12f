"""What a failed or interrupted conversion leaves behind: none of its files, none of the folders it made.

Every data file of a run begins with the run's id (lake/writer.py), so ``remove_run_files`` finds
them all, also those of a worker that was killed before it could hand them back (Ctrl-C ends the
workers at once). ``RunFiles`` keeps a conversion's run ids from the moment each is taken until
their files are removed: a conversion interrupted anywhere before its commit (also between its
write pass and its commit) removes them in one listing of the table's ``data/``, and a clean-up
already done is not listed again. A conversion makes the table's folder (and the lake folder above it, for a first
table) when it writes its first data file; here too the folders it made that are empty again. A
folder that held anything before the run, or holds anything now (another run's files, a commit
that landed), stays: only empty folders are removed, and only those below the nearest one that
existed when the run began. What a hard kill (``kill -9``) leaves is an orphan for ``maintain``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import pyarrow.fs as pafs

from ddb_assets.exports.storage import Location, S3Options, delete_quietly, remove_quietly


def local_path(dest: str | os.PathLike[str]) -> str | None:
    """``dest`` as an absolute local path, or None for an object store (``s3://``)."""
    text = os.fspath(dest)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        return None
    return os.path.normpath(os.path.abspath(text))


@contextmanager
def folders_removed_on_failure(dest: str | os.PathLike[str]) -> Iterator[None]:
    """Run the body; if it raises, remove the folders at and above ``dest`` (and below it) that
    did not exist before and are empty now, then re-raise."""
    path = local_path(dest)
    existed = path
    while existed is not None and not os.path.isdir(existed) and existed != os.path.dirname(existed):
        existed = os.path.dirname(existed)
    try:
        yield
    except BaseException:
        if path is not None and existed != path:
            remove_empty_folders(path, stop=existed)
        raise


def remove_empty_folders(path: str, stop: str | None) -> None:
    """Remove the empty folders in ``path`` (deepest first), ``path`` itself if empty then, and
    its empty parents up to ``stop`` (not included). Best effort: a folder that cannot be
    removed stays."""
    for directory, _, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(directory)  # succeeds only when empty
        except OSError:
            pass
    parent = os.path.dirname(path)
    while stop is not None and parent != stop and parent.startswith(stop + os.sep):
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = os.path.dirname(parent)


class RunFiles:
    """The runs of one conversion whose files are under the table's ``data/`` (the Location
    ``data``) and not committed: each run id from the moment it is taken (``take``) until
    ``remove`` has deleted its files or the commit has begun (the caller stops calling ``remove``)."""

    def __init__(self, data: Location) -> None:
        self.data = data
        self.runs: list[str] = []  # taken, their files not removed yet

    def take(self, run: str) -> str:
        """Note ``run`` (before any file of it is written); returns it."""
        self.runs.append(run)
        return run

    def remove(self, written: list[Any], s3: S3Options | None = None) -> int:
        """Best effort, once the runs' writers have ended: delete the files handed back
        (``written``: WrittenFile-likes with a ``path``; the list is emptied), then every other
        file of the runs not removed yet, found by name in one listing of ``data`` (none when
        there are none: a clean-up already done lists nothing again). Returns how many files the
        listing found and deleted."""
        remove_quietly((w.path for w in written), s3)
        written.clear()
        if not self.runs:
            return 0
        removed = remove_run_files(self.data, self.runs)
        self.runs.clear()  # an interrupt before this line leaves them to the next remove
        return removed


def remove_run_files(data: Location, runs: str | Iterable[str]) -> int:
    """Best effort: delete every data file of ``runs`` (a run id or several; any shard, any
    attempt: their names begin with the run id) under ``data``, in one listing (the deletions on
    threads on S3). Returns how many were deleted."""
    prefixes = tuple(f"{run}-" for run in ([runs] if isinstance(runs, str) else runs))
    if not prefixes:
        return 0
    try:
        entries = data.fs.get_file_info(pafs.FileSelector(data.path, recursive=True, allow_not_found=True))
    except OSError:
        return 0
    return delete_quietly([Location(data.fs, entry.path, data.scheme) for entry in entries
                           if entry.type == pafs.FileType.File and entry.base_name.startswith(prefixes)])
