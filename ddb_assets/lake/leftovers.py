"""What a failed conversion leaves behind on local disk: none of the folders it made.

A conversion makes the table's folder (and the lake folder above it, for a first table) when it
writes its first data file; one that fails removes its files (lake/convert.py), and here the
folders it made that are empty now. A folder that held anything before the run, or holds anything
now (another run's files, a commit that landed), stays: only empty folders are removed, and only
those below the nearest one that existed when the run began.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


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
