"""Where a conversion writes: the table's folder, its name in the catalog, and the catalog.

A destination is resolved first (``.`` and ``..`` segments and trailing slashes removed, relative
paths made absolute); the lake folder (its parent, where the SQLite catalog lives by default) and
the table name (its last segment, lowercased) are derived from what it resolves to. Refused before
anything is read, naming the destination:

- a last segment that is ``.``, ``..`` or nothing (a bucket, ``/``): it names no table folder
  (``lake/..`` would put the table, and a catalog, in the folder above);
- a lake folder itself (one holding ``catalog.db``, or the folder of the ``sqlite:///`` catalog):
  the table's ``data/`` and ``metadata/`` would mix with other tables' folders;
- a folder inside an existing table's folder (one with a ``metadata/`` of ``*.metadata.json``):
  that table's maintenance would remove the new table's files as orphans.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from ddb_assets.exports.storage import Location, S3Options, resolve
from ddb_assets.lake.catalog import CATALOG_FILE, CatalogConfig, CatalogError, open_catalog


class DestinationError(CatalogError):
    """The destination names no table folder of its own; the message says why."""


@dataclass
class LakeTarget:
    """Where a conversion's table lives: its catalog, identifier and location."""

    catalog: Any
    namespace: str
    name: str
    location: Location

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def lake_target(dest: str | os.PathLike[str], table_name: str | None, catalog: CatalogConfig,
                s3: S3Options | None) -> LakeTarget:
    """The table at ``dest`` (its location; named after its last segment unless ``table_name``)
    in ``catalog`` (the SQLite default lives in dest's parent folder, the lake folder)."""
    location = table_location(dest, catalog, s3)
    name = table_name or table_name_for(location.name)
    check_table_name(name)
    return LakeTarget(open_catalog(catalog, location.parent(), s3), catalog.namespace, name, location)


def table_location(dest: str | os.PathLike[str], catalog: CatalogConfig = CatalogConfig(),
                   s3: S3Options | None = None) -> Location:
    """``dest`` resolved, or DestinationError (see the module's docstring)."""
    text = os.fspath(dest)
    scheme, sep, rest = text.partition("://")
    path = rest if sep else (text[len("file://"):] if text.startswith("file://") else text)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if sep and scheme == "s3" and "/" not in rest.strip("/"):
        raise DestinationError(f"destination {text!r} is a bucket: give the table's folder in it "
                               f"(s3://bucket/lake/<table>)")
    if last in ("", ".", ".."):
        raise DestinationError(f"destination {text!r} ends in {last or '/'!r}, which names no table folder: give "
                               f"the table's own folder (lake/<table>)")
    if sep and scheme == "s3":
        bucket, _, key = rest.partition("/")
        location = resolve(f"s3://{bucket}/{posixpath.normpath('/' + key).lstrip('/')}", s3)
    else:
        location = resolve(os.path.normpath(os.path.abspath(path)), s3)
    if location.scheme == "file":
        _check_local_folder(location.path, text, catalog)
    return location


def _check_local_folder(path: str, text: str, catalog: CatalogConfig) -> None:
    configured = catalog.uri[len("sqlite:///"):] if catalog.kind == "sql" and catalog.uri and \
        catalog.uri.startswith("sqlite:///") else None
    if os.path.isfile(os.path.join(path, CATALOG_FILE)) or \
            (configured is not None and os.path.dirname(os.path.abspath(configured)) == path):
        raise DestinationError(f"destination {text!r} is a lake folder (it holds the catalog): give a table "
                               f"folder inside it ({os.path.join(path, '<table>')})")
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        metadata = os.path.join(parent, "metadata")
        if os.path.isdir(metadata) and any(n.endswith(".metadata.json") for n in os.listdir(metadata)):
            raise DestinationError(f"destination {text!r} is inside the table folder {parent}: give a folder of its "
                                   f"own beside it ({os.path.join(os.path.dirname(parent), '<table>')})")
        parent = os.path.dirname(parent)


def table_name_for(folder: str) -> str:
    """The catalog name a table folder gets: lowercase ``[a-z0-9_]`` (what Glue and Athena accept)."""
    return re.sub(r"[^a-z0-9_]+", "_", folder.lower()).strip("_")


def check_table_name(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,127}", name):
        raise CatalogError(f"table name {name!r}: use lowercase letters, digits and _ (not starting with a digit); "
                           f"it is the folder's name, lowercased, unless --table-name gives one")
