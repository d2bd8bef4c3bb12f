"""Where the lake's Iceberg tables are registered: a SQLite file (embedded), AWS Glue, or REST.

- ``sql`` (the default): pyiceberg's ``SqlCatalog`` over a SQLite file. For a local lake it lives
  in the lake root, ``<lake>/catalog.db``, so a lake folder is self-contained: ``convert SRC lake/t``
  then ``query --lake lake`` needs no setup. An ``s3://`` lake has no local folder for it: give the
  file (``--catalog sqlite:///relative/catalog.db`` or ``sqlite:////absolute/catalog.db``, SQLAlchemy's
  forms; ``catalog.uri``) or use Glue.
- ``glue``: the AWS Glue Data Catalog (pyiceberg's ``GlueCatalog``), which Athena reads natively;
  the namespace is the Glue database.
- ``rest``: any Iceberg REST catalog (S3 Tables, Polaris, Nessie, ...), ``uri`` its endpoint.

Whatever the kind, a table's current snapshot is what the catalog points at: committing a snapshot
*is* registering it, so the catalog and the data never disagree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ddb_assets.exports.storage import Location, S3Options

CATALOG_KINDS = ("sql", "glue", "rest")
DEFAULT_NAMESPACE = "ddb_lake"
CATALOG_FILE = "catalog.db"


class CatalogError(ValueError):
    """The catalog cannot be opened or does not hold what was asked for; the message says which."""


@dataclass(frozen=True)
class CatalogConfig:
    """Which Iceberg catalog, and its namespace (the Glue database for ``glue``)."""

    kind: str = "sql"
    uri: str | None = None  # sql: a SQLAlchemy URI (default sqlite:///<lake>/catalog.db); rest: the endpoint
    namespace: str = DEFAULT_NAMESPACE
    properties: dict[str, str] = field(default_factory=dict)  # more pyiceberg catalog properties (rest auth, ...)

    def __post_init__(self) -> None:
        if self.kind not in CATALOG_KINDS:
            raise CatalogError(f"catalog kind must be one of {', '.join(CATALOG_KINDS)}, not {self.kind!r}")
        if self.kind == "rest" and not self.uri:
            raise CatalogError("a rest catalog needs its uri (the REST endpoint)")

    @classmethod
    def parse(cls, text: str | None, namespace: str | None = None) -> "CatalogConfig":
        """The CLI's ``--catalog``: ``sql`` (or empty: the default), ``sqlite:///relative/catalog.db``
        (any SQLAlchemy URI), ``glue``, or ``rest:https://...``."""
        ns = {"namespace": namespace} if namespace else {}
        if not text or text == "sql":
            return cls(**ns)
        if text == "glue":
            return cls("glue", **ns)
        if text in ("rest", "rest:") or (text.startswith("rest:") and not text[len("rest:"):].strip()):
            raise CatalogError(f"invalid value for '--catalog': {text!r}: a rest catalog needs its endpoint, as "
                               f"rest:https://host/path")
        if text.startswith("rest:"):
            return cls("rest", uri=text[len("rest:"):], **ns)
        if "://" in text:
            return cls("sql", uri=text, **ns)
        raise CatalogError(f"invalid value for '--catalog': {text!r} is not a catalog: use sql, "
                           f"sqlite:///relative/catalog.db, sqlite:////absolute/catalog.db, glue or rest:https://...")

    def describe(self) -> str:
        return {"sql": f"sql ({self.uri})" if self.uri else "sql", "glue": "glue", "rest": f"rest ({self.uri})"}[self.kind]


def default_sql_uri(lake: Location) -> str:
    if lake.scheme != "file":
        raise CatalogError(f"the lake {lake.uri} is on S3, where no SQLite catalog can live: choose one "
                           f"(--catalog sqlite:////absolute/path/catalog.db, or --catalog glue; in YAML, catalog.kind/uri)")
    return f"sqlite:///{os.path.join(lake.path, CATALOG_FILE)}"


def relative_sqlite_hint(uri: str) -> str:
    """For a ``sqlite:///`` URI whose path is relative (SQLAlchemy's reading: three slashes, then the
    path as given), how to write an absolute one (four slashes); "" otherwise."""
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else "/"
    if path.startswith("/") or ":memory:" in path:
        return ""
    return (f" ({uri} is relative to the current folder, as SQLAlchemy reads it; an absolute path takes four "
            f"slashes: sqlite:///{os.path.abspath(path)} is this one)")


def file_io_properties(s3: S3Options | None) -> dict[str, str]:
    """pyiceberg FileIO properties for the same S3 endpoint and credentials the rest of the code uses."""
    settings = (s3 or S3Options()).with_environment()
    properties: dict[str, str] = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    if settings.region:
        properties["s3.region"] = settings.region
    if settings.endpoint_url:
        properties["s3.endpoint"] = settings.endpoint_url
        properties["s3.force-virtual-addressing"] = "false"
    if settings.access_key and settings.secret_key:
        properties["s3.access-key-id"] = settings.access_key
        properties["s3.secret-access-key"] = settings.secret_key
    return properties


def open_catalog(config: CatalogConfig, lake: Location | None, s3: S3Options | None = None, *,
                 lazy: bool = False) -> Any:
    """A pyiceberg Catalog for ``config``; the SQLite default lives in ``lake`` (see above).
    ``lazy``: a SQLite catalog file that does not exist yet is created by the first write (a
    conversion's commit), not now: see PendingCatalog."""
    properties = {**file_io_properties(s3), **config.properties}
    if config.kind == "sql":
        from pyiceberg.catalog.sql import SqlCatalog

        if config.uri:
            uri = config.uri
        elif lake is not None:
            uri = default_sql_uri(lake)
        else:
            raise CatalogError("no lake root to keep the SQLite catalog in")
        if uri.startswith("sqlite:///"):
            path = uri[len("sqlite:///"):]
            folder = os.path.dirname(path)
            if lazy and ":memory:" not in uri and not os.path.exists(path) and \
                    (not folder or os.path.isdir(folder) or (lake is not None and lake.scheme == "file"
                                                              and os.path.abspath(folder) == lake.path)):
                return PendingCatalog(path, lambda: open_catalog(config, lake, s3))
            if folder and not os.path.isdir(folder):
                if lake is not None and lake.scheme == "file" and os.path.abspath(folder) == lake.path:
                    os.makedirs(folder, exist_ok=True)
                else:
                    raise CatalogError(f"the catalog's folder {folder} does not exist: create it"
                                       + relative_sqlite_hint(uri))
        warehouse = lake.uri if lake is not None else ""
        return _sql_catalog(SqlCatalog, {"uri": uri, "warehouse": warehouse, **properties})
    if config.kind == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        return GlueCatalog("ddb_assets", **{**properties, **glue_properties(config, s3)})
    from pyiceberg.catalog.rest import RestCatalog
    from requests.exceptions import RequestException

    try:
        return RestCatalog("ddb_assets", **{"uri": config.uri or "", **properties})
    except RequestException as exc:  # it asks the server for its configuration on opening
        found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
        reason = found[1].strip() if found else type(exc).__name__
        raise CatalogError(f"no Iceberg REST catalog answers at {config.uri} ({reason}): start it, or check "
                           f"--catalog (catalog.uri in the configuration)") from exc


class PendingCatalog:
    """A SQLite catalog whose file does not exist yet. Reads answer as an empty catalog's would
    (no table, no namespace) without creating anything; any other use (creating the namespace
    before a commit) creates the file and its folder (``open_catalog``) and delegates from then on.
    So a conversion that fails before its commit leaves no catalog file behind; once the file
    exists (another run created it meanwhile), reads go to it."""

    def __init__(self, path: str, opener: Any) -> None:
        self.path = path
        self._opener = opener
        self._catalog: Any = None

    def _opened(self, create: bool) -> Any:
        if self._catalog is None and (create or os.path.isfile(self.path)):
            self._catalog = self._opener()
        return self._catalog

    def load_table(self, identifier: Any) -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        catalog = self._opened(create=False)
        if catalog is None:
            raise NoSuchTableError(f"Table does not exist: {identifier}")
        return catalog.load_table(identifier)

    def list_tables(self, namespace: Any) -> list[Any]:
        catalog = self._opened(create=False)
        return [] if catalog is None else catalog.list_tables(namespace)

    def list_namespaces(self, *args: Any) -> list[Any]:
        catalog = self._opened(create=False)
        return [] if catalog is None else catalog.list_namespaces(*args)

    def __getattr__(self, name: str) -> Any:
        from pyiceberg.catalog.sql import SqlCatalog

        # Probing for what a SqlCatalog lacks (load_table's getattr(c, "glue", None)) creates no file.
        if name.startswith("__") or not (hasattr(SqlCatalog, name) or name in ("name", "properties", "engine")):
            raise AttributeError(name)
        return getattr(self._opened(create=True), name)


def glue_properties(config: CatalogConfig, s3: S3Options | None) -> dict[str, str]:
    """pyiceberg's ``glue.*`` properties: the region and credentials the rest of the code uses, and
    the endpoint as botocore resolves one: ``AWS_ENDPOINT_URL_GLUE``, else the configured endpoint
    (``s3.endpoint_url`` unless it is only ``AWS_ENDPOINT_URL_S3``'s), else ``AWS_ENDPOINT_URL``, else
    AWS's; ``glue.endpoint`` in the catalog's properties wins."""
    settings = (s3 or S3Options()).with_environment()
    glue: dict[str, str] = {}
    if settings.region:
        glue["glue.region"] = settings.region
    configured = s3.endpoint_url if s3 is not None and s3.endpoint_url != os.environ.get("AWS_ENDPOINT_URL_S3") \
        else None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_GLUE") or configured or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        glue["glue.endpoint"] = endpoint
    if settings.access_key and settings.secret_key:
        glue.update({"glue.access-key-id": settings.access_key, "glue.secret-access-key": settings.secret_key})
    return {**glue, **{k: v for k, v in config.properties.items() if k.startswith("glue.")}}


def _sql_catalog(factory: Any, properties: dict[str, str]) -> Any:
    """A SqlCatalog; two runs opening a new catalog file at once both create its tables, and the
    slower one's CREATE TABLE fails: the tables exist then, so opening again succeeds. A file
    that is not a SQLite database (or cannot be opened) is a CatalogError naming it."""
    from sqlalchemy.exc import DatabaseError, OperationalError

    for attempt in range(3):
        try:
            return factory("ddb_assets", **properties)
        except OperationalError as exc:
            if "already exists" in str(exc) and attempt < 2:
                continue
            raise _unreadable_catalog(properties["uri"], exc) from exc
        except DatabaseError as exc:
            raise _unreadable_catalog(properties["uri"], exc) from exc
    raise AssertionError("unreachable")


def _unreadable_catalog(uri: str, exc: Exception) -> CatalogError:
    detail = " ".join(str(getattr(exc, "orig", None) or exc).split("\n[SQL:")[0].split())
    return CatalogError(f"the catalog {uri} cannot be opened ({detail}): is it an Iceberg SQL catalog? Give "
                        f"another --catalog, or repair or move the file")


def ensure_namespace(catalog: Any, namespace: str) -> None:
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchNamespaceError

    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    except Exception as failure:
        # Two runs creating it at once: the slower one's insert fails (SQLite: a unique
        # constraint), and the namespace is there.
        try:
            catalog.load_namespace_properties(namespace)
        except NoSuchNamespaceError:
            raise failure from None


def load_table(catalog: Any, namespace: str, name: str) -> Any | None:
    """The table, or None if the catalog has no such table."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        return catalog.load_table((namespace, name))
    except (NoSuchTableError, NoSuchNamespaceError):
        return None
    except FileNotFoundError as exc:
        # The catalog's pointer outlived its metadata file (deleted by hand, by a lifecycle rule, by
        # a sweep that raced a commit): every command on the table would fail on it.
        detail = " ".join(str(exc).split())
        raise CatalogError(f"table {namespace}.{name}: the metadata file the catalog points to is missing ({detail}), "
                           f"so the table cannot be read: restore that file, or point the catalog at an earlier "
                           f"metadata file of the table (its metadata/ folder; in Glue, the table's "
                           f"previous_metadata_location parameter names the one before)") from None
    except Exception as exc:
        refusal = _glue_refusal(catalog, exc)
        if refusal is None:
            raise
        raise refusal from exc


def _glue_refusal(catalog: Any, exc: Exception) -> CatalogError | None:
    """The one line for a Glue catalog that cannot be reached or refuses the caller (wrong
    endpoint, no or bad credentials, access denied), naming its endpoint; None for anything else."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 comes with dagster-aws
        return None
    client = getattr(catalog, "glue", None)
    if client is None or not isinstance(exc, (BotoCoreError, ClientError)):
        return None
    return glue_refusal(client, exc)


def glue_refusal(client: Any, exc: Exception) -> CatalogError:
    """The one line for a Glue client's refusal or silence (``exc``: botocore's), naming its endpoint."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code')}: {error.get('Message')}"
    else:
        detail = str(exc)
    return CatalogError(f"the Glue catalog at {client.meta.endpoint_url} refused or did not answer ({detail}): "
                        f"check AWS_ENDPOINT_URL_GLUE (else AWS_ENDPOINT_URL), AWS_REGION and the credentials, or give "
                        f"another --catalog")


def list_tables(catalog: Any, namespace: str) -> list[str]:
    from pyiceberg.exceptions import NoSuchNamespaceError

    try:
        return sorted(identifier[-1] for identifier in catalog.list_tables(namespace))
    except NoSuchNamespaceError:
        return []


def list_namespaces(catalog: Any) -> list[str]:
    """Every namespace of the catalog, dotted (``a.b`` for a nested one)."""
    return sorted(".".join(namespace) for namespace in catalog.list_namespaces())


def namespaces_named_in(catalog: Any, sql: str) -> list[str]:
    """The catalog's namespaces whose name appears in ``sql`` as a word (quoted or not)."""
    import re

    return [name for name in list_namespaces(catalog)
            if re.search(r"(?<![\w$])" + re.escape(name) + r"(?![\w$])", sql, flags=re.IGNORECASE)]
