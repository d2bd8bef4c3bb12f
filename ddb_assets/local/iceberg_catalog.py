"""pyiceberg's ``GlueCatalog`` pointed at a moto server: the properties, and a table written whole.

Used from outside the server (``LocalWorld.iceberg_catalog_properties``) and from inside it (the
local Athena's Iceberg CTAS): the same catalog code that runs against AWS, over HTTP, so Glue's
version checks (glue_versions.py) and moto's S3 see every request as they would from a client.
"""

from __future__ import annotations

from typing import Any

# Dummy credentials: moto accepts any, and maps these to its default account.
_KEY_ID, _SECRET = "testing", "testing"


def glue_catalog_properties(endpoint: str, region: str, warehouse: str) -> dict[str, str]:
    """Properties for ``GlueCatalog(name, **props)`` or ``load_catalog(name, **props)`` (``type``
    is included) whose Glue and S3 are the moto server at ``endpoint`` (``http://host:port``).

    ``warehouse`` is an ``s3://bucket/prefix`` URI. The S3 region is given so pyiceberg never asks
    real S3 where a bucket lives; addressing is path-style, since ``bucket.127.0.0.1`` does not
    resolve.
    """
    return {
        "type": "glue",
        "warehouse": warehouse,
        "glue.endpoint": endpoint,
        "glue.region": region,
        "glue.access-key-id": _KEY_ID,
        "glue.secret-access-key": _SECRET,
        "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
        "s3.endpoint": endpoint,
        "s3.region": region,
        "s3.access-key-id": _KEY_ID,
        "s3.secret-access-key": _SECRET,
        "s3.force-virtual-addressing": "false",
    }


def create_table_with_rows(endpoint: str, region: str, database: str, table: str, location: str,
                           rows: Any) -> str:
    """Create Iceberg table ``database.table`` at ``location`` holding ``rows`` (a ``pa.Table``), in
    one commit: the Glue table appears with its first snapshot or not at all. Returns the
    metadata location.

    Raises pyiceberg's ``TableAlreadyExistsError`` or ``NoSuchNamespaceError``; an Arrow type
    Iceberg has no counterpart for raises ``TypeError``/``ValueError`` from pyiceberg.
    """
    from pyiceberg.catalog.glue import GlueCatalog

    catalog = GlueCatalog("local-athena", **glue_catalog_properties(endpoint, region, location))
    transaction = catalog.create_table_transaction((database, table), schema=rows.schema,
                                                   location=location.rstrip("/"))
    transaction.append(rows)
    return str(transaction.commit_transaction().metadata_location)
