"""Glue ``UpdateTable`` checks ``VersionId`` as AWS does (optimistic locking for Iceberg commits).

moto keeps a version per table update (``FakeTable.versions``, ``GetTable`` answers ``VersionId``)
but ignores the request's ``VersionId``: two writers that read the same version both "succeed" and
the second silently replaces the first. Iceberg catalogs on Glue (pyiceberg, Iceberg Java) rely on
AWS refusing that second update, so here, in the moto process:

* ``UpdateTable`` with a ``VersionId`` other than the table's current one fails with
  ``ConcurrentModificationException`` ("Update table failed due to concurrent modifications."),
  and the table is left as it was;
* without ``VersionId`` the update goes through, as on AWS;
* every successful update moves the version on by one (moto's own numbering: a new table is at
  "1", where AWS starts at "0"; callers treat the id as opaque, so only the increments matter);
* ``SkipArchive=true`` keeps no archived copy of the replaced version (``GetTableVersions`` then
  lists only what was archived), as AWS documents. pyiceberg passes it by default.

The check and the update run under one lock: the moto server handles requests on many threads,
and two updates checked before either is applied would both pass.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.glue.exceptions import GlueClientError

_LOCK = threading.Lock()  # one check-and-update at a time
_INSTALL_LOCK = threading.Lock()
_installed = False


class ConcurrentModificationException(GlueClientError):
    def __init__(self) -> None:
        super().__init__("ConcurrentModificationException", "Update table failed due to concurrent modifications.")


def install() -> None:
    """Make moto's Glue ``UpdateTable`` honour ``VersionId`` and ``SkipArchive``. Idempotent."""
    global _installed
    from moto.glue.responses import GlueResponse

    with _INSTALL_LOCK:
        if _installed:
            return
        original = GlueResponse.update_table

        def update_table(self: Any) -> Any:
            database_name = self.parameters.get("DatabaseName")
            table_name = (self.parameters.get("TableInput") or {}).get("Name")
            expected = self.parameters.get("VersionId")
            with _LOCK:
                table = self.glue_backend.get_table(database_name, table_name)  # EntityNotFound, as on AWS
                before = str(table._current_version)
                if expected is not None and str(expected) != before:
                    raise ConcurrentModificationException()
                result = original(self)
                if self.parameters.get("SkipArchive") is True:
                    table.versions.pop(before, None)
                return result

        GlueResponse.update_table = update_table  # type: ignore[method-assign]
        _installed = True
