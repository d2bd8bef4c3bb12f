"""DuckDB over the lake: every published table becomes a view, partition folders become columns.

Tables are registered from their ``_ddb_assets.json`` file list (never by globbing), so a query
sees exactly one published version. Local tables are read with ``read_parquet`` and
``hive_partitioning`` (partition filters prune files); ``s3://`` tables through pyarrow's S3
filesystem, so no DuckDB extension has to be downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from ddb_assets.exports.reader import Export
from ddb_assets.exports.storage import Location
from ddb_assets.lake.publish import TableMetadata, read_metadata


def quote_identifier(name: str) -> str:
    """A DuckDB/Athena identifier in double quotes; embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class QueryResult:
    table: pa.Table
    bytes_scanned: int | None = None

    def markdown(self, limit: int = 20) -> str:
        rows = self.table.slice(0, limit).to_pylist()
        names = self.table.column_names
        lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row[n]) for n in names) + " |")
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


class DuckDBEngine:
    def __init__(self, database: str = ":memory:"):
        self.connection = duckdb.connect(database)
        self.tables: dict[str, TableMetadata] = {}

    def table_reference(self, name: str) -> str:
        return quote_identifier(name)

    def _view_name(self, name: str, schema: str | None) -> str:
        if schema and schema != "main":
            self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            return f"{quote_identifier(schema)}.{quote_identifier(name)}"
        return quote_identifier(name)

    def register_raw_export(self, name: str, export: Export, schema: str | None = None) -> int:
        """The export itself as a table with one struct column ``item`` (DynamoDB JSON shape:
        ``item.customer_id.s``), like Athena over a crawled export. Reads the whole export into
        memory: meant for exploring, the Parquet table is for everything else."""
        from ddb_assets.exports.buffers import ByteArena, gunzip_into
        from ddb_assets.exports.decode import parse_items

        tables, known, arena = [], None, ByteArena()
        for data_file in export.files:
            raw = gunzip_into(data_file.read_verified(), arena, obj=data_file.name)
            table, known = parse_items(raw, output_format=data_file.output_format, obj=data_file.name, known=known)
            if table.num_rows:
                tables.append(table)
        combined = pa.concat_tables(tables, promote_options="permissive") if tables else \
            pa.table({"Item": pa.array([], pa.struct([]))})
        combined = combined.rename_columns(["item"])
        hidden = f"__raw_{schema or 'main'}_{name}"
        self.connection.register(hidden, combined)
        self.connection.execute(f"CREATE OR REPLACE VIEW {self._view_name(name, schema)} AS "
                                f"SELECT * FROM {quote_identifier(hidden)}")
        return combined.num_rows

    def register_table(self, name: str, root: Location, schema: str | None = None) -> TableMetadata:
        metadata = read_metadata(root)
        if metadata is None:
            raise LookupError(f"no published table at {root.uri} (missing _ddb_assets.json)")
        files = [root.join(path) for path in metadata.files()]
        view = self._view_name(name, schema)
        if not files:
            empty = metadata.arrow_schema.empty_table()
            self.connection.register(f"__empty_{name}", empty)
            self.connection.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {quote_identifier('__empty_' + name)}")
        elif root.scheme == "file":
            paths = "[" + ", ".join(quote_literal(f.path) for f in files) + "]"
            hive_types = ""
            if metadata.partition_column:
                kind = "BIGINT" if metadata.partition_type == "int64" else "VARCHAR"
                hive_types = f", hive_types = {{{quote_literal(metadata.partition_column)}: {kind}}}"
            self.connection.execute(
                f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet({paths}, "
                f"hive_partitioning = {'true' if metadata.partition_column else 'false'}{hive_types}, "
                f"union_by_name = true)")
        else:
            dataset = ds.dataset([f.path for f in files], filesystem=root.fs, format="parquet",
                                 partitioning=ds.partitioning(flavor="hive") if metadata.partition_column else None,
                                 partition_base_dir=root.path)
            self.connection.register(f"__ds_{name}", dataset)
            self.connection.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {quote_identifier('__ds_' + name)}")
        self.tables[name] = metadata
        return metadata

    def query(self, sql: str, parameters: list[Any] | None = None, measure: bool = False) -> QueryResult:
        """Run SQL; with ``measure`` also report the bytes DuckDB read (its JSON profile's I/O)."""
        if measure:
            return self._measured(sql, parameters)
        if parameters:
            relation = self.connection.sql(sql, params=parameters)
        else:
            relation = self.connection.sql(sql)
        # DuckDB 2 renamed arrow() (a table) to to_arrow_table(); both are in the tested range.
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        return QueryResult(fetch())

    def _measured(self, sql: str, parameters: list[Any] | None) -> QueryResult:
        import json
        import os
        import tempfile

        handle, path = tempfile.mkstemp(suffix=".json", prefix="ddb-assets-profile-")
        os.close(handle)
        try:
            self.connection.execute("PRAGMA enable_profiling = 'json'")
            self.connection.execute(f"PRAGMA profiling_output = {quote_literal(path)}")
            result = self.query(sql, parameters)
            self.connection.execute("PRAGMA disable_profiling")
            with open(path, encoding="utf-8") as profile:
                document = json.load(profile)
            scanned = (document.get("io") or {}).get("total_bytes_read")
            return QueryResult(result.table, bytes_scanned=int(scanned) if scanned is not None else None)
        except (OSError, ValueError):
            return QueryResult(result.table) if "result" in locals() else self.query(sql, parameters)
        finally:
            os.unlink(path)

    def close(self) -> None:
        self.connection.close()


def discover_tables(root: Location) -> dict[str, Location]:
    """Published tables directly under a lake root (folders holding ``_ddb_assets.json``)."""
    import pyarrow.fs as pafs

    from ddb_assets.lake.publish import METADATA_FILE

    found = {}
    try:
        entries = root.fs.get_file_info(pafs.FileSelector(root.path, allow_not_found=True))
    except OSError:
        return found
    for entry in entries:
        if entry.type == pafs.FileType.Directory:
            candidate = Location(root.fs, entry.path, root.scheme)
            if candidate.join(METADATA_FILE).exists():
                found[candidate.name] = candidate
    return dict(sorted(found.items()))


def discover_reports(root: Location) -> dict[str, Location]:
    """Report tables written under ``<root>/reports/<table>/<report>.parquet``, named ``<table>_<report>``."""
    import pyarrow.fs as pafs

    found = {}
    reports = root.join("reports")
    try:
        entries = root.fs.get_file_info(pafs.FileSelector(reports.path, recursive=True, allow_not_found=True))
    except OSError:
        return found
    for entry in entries:
        if entry.type == pafs.FileType.File and entry.path.endswith(".parquet"):
            parts = entry.path[len(reports.path) + 1:-len(".parquet")].split("/")
            # reports/<table>/<report>.parquet (DuckDB) or reports/<table>/<report>/<version>/part-*.parquet (CTAS)
            found[f"{parts[0]}_{parts[1]}"] = Location(root.fs, entry.path, root.scheme)
    return dict(sorted(found.items()))


def register_report(engine: DuckDBEngine, name: str, location: Location) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(location.path, filesystem=location.fs)
    hidden = f"__report_{name}"
    engine.connection.register(hidden, table)
    engine.connection.execute(f"CREATE OR REPLACE VIEW {quote_identifier(name)} AS SELECT * FROM {quote_identifier(hidden)}")
