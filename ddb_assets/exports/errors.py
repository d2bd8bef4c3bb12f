"""Errors raised while reading an export. Each names the object (and line) at fault."""

from __future__ import annotations


class ExportFormatError(Exception):
    """An export does not match the documented format.

    ``obj`` is the object (S3 key or file path) at fault and ``line`` the 1-based line number
    inside it, when there is one, so that every message says where to look.
    """

    def __init__(self, obj: str, problem: str, *, line: int | None = None):
        self.obj = obj
        self.line = line
        self.problem = problem
        where = f"{obj}:{line}" if line is not None else obj
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Errors cross process boundaries (conversion workers); rebuild them with their fields.
        return _rebuild, (type(self), self.obj, self.problem, self.line)


def _rebuild(cls: type, obj: str, problem: str, line: int | None) -> ExportFormatError:
    return cls(obj, problem, line=line)


class ChecksumMismatch(ExportFormatError):
    """An object's bytes do not hash to the checksum its manifest records."""


class ItemCountMismatch(ExportFormatError):
    """A data file (or the whole export) holds a different number of items than the manifest says."""


class MissingObject(ExportFormatError):
    """An object the manifests name does not exist."""


class OversizedLine(ExportFormatError):
    """A line far longer than any DynamoDB item can be (a damaged file or a decompression bomb)."""


class UnreadableObject(ExportFormatError, OSError):
    """An object exists (or may) but cannot be read: S3 kept failing through every retry, access
    is denied, the disk errs. Also an OSError, for callers that handle storage failures as such.

    ``transient`` says the failure is of the kind retries are for (network, throttling, 5xx):
    the retries ran out rather than never applied.
    """

    def __init__(self, obj: str, problem: str, *, line: int | None = None, transient: bool = False):
        super().__init__(obj, problem, line=line)
        self.transient = transient

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return _rebuild_unreadable, (self.obj, self.problem, self.line, self.transient)


def _rebuild_unreadable(obj: str, problem: str, line: int | None, transient: bool) -> UnreadableObject:
    return UnreadableObject(obj, problem, line=line, transient=transient)
