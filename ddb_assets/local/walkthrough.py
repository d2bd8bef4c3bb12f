"""The tables the AWS walkthrough's SQL names, written from an export into the local lake.

The walkthrough (a Glue crawler over the export, then a Glue job flattening it) queries two tables
in the Glue database ``default``:

- ``"default"."data"``: the export's items, one struct column ``item`` (``item.customer_id.s``);
- ``"default"."ddbs3_parquetpartitioned__output_flat_partitioned"``: the export flattened with Glue's
  Relationalize names (``"item.product_title.s"``), partitioned by year.

``write_walkthrough_tables`` makes both Iceberg tables in the lake's catalog, namespace ``default``,
so ``ddb-assets query`` runs that SQL verbatim (it maps each catalog namespace the SQL names to a
DuckDB schema). They live under ``<lake>/default/``, apart from the lake's own tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ddb_assets.exports.reader import Export, open_export
from ddb_assets.exports.storage import resolve
from ddb_assets.lake.catalog import CatalogConfig, default_sql_uri, load_table, open_catalog
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.profile import Profile
from ddb_assets.lake.raw_table import write_raw_table

NAMESPACE = "default"
RAW_TABLE = "data"
FLAT_TABLE = "ddbs3_parquetpartitioned__output_flat_partitioned"
RAW_QUERY = ('SELECT item.customer_id.s AS customer, COUNT(item.customer_id.s) AS Count FROM "default"."data" '
             'GROUP BY item.customer_id.s ORDER BY Count DESC limit 10;')
FLAT_QUERY = (f'SELECT * FROM "default"."{FLAT_TABLE}" WHERE "item.product_title.s" = \'Dune\' '
              'ORDER BY "item.year.n" asc limit 100;')


@dataclass
class WalkthroughTables:
    raw: Any  # pyiceberg Table default.data
    flat: Any  # pyiceberg Table default.ddbs3_parquetpartitioned__output_flat_partitioned


def write_walkthrough_tables(export: str | os.PathLike[str] | Export, lake_root: str,
                             known: Profile | None = None, workers: int = 1) -> WalkthroughTables:
    """Write (or replace) both walkthrough tables from ``export`` into the local lake at
    ``lake_root`` (its SQLite catalog, namespace ``default``). ``known``: the export's profile,
    for a one-pass conversion. Raises ExportFormatError (a bad export) before replacing anything."""
    source = export if isinstance(export, Export) else open_export(export)
    root = resolve(lake_root)
    config = CatalogConfig("sql", uri=default_sql_uri(root), namespace=NAMESPACE)
    catalog = open_catalog(config, root)
    raw = write_raw_table(catalog, (NAMESPACE, RAW_TABLE), root.join(NAMESPACE, RAW_TABLE).uri, source)
    # Each demo's export replaces the table outright: it is a copy of the latest export, not a
    # history (and its schema is planned afresh). Dropped and created again rather than rebuilt:
    # convert --rebuild of a partitioned table fails inside pyiceberg's overwrite today.
    if load_table(catalog, NAMESPACE, FLAT_TABLE) is not None:
        catalog.purge_table((NAMESPACE, FLAT_TABLE))
    flat = convert_export(source, root.join(NAMESPACE, FLAT_TABLE).uri,
                          ConvertOptions(naming="glue", partition_by="year", catalog=config, table_name=FLAT_TABLE,
                                         workers=workers), known=known)
    return WalkthroughTables(raw, flat.commit.table)
