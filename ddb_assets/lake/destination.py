"""Where a conversion writes: the table's folder, its name in the catalog, and the catalog.

A destination is resolved first (``.`` and ``..`` segments and trailing slashes removed, relative
paths made absolute); the lake folder (its parent, where the SQLite catalog lives by default) and
the table name (its last segment, lowercased) are derived from what it resolves to. Refused before
anything is read, naming the destination:

- a file, or a path inside one;
- a last segment that is ``.``, ``..`` or nothing (a bucket, ``/``): it names no table folder
  (``lake/..`` would put the table, and a catalog, in the folder above);
- a lake folder itself (one holding ``catalog.db``, or the folder of the ``sqlite:///`` catalog):
  the table's ``data/`` and ``metadata/`` would mix with other tables' folders;
- a folder inside an existing table's folder (one with a ``metadata/`` of ``*.metadata.json``):
  that table's maintenance would remove the new table's files as orphans; and a new table's folder
  around one (``lake/t`` when ``lake/t/data/x`` is a table, of another catalog say): the same, the
  other way round. Checked on the folders themselves, whatever catalog holds the tables, locally
  and on S3 (a listing of each parent's ``metadata/``, and of the destination when it is no table
  yet: a new table's folder is normally empty);
- a place that cannot be written (``check_writable``): a bucket that does not exist, a wrong
  endpoint, credentials S3 refuses, a read-only folder. Found before the catalog is opened and
  before the export is read, not after the whole export was parsed;
- a Glue catalog that does not answer or refuses the caller (``check_catalog_reachable``).

The probes (S3 and Glue) give up fast: a short connect timeout and at most two attempts, whatever
the retries configured for the conversion's own requests (a dead endpoint is refused in seconds).
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ddb_assets.exports.storage import Location, S3Options, resolve
from ddb_assets.lake.catalog import CATALOG_FILE, CatalogConfig, CatalogError, default_sql_uri, glue_properties, \
    glue_refusal, open_catalog

PROBE_CONNECT_SECONDS = 3
PROBE_READ_SECONDS = 10
PROBE_ATTEMPTS = 2  # the first try and one retry


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
    check_catalog_writable(catalog, location.parent())  # local and cheap: before any request
    check_writable(location, os.fspath(dest), s3)
    check_not_nested_s3(location, os.fspath(dest), s3)  # after the probe: a dead endpoint is refused fast
    check_catalog_reachable(catalog, s3)
    # A new SQLite catalog is created by the commit: a run failing before it leaves none behind.
    return LakeTarget(open_catalog(catalog, location.parent(), s3, lazy=True), catalog.namespace, name, location)


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


def _nearest_existing(path: str) -> str:
    """``path`` itself if it exists, else its nearest parent that does (``/`` at worst)."""
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def _check_local_folder(path: str, text: str, catalog: CatalogConfig) -> None:
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):  # what exists of the path is a file
        what = "a file" if existing == path else f"inside the file {existing}"
        raise DestinationError(f"destination {text!r} is {what}, not a folder: give a table folder (a new one, "
                               f"or the table's own)")
    configured = catalog.uri[len("sqlite:///"):] if catalog.kind == "sql" and catalog.uri and \
        catalog.uri.startswith("sqlite:///") else None
    if os.path.isfile(os.path.join(path, CATALOG_FILE)) or \
            (configured is not None and os.path.dirname(os.path.abspath(configured)) == path):
        raise DestinationError(f"destination {text!r} is a lake folder (it holds the catalog): give a table "
                               f"folder inside it ({os.path.join(path, '<table>')})")
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if _is_local_table(parent):
            raise _inside(text, parent, os.path.dirname(parent))
        parent = os.path.dirname(parent)
    if os.path.isdir(path) and not _is_local_table(path):  # a new table's folder: none inside it
        for directory, folders, _ in os.walk(path):
            folders.sort()
            if directory != path and _is_local_table(directory):
                raise _around(text, directory, os.path.dirname(path))


def _is_local_table(folder: str) -> bool:
    """Whether ``folder`` is a table's folder: its ``metadata/`` holds a ``*.metadata.json``."""
    metadata = os.path.join(folder, "metadata")
    return os.path.isdir(metadata) and any(n.endswith(".metadata.json") for n in os.listdir(metadata))


def _inside(text: str, table: str, beside: str) -> DestinationError:
    return DestinationError(f"destination {text!r} is inside the table folder {table}: give a folder of its own "
                            f"beside it ({beside.rstrip('/')}/<table>)")


def _around(text: str, table: str, beside: str) -> DestinationError:
    # That table's files would lie in this one's data/ or metadata/ (its maintenance would remove
    # them as orphans) or beside them: a table's folder holds no other table.
    return DestinationError(f"destination {text!r} holds the table folder {table}: a table's folder holds no other "
                            f"table; give a folder of its own beside it ({beside.rstrip('/')}/<table>)")


_METADATA_FILE = re.compile(r"(?P<table>.*)/metadata/[^/]+\.metadata\.json")


def check_not_nested_s3(location: Location, text: str, s3: S3Options | None = None) -> None:
    """On S3, refuse (DestinationError) a table location inside another table's folder or, for a
    new table, around one, as ``table_location`` does locally: one listing of each parent's
    ``metadata/`` and, when the location holds no table yet, one of the location (a few requests,
    with the probe's short timeouts). A listing S3 refuses (no s3:ListBucket) checks nothing."""
    if location.scheme != "s3":
        return
    from botocore.exceptions import BotoCoreError, ClientError

    from ddb_assets.exports.storage import s3_client

    bucket, _, key = location.path.partition("/")
    client = s3_client(s3, _probe_config(s3))

    def tables_under(prefix: str) -> Any:
        """The table folders (keys) whose metadata files are under ``prefix``, as they are listed."""
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                found = _METADATA_FILE.fullmatch(entry["Key"])
                if found:
                    yield found["table"]

    try:
        parts = key.strip("/").split("/")
        for end in range(len(parts) - 1, 0, -1):
            parent = "/".join(parts[:end])
            if any(table == parent for table in tables_under(f"{parent}/metadata/")):
                raise _inside(text, f"s3://{bucket}/{parent}", f"s3://{bucket}/{'/'.join(parts[:end - 1])}"
                              if end > 1 else f"s3://{bucket}")
        if not any(table == key for table in tables_under(f"{key}/metadata/")):
            for table in tables_under(f"{key}/"):
                raise _around(text, f"s3://{bucket}/{table}", location.parent().uri)
    except (BotoCoreError, ClientError):
        return  # S3 refused the listing: nothing can be told (the conversion's own requests say more)


def check_writable(location: Location, text: str, s3: S3Options | None = None) -> None:
    """Refuse (DestinationError, naming ``text`` and the cause) a table location the conversion
    could not write. On S3 an empty probe object is written under it (one PutObject) and deleted: PutObject and
    DeleteObject are what the conversion and maintenance need there anyway, whereas a HEAD of the
    bucket needs s3:ListBucket and proves no write. Locally the nearest existing folder must be
    writable (nothing is created)."""
    if location.scheme == "file":
        existing = _nearest_existing(location.path)  # a folder: table_location refused a file in the way
        if not os.access(existing, os.W_OK | os.X_OK):
            why = "is on a read-only file system: give a destination on a writable volume" \
                if os.statvfs(existing).f_flag & os.ST_RDONLY else \
                "is not writable (permission denied): fix its permissions, or give another destination"
            raise DestinationError(f"destination {text!r} cannot be written: the folder {existing} {why}")
        return
    from botocore.exceptions import BotoCoreError, ClientError

    from ddb_assets.exports.storage import s3_client, s3_client_failure

    probe = location.join(f".ddb-assets-write-probe-{uuid.uuid4().hex}")
    bucket, _, key = probe.path.partition("/")
    # boto3, not pyarrow: one plain PutObject (pyarrow's writes start a multipart upload), and
    # pyarrow's delete_file leaves a folder marker object behind.
    client = s3_client(s3, _probe_config(s3))
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
    except (BotoCoreError, ClientError) as exc:
        reason = s3_client_failure(exc, client, "PutObject") or " ".join(str(exc).split())
        raise DestinationError(f"destination {text!r} cannot be written: {reason}") from None
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError):
        pass  # written but not deletable: an orphan the table's maintenance removes


def check_catalog_reachable(catalog: CatalogConfig, s3: S3Options | None = None) -> None:
    """Refuse (CatalogError, naming the endpoint) a Glue catalog that does not answer or refuses
    the caller: one GetDatabase of the namespace (a missing database is fine: the conversion
    creates it), with the probe's short timeouts. Other kinds answer for themselves (SQLite: local;
    REST: on opening)."""
    if catalog.kind != "glue":
        return
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    glue = glue_properties(catalog, s3)
    try:
        client = boto3.Session(region_name=glue.get("glue.region"), profile_name=glue.get("glue.profile-name"),
                               aws_access_key_id=glue.get("glue.access-key-id"),
                               aws_secret_access_key=glue.get("glue.secret-access-key"),
                               aws_session_token=glue.get("glue.session-token")) \
            .client("glue", endpoint_url=glue.get("glue.endpoint"), config=_probe_config(s3))
    except BotoCoreError:
        return  # no region, an unknown profile: opening the catalog says so
    try:
        client.get_database(Name=catalog.namespace)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
            raise glue_refusal(client, exc) from None
    except BotoCoreError as exc:
        raise glue_refusal(client, exc) from None


def _probe_config(s3: S3Options | None) -> Any:
    from botocore.config import Config

    attempts = min(PROBE_ATTEMPTS, (s3 or S3Options()).attempts())
    return Config(connect_timeout=PROBE_CONNECT_SECONDS, read_timeout=PROBE_READ_SECONDS,
                  retries={"mode": "standard", "total_max_attempts": attempts})


def check_catalog_writable(catalog: CatalogConfig, lake: Location) -> None:
    """Refuse (CatalogError) a SQLite catalog that a commit could not write: its file or its folder
    (SQLite writes its journal beside the file) not writable. A missing folder is open_catalog's
    refusal. Other kinds answer for themselves on the first lookup (lake/catalog.py load_table)."""
    if catalog.kind != "sql":
        return
    uri = catalog.uri or default_sql_uri(lake)  # an s3:// lake has no folder for the default one
    if not uri.startswith("sqlite:///"):
        return
    path = os.path.abspath(uri[len("sqlite:///"):])
    folder = os.path.dirname(path)
    for place in (path, folder):
        if os.path.exists(place) and not os.access(place, os.W_OK):
            raise CatalogError(f"the catalog {path} cannot be written ({place} is read-only for this user or on a "
                               f"read-only file system): fix its permissions, or give another --catalog")


def table_name_for(folder: str) -> str:
    """The catalog name a table folder gets: lowercase ``[a-z0-9_]`` (what Glue and Athena accept)."""
    return re.sub(r"[^a-z0-9_]+", "_", folder.lower()).strip("_")


def check_table_name(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,127}", name):
        raise CatalogError(f"table name {name!r}: use lowercase letters, digits and _ (not starting with a digit); "
                           f"it is the folder's name, lowercased, unless --table-name gives one")
