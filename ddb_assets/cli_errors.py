"""What the command line says when its environment fails it: one line naming the path or URI and
what to do, instead of a traceback.

:func:`environment_message` turns the errors that come from the environment, not from our code
(a file system refusing a write, S3 refusing a request, a catalog database that is not one, a
server that does not answer), into that line; anything else is a bug and keeps its traceback.
``DDB_ASSETS_DEBUG=1`` shows the traceback of every error, these included.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Optional

DEBUG_VARIABLE = "DDB_ASSETS_DEBUG"

# What to do, by errno, for a local file or folder that the system refused.
_LOCAL_HINTS = {
    errno.EROFS: ("read-only file system", "give a destination on a writable volume"),
    errno.EACCES: ("permission denied", "fix its permissions, or give another destination"),
    errno.EPERM: ("operation not permitted", "fix its permissions, or give another destination"),
    errno.ENOSPC: ("no space left on the device", "free some space, or give a destination on another volume "
                                                  "(--work-dir for convert's scratch)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or give a destination on another volume"),
    errno.ENOTDIR: ("a file stands where a folder is needed", "give a folder path, or move the file away"),
    errno.EEXIST: ("a file stands where a folder is needed", "give a folder path, or move the file away"),
    errno.EISDIR: ("a folder stands where a file is needed", "give a file path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENAMETOOLONG: ("the name is too long", "give a shorter path"),
}

# A local path inside pyarrow's messages ("Failed to open local file '/x'. Detail: ...", "Cannot
# create directory '/x'. Detail: ...").
_QUOTED_PATH = re.compile(r"(?:file|directory|path) '(?P<path>[^']+)'")


def debug_requested() -> bool:
    """Whether ``DDB_ASSETS_DEBUG`` asks for tracebacks (set, and not empty, 0, false or no)."""
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def environment_message(exc: BaseException) -> Optional[str]:
    """The one-line message for an error of the environment, or None for anything else."""
    if _is_catalog_database_error(exc):
        return _database_message(exc)
    if _is_requests_error(exc):
        return _connection_message(exc)  # type: ignore[arg-type]
    if isinstance(exc, OSError):
        return _s3_message(exc) or _local_message(exc)
    if _is_broken_pool(exc):
        return ("a worker process ended abruptly (killed, perhaps by the system for want of memory); nothing "
                "was committed: run it again, with fewer --workers if memory is short")
    return None


def _is_broken_pool(exc: BaseException) -> bool:
    """A pool worker that died (a signal, the OOM killer), not an error of its task."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(exc, BrokenProcessPool)


def _s3_message(exc: OSError) -> Optional[str]:
    from ddb_assets.exports.storage import s3_failure

    failure = s3_failure(exc)
    return f"{failure[0] or 'S3'}: {failure[1]}" if failure else None


def _local_message(exc: OSError) -> str:
    path = exc.filename
    detail = exc.strerror or str(exc)
    if path is None:
        quoted = _QUOTED_PATH.search(str(exc))
        path = quoted["path"] if quoted else None
    what, todo = _LOCAL_HINTS.get(exc.errno or -1, (None, None))
    if what is None:
        what = re.sub(r"^.*Detail: \[errno \d+\] ", "", detail).strip() or type(exc).__name__
    if exc.filename2:
        path = f"{path} -> {exc.filename2}"
    where = f"{path}: " if path else ""
    return f"{where}{what}" + (f": {todo}" if todo else "")


def _is_requests_error(exc: BaseException) -> bool:
    try:
        from requests.exceptions import RequestException
    except ImportError:  # pragma: no cover - requests comes with pyiceberg and moto
        return False
    return isinstance(exc, RequestException)


def _connection_message(exc: OSError) -> str:
    from requests.exceptions import ConnectionError as RequestsConnectionError, Timeout

    request = getattr(exc, "request", None)
    url = getattr(request, "url", None) or ""
    reason = _reason(str(exc))
    if isinstance(exc, Timeout) and not isinstance(exc, RequestsConnectionError):
        return f"{url or 'the server'} did not answer in time ({reason}): is it running and reachable?"
    if isinstance(exc, RequestsConnectionError):
        return f"nothing answers at {url or 'the server'} ({reason}): start the server, or check the URI given " \
               f"(--catalog rest:..., AWS_ENDPOINT_URL)"
    return f"{url or 'the server'}: {reason}"


def _reason(text: str) -> str:
    """``Connection refused`` out of urllib3's nested exception text."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found[1].strip().rstrip(".")
    for known in ("Read timed out", "Connection refused", "Name or service not known", "timed out"):
        if known in text:
            return known
    return " ".join(text.split())[:200]


def _is_catalog_database_error(exc: BaseException) -> bool:
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - sqlalchemy comes with pyiceberg[sql-sqlite]
        return False
    return isinstance(exc, SQLAlchemyError)


def _database_message(exc: BaseException) -> str:
    """The database's own words (``file is not a database``), without the SQL statement."""
    orig = getattr(exc, "orig", None)
    detail = " ".join(str(orig if orig is not None else exc).split("\n[SQL:")[0].split())
    return f"the catalog database failed: {detail} (give another --catalog, or repair or move the catalog file)"
