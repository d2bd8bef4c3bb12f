"""DuckDB over the lake: every Iceberg table of the catalog becomes a view over one snapshot.

The snapshot's data files come from pyiceberg's scan plan (never from listing folders), so a query
sees exactly one committed snapshot; no DuckDB extension is needed (none can be downloaded on many
locked-down machines). Local files are read with ``read_parquet`` by Iceberg field id; ``s3://``
files through pyarrow's S3 filesystem. Filters on the partition column prune row groups by the
files' statistics.

A snapshot with position-delete files (merge-on-read merges, lake/merge.py) reads its data files
with each row's file name and row number and leaves out the (file_path, pos) pairs the delete files
list (an anti join); a snapshot without any reads exactly as before. On ``s3://`` a snapshot with
deletes is read by pyiceberg (which applies them) into memory: compact such tables
(``ddb-assets maintain``) before querying them at scale.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from ddb_assets.exports.reader import Export
from ddb_assets.lake.tables import SnapshotView, snapshot_view
from ddb_assets.query.result import QueryResult, quote_identifier, quote_literal


EMPTY_COLUMN = "_no_columns_yet"


class EmptyStatement(ValueError):
    """The SQL holds no statement: empty, blanks, only ``;`` or only comments."""


class UnreadableTable(OSError):
    """A lake table whose snapshot cannot be read (a data file it lists is missing); the message
    says which file."""


class NameCollision(ValueError):
    """Two names DuckDB does not tell apart (it ignores ASCII case): attributes of a raw export
    that differ only in case, or a view name already taken. The message names both."""


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def duckdb_folded(name: str) -> str:
    """``name`` as DuckDB compares identifiers and struct fields: ASCII letters in lowercase
    (``Name`` = ``name``; ``É`` and ``é`` stay distinct)."""
    return name.translate(_ASCII_LOWER)


def case_collisions(kind: pa.DataType, path: str) -> list[tuple[str, str]]:
    """Struct fields, at any depth of ``kind`` (lists and maps included), whose names DuckDB would
    not tell apart: ``[(path.Name, path.name), ...]``, each pair once."""
    found: list[tuple[str, str]] = []
    if pa.types.is_struct(kind):
        seen: dict[str, str] = {}
        for child in kind:
            folded = duckdb_folded(child.name)
            if folded in seen:
                found.append((f"{path}.{seen[folded]}", f"{path}.{child.name}"))
            else:
                seen[folded] = child.name
            found += case_collisions(child.type, f"{path}.{child.name}")
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        found += case_collisions(kind.value_type, f"{path}[]")
    elif pa.types.is_map(kind):
        found += case_collisions(kind.item_type, f"{path}[]")
    return found


class DuckDBEngine:
    """DuckDB over lake tables: each registered Iceberg table is a view over its snapshot's data
    files, resolved again before every query (a commit in between is seen, never a deleted file)."""

    def __init__(self, database: str = ":memory:"):
        self.connection = duckdb.connect(database)
        self.tables: dict[str, SnapshotView] = {}
        self.errors: dict[str, str] = {}  # tables that could not be registered, and why
        self.left_out: dict[str, str] = {}  # tables with no snapshot at the time asked for (as_of), and why
        self._sources: dict[str, tuple[Any, str | None, str | None]] = {}  # name -> (table, schema, as_of)
        self._claimed: dict[tuple[str, str], tuple[str, str]] = {}  # (schema, folded name) -> (name, what)

    def table_reference(self, name: str) -> str:
        return quote_identifier(name)

    def _claim(self, name: str, schema: str | None, what: str) -> None:
        """Reserve the view name ``name`` for a lake table or a raw export (``what``): DuckDB
        ignores case in names, so ``Reviews`` would silently replace the view ``reviews``."""
        key = (schema or "main", duckdb_folded(name))
        owner = self._claimed.setdefault(key, (name, what))
        if owner != (name, what):
            raise NameCollision(f"{name!r} names the {owner[1]} {owner[0]!r} already (DuckDB names ignore case): "
                                f"give the {what} another name")

    def _view_name(self, name: str, schema: str | None) -> str:
        if schema and schema != "main":
            self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            return f"{quote_identifier(schema)}.{quote_identifier(name)}"
        return quote_identifier(name)

    def register_raw_export(self, name: str, export: Export, schema: str | None = None) -> int:
        """The export itself as a table with one struct column ``item`` (DynamoDB JSON shape:
        ``item.customer_id.s``), like Athena over a crawled export. Reads the whole export into
        memory: meant for exploring, the lake table is for everything else.

        Raises NameCollision when attribute names differ only in case (``Name``, ``name``) at
        any level: DuckDB could not tell them apart. Returns the number of items."""
        from ddb_assets.lake.raw_table import crawler_shape, export_items

        export.require_full_export("registering it as a raw table")
        self._claim(name, schema, "raw export")
        # The same shape as the demo's Iceberg table default.data: one query runs on either.
        combined = pa.table({"item": crawler_shape(export_items(export))})
        collisions = case_collisions(combined.schema.field("item").type, "item")
        if collisions:
            # DuckDB's struct fields ignore case: item.name would read one attribute and hide the
            # other (item.* even repeats the first). Refused, as Athena refuses such JSON.
            pairs = "; ".join(f"{a} and {b}" for a, b in collisions)
            raise NameCollision(f"the export's items have attributes whose names differ only in case ({pairs}), "
                                f"which DuckDB's struct fields do not tell apart; query the converted lake table, "
                                f"where each is a column of its own")
        hidden = f"__raw_{schema or 'main'}_{name}"
        self.connection.register(hidden, combined)
        self.connection.execute(f"CREATE OR REPLACE VIEW {self._view_name(name, schema)} AS "
                                f"SELECT * FROM {quote_identifier(hidden)}")
        return combined.num_rows

    def register_table(self, name: str, table: Any, schema: str | None = None, as_of: str | None = None) -> SnapshotView:
        """``table`` (a pyiceberg Table) as the view ``name``: the current snapshot, re-resolved
        before each query, or the snapshot at ``as_of`` (a snapshot id or ISO-8601 time), fixed."""
        self._claim(name, schema, "lake table")
        view = snapshot_view(table, as_of)
        self._create_view(name, view, schema, table)
        self._sources[name] = (table, schema, as_of)
        self.tables[name] = view
        return view

    def register_catalog(self, catalog: Any, namespace: str, only: str | None = None, schema: str | None = None,
                         as_of: str | None = None) -> dict[str, SnapshotView]:
        """Every table of ``namespace`` (or just ``only``). A table that cannot be read is left out
        and its reason kept in ``errors``, and one that had no snapshot at ``as_of`` (created
        later, or its snapshot of then expired since) in ``left_out``: neither stops the others
        from being queried. With ``only``, that table is the one asked for: its absence is an error
        (LookupError)."""
        from ddb_assets.lake.catalog import list_tables, load_table
        from ddb_assets.lake.tables import NoSnapshotYet, SnapshotsExpired

        names = [only] if only is not None else list_tables(catalog, namespace)
        for name in names:
            try:
                table = load_table(catalog, namespace, name)
                if table is None:
                    raise LookupError(f"no table {name!r} in the catalog")
                self.register_table(name, table, schema=schema, as_of=as_of)
            except (NoSnapshotYet, SnapshotsExpired) as exc:
                if only is not None or as_of is None:
                    raise
                self.left_out[name] = str(exc)
            except LookupError:
                raise
            except Exception as exc:  # noqa: BLE001 - one unreadable table must not hide the others
                self.errors[name] = unreadable_reason(exc)
        return {n: self.tables[n] for n in names if n in self.tables}

    def refresh(self) -> None:
        """Point every view that follows its table's current snapshot at the snapshot current now."""
        for name, (table, schema, as_of) in list(self._sources.items()):
            if as_of is not None:
                continue
            table.refresh()
            snapshot = table.current_snapshot()
            if (snapshot.snapshot_id if snapshot else None) != self.tables[name].snapshot_id:
                self.register_table(name, table, schema=schema)

    def _create_view(self, name: str, view: SnapshotView, schema: str | None, table: Any) -> None:
        target = self._view_name(name, schema)
        hidden = f"__lake_{schema or 'main'}_{name}"
        if not view.fields:
            # A table whose only export was empty has no columns yet; SQL has no zero-column
            # relation, so it reads as no rows of one placeholder column.
            self.connection.execute(f"CREATE OR REPLACE VIEW {target} AS SELECT NULL::VARCHAR AS {EMPTY_COLUMN} "
                                    f"WHERE false")
        elif not view.files:
            self.connection.register(hidden, view.arrow_schema.empty_table())
            self.connection.execute(f"CREATE OR REPLACE VIEW {target} AS SELECT * FROM {quote_identifier(hidden)}")
        elif all(not path.startswith("s3://") for path in [*view.files, *view.deletes]):
            _require_local_files(view)
            self.connection.execute(f"CREATE OR REPLACE VIEW {target} AS {_local_select(view)}")
        elif view.deletes:
            rows = table.scan(snapshot_id=view.snapshot_id).to_arrow()  # pyiceberg applies the deletes
            self.connection.register(hidden, rows)
            self.connection.execute(f"CREATE OR REPLACE VIEW {target} AS SELECT * FROM {quote_identifier(hidden)}")
        else:
            from ddb_assets.exports.storage import resolve

            first = resolve(view.files[0])
            dataset = ds.dataset([p[len("s3://"):] for p in view.files], filesystem=first.fs, format="parquet",
                                 schema=view.arrow_schema)
            self.connection.register(hidden, dataset)
            self.connection.execute(f"CREATE OR REPLACE VIEW {target} AS SELECT * FROM {quote_identifier(hidden)}")

    def query(self, sql: str, parameters: list[Any] | None = None, measure: bool = False) -> QueryResult:
        """Run SQL; with ``measure`` also report the bytes DuckDB read (its JSON profile's I/O).

        Raises EmptyStatement when ``sql`` holds no statement, duckdb.Error when DuckDB refuses it."""
        self.refresh()
        if measure:
            return self._measured(sql, parameters)
        if parameters:
            relation = self.connection.sql(sql, params=parameters)
        else:
            relation = self.connection.sql(sql)
        if relation is None:
            # DuckDB returns no relation for SQL without a statement (and used to for statements
            # that return no rows): the first is the user's mistake, the second an empty result.
            if not self.connection.extract_statements(sql):
                raise EmptyStatement("the SQL holds no statement (it is empty, blank, only ';' or only comments)")
            return QueryResult(pa.table({}))
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


def failure_hint(message: str, sql: str) -> str:
    """What to add after the first line of DuckDB's error ``message`` for ``sql`` when its cause is
    not in it, as `` (...)``; "" for other errors. DuckDB sums decimal(38, s) columns (DynamoDB
    numbers that need 38 digits) in 128-bit integers: a sum past 38 digits fails with "Overflow in
    HUGEINT addition", whereas a sum in DOUBLE succeeds, approximately."""
    if "Overflow in HUGEINT addition" not in message:
        return ""
    calls = {(m.group(1).lower(), m.group(2).strip())
             for m in re.finditer(r"\b(sum|avg)\s*\(\s*([^()]+?)\s*\)", sql, re.IGNORECASE)}
    function, column = calls.pop() if len(calls) == 1 else ("sum", "the column")
    return (f" (a sum of decimal(38,s) values overflowed 38 digits: {function}(CAST({column} AS DOUBLE)) "
            f"{'sums' if function == 'sum' else 'averages'} approximately)")


def unreadable_reason(exc: BaseException) -> str:
    """Why a table could not be registered, in one line: our own message as it is, another
    error's type and first line (DuckDB's next lines quote the SQL of the view)."""
    if isinstance(exc, UnreadableTable):
        return str(exc)
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def named_tables(sql: str, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that ``sql`` names as a word (quoted or not; DuckDB ignores ASCII case)."""
    folded = duckdb_folded(sql)
    return [name for name in names
            if re.search(r"(?<![\w$])" + re.escape(duckdb_folded(name)) + r"(?![\w$])", folded)]


def _require_local_files(view: SnapshotView) -> None:
    """Raise UnreadableTable naming the first local data or delete file of ``view`` that is gone
    (DuckDB would report it inside the view's SQL)."""
    missing = [path for path in [*view.files, *view.deletes] if not os.path.isfile(_local_path(path))]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UnreadableTable(f"snapshot {view.snapshot_id} lists data file {_local_path(missing[0])}, which is "
                              f"missing{more}")


def _local_select(view: SnapshotView) -> str:
    """The SELECT over a snapshot's local data files, less the rows its delete files list."""
    paths = "[" + ", ".join(quote_literal(_local_path(p)) for p in view.files) + "]"
    # Columns by Iceberg field id, as Iceberg readers must: older files lack newer columns (null),
    # and a widened decimal reads as its current type.
    def columns(name: Any) -> str:
        return ", ".join(f"{field_id}: {{name: {quote_literal(name(field_id, column))}, "
                         f"type: {quote_literal(duckdb_type(kind))}, default_value: NULL}}"
                         for field_id, column, kind in view.fields)

    if not view.deletes:
        return f"SELECT * FROM read_parquet({paths}, schema = MAP {{{columns(lambda _, column: column)}}})"
    # Columns under their field ids first, so no column of the table can collide with the
    # filename and file_row_number columns DuckDB adds; then renamed.
    renamed = ", ".join(f"{quote_identifier(f'__{field_id}')} AS {quote_identifier(column)}"
                        for field_id, column, _ in view.fields)
    deletes = "[" + ", ".join(quote_literal(_local_path(p)) for p in view.deletes) + "]"
    return (f"SELECT {renamed} FROM read_parquet({paths}, schema = MAP {{{columns(lambda i, _: f'__{i}')}}}, "
            f"filename = true, file_row_number = true) AS rows ANTI JOIN "
            f"(SELECT regexp_replace(file_path, '^file://', '') AS file_path, pos FROM read_parquet({deletes})) "
            f"AS deleted ON rows.filename = deleted.file_path AND rows.file_row_number = deleted.pos")


def _local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def duckdb_type(kind: Any) -> str:
    """An Iceberg type as DuckDB's SQL type."""
    from pyiceberg.types import (BinaryType, BooleanType, DateType, DecimalType, DoubleType, FloatType,
                                 IntegerType, ListType, LongType, MapType, StringType, StructType, TimestampType,
                                 TimestamptzType)

    if isinstance(kind, ListType):
        return duckdb_type(kind.element_type) + "[]"
    if isinstance(kind, StructType):
        # Nested fields are matched by name inside the top-level column read by field id: the
        # lake's writer keeps the schema's names in the files (pyiceberg's own writer would not).
        return "STRUCT(" + ", ".join(f"{quote_identifier(f.name)} {duckdb_type(f.field_type)}"
                                     for f in kind.fields) + ")"
    if isinstance(kind, MapType):
        return f"MAP({duckdb_type(kind.key_type)}, {duckdb_type(kind.value_type)})"
    if isinstance(kind, DecimalType):
        return f"DECIMAL({kind.precision},{kind.scale})"
    simple = {StringType: "VARCHAR", LongType: "BIGINT", IntegerType: "INTEGER", BooleanType: "BOOLEAN",
              BinaryType: "BLOB", TimestamptzType: "TIMESTAMPTZ", TimestampType: "TIMESTAMP", DateType: "DATE",
              DoubleType: "DOUBLE", FloatType: "FLOAT"}
    for iceberg, name in simple.items():
        if isinstance(kind, iceberg):
            return name
    raise TypeError(f"no DuckDB type for Iceberg type {kind}")
