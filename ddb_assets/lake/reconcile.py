"""Reconciliation: does one lake table hold exactly the items another holds?

The question incremental merging must answer yes to: a table built from a full export plus every
incremental window since equals a table converted from a fresh full export at the last window's end
(``ExportTime`` = the merged table's high-water mark). The two tables are planned independently, so
their columns may differ legitimately: the merged one keeps columns of attributes that vanished
(all null now), variant columns of types that no longer occur, and decimals widened along the way.
So rows are compared as *items*, not as column lists:

- every column is identified by what it holds (attribute path, AttributeValue descriptor,
  encoding), not by its name or field id; the derived time columns of time partitions are left out;
- a null cell is an absent attribute (as the flattening stores it);
- values are compared in a canonical text: numbers without trailing fractional zeros (so ``long``
  15, ``decimal(10,2)`` 15.00 and ``decimal(20,4)`` 15.0000 agree), binary as base64, sets sorted;
- each row's canonical cells are hashed (MD5) with its key; the two tables' (key, hash) relations
  are joined by key in DuckDB, which spills to disk, so memory does not grow with the table.

Cost: one full read of both tables (every column). Run it on demand or on a schedule, not per merge.
JSON-text columns (maps deeper than ``max_depth``, mixed lists) compare as text: both tables
write a map's keys in the order the export lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ddb_assets.lake.schema import Column, TableSchema, path_text

EXAMPLES = 10


@dataclass(frozen=True)
class Reconciliation:
    """The comparison of ``table`` with ``reference`` (both at their current snapshots).

    ``missing``: keys the reference holds and the table does not; ``extra``: the other way;
    ``different``: keys both hold with different attributes; ``duplicates``: key values held by
    more than one row of either table; ``examples``: up to 10 of each problem, as
    ``{"problem", "key"}`` with the key's attributes as text."""

    table: str
    reference: str
    key_attributes: tuple[str, ...]
    table_rows: int
    reference_rows: int
    missing: int
    extra: int
    different: int
    duplicates: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return (self.missing == self.extra == self.different == self.duplicates == 0
                and self.table_rows == self.reference_rows)

    def describe(self) -> str:
        if self.equal:
            return (f"{self.table} equals {self.reference}: {self.table_rows:,} items, every attribute of every "
                    f"key the same")
        parts = [f"{n:,} {label}" for n, label in ((self.missing, f"missing from {self.table}"),
                                                    (self.extra, f"not in {self.reference}"),
                                                    (self.different, "with different attributes"),
                                                    (self.duplicates, "held by more than one row")) if n]
        return (f"{self.table} differs from {self.reference} ({self.table_rows:,} rows against "
                f"{self.reference_rows:,}): keys " + ", ".join(parts or ["none, but the row counts differ"]))

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "reference": self.reference, "equal": self.equal,
                "key_attributes": list(self.key_attributes), "table_rows": self.table_rows,
                "reference_rows": self.reference_rows, "missing": self.missing, "extra": self.extra,
                "different": self.different, "duplicates": self.duplicates, "examples": self.examples}


def reconcile(table: Any, reference: Any, key_attributes: Sequence[str], *, work_dir: str | None = None,
              threads: int | None = None) -> Reconciliation:
    """Compare two lake tables written by ddb_assets (pyiceberg ``Table`` objects), item by item.

    ``key_attributes``: the DynamoDB table's partition key and sort key attribute names. Raises
    ValueError when either table lacks a key attribute's column or has no ddb_assets column mapping.
    ``work_dir``: where DuckDB may spill (default: its own temporary folder)."""
    import duckdb

    keys = tuple(key_attributes)
    if not keys:
        raise ValueError("reconciliation needs the table's key attributes")
    schemas = [_stored(t) for t in (table, reference)]
    identities = sorted({_identity(c) for s in schemas for c in s.columns if c.encoding != "time"})
    connection = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        if work_dir:
            connection.execute("SET temp_directory = ?", [work_dir])
        for alias, source, schema in (("a", table, schemas[0]), ("b", reference, schemas[1])):
            reader = source.scan().to_arrow_batch_reader() if source.current_snapshot() is not None else None
            connection.register(f"{alias}_rows", reader if reader is not None else schema.arrow_schema.empty_table())
            key_sql = _key_sql(schema, keys, _name(source))
            cells = [_cell_sql(schema, identity) for identity in identities]
            canonical = "concat_ws(chr(30), " + ", ".join(cells) + ")" if cells else "''"
            connection.execute(f"CREATE TEMP TABLE {alias} AS SELECT {key_sql} AS k, md5({canonical}) AS h "
                               f"FROM {alias}_rows")
            connection.unregister(f"{alias}_rows")
        (a_rows,), (b_rows,) = (connection.execute(f"SELECT count(*) FROM {t}").fetchone() for t in ("a", "b"))
        (duplicates,) = connection.execute(
            "SELECT count(*) FROM (SELECT k FROM a GROUP BY k HAVING count(*) > 1 UNION ALL "
            "SELECT k FROM b GROUP BY k HAVING count(*) > 1)").fetchone()
        compared = ("SELECT a.k AS ak, b.k AS bk, a.h AS ah, b.h AS bh FROM (SELECT DISTINCT k, h FROM a) a "
                    "FULL OUTER JOIN (SELECT DISTINCT k, h FROM b) b ON a.k = b.k")
        missing, extra, different = connection.execute(
            f"SELECT count(*) FILTER (WHERE ak IS NULL), count(*) FILTER (WHERE bk IS NULL), "
            f"count(DISTINCT ak) FILTER (WHERE ak IS NOT NULL AND bk IS NOT NULL AND ah <> bh) FROM ({compared})"
        ).fetchone()
        examples = [{"problem": problem, "key": key} for problem, key in connection.execute(
            f"SELECT * FROM (SELECT 'missing' AS problem, bk AS key FROM ({compared}) WHERE ak IS NULL "
            f"ORDER BY key LIMIT {EXAMPLES}) UNION ALL "
            f"SELECT * FROM (SELECT 'extra', ak FROM ({compared}) WHERE bk IS NULL ORDER BY ak LIMIT {EXAMPLES}) "
            f"UNION ALL SELECT * FROM (SELECT DISTINCT 'different', ak FROM ({compared}) "
            f"WHERE ak IS NOT NULL AND bk IS NOT NULL AND ah <> bh ORDER BY ak LIMIT {EXAMPLES})").fetchall()]
    finally:
        connection.close()
    return Reconciliation(table=_name(table), reference=_name(reference), key_attributes=keys,
                          table_rows=int(a_rows), reference_rows=int(b_rows), missing=int(missing),
                          extra=int(extra), different=int(different), duplicates=int(duplicates),
                          examples=sorted(examples, key=lambda e: (e["problem"], str(e["key"]))))


def _name(table: Any) -> str:
    return ".".join(table.name())


def _stored(table: Any) -> TableSchema:
    try:
        return TableSchema.from_iceberg(table.schema(), table.properties, table.metadata.last_column_id)
    except ValueError as exc:
        raise ValueError(f"{_name(table)}: {exc}") from None


Identity = tuple[str, str, str]


def _identity(column: Column) -> Identity:
    # Sets and typed lists of one path and descriptor hold the same kind of value; scalar and JSON
    # encodings of one path (a map flattened in one table, JSON text in the other) do not compare.
    return (path_text(column.path), column.descriptor, column.encoding)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cell_sql(schema: TableSchema, identity: Identity) -> str:
    """One identity's canonical cell: 'path\x1fdescriptor\x1fvalue', or NULL when the row has none."""
    columns = [c for c in schema.columns if c.encoding != "time" and _identity(c) == identity]
    if not columns:
        return "NULL"
    value = "coalesce(" + ", ".join(_value_sql(c) for c in columns) + ")" if len(columns) > 1 \
        else _value_sql(columns[0])
    label = "\x1f".join(identity[:2]).replace("'", "''") + "\x1f"
    return f"('{label}' || {value})"


def _value_sql(column: Column) -> str:
    name = _quote(column.name)
    if column.encoding in ("set", "list"):
        element = _scalar_sql("x", column.type_.value_type)
        listed = f"list_transform({name}, lambda x: {element})"
        return f"to_json(list_sort({listed}))" if column.encoding == "set" else f"to_json({listed})"
    return _scalar_sql(name, column.type_)


def _scalar_sql(expression: str, kind: Any) -> str:
    import pyarrow as pa

    if pa.types.is_decimal(kind):
        # 15.00 and 15 are one DynamoDB number: drop trailing fractional zeros, then a bare point.
        # DuckDB prints a decimal without integer digits (decimal(2, 2)) as '.25': a 0 goes first.
        text = f"regexp_replace(CAST({expression} AS VARCHAR), '^(-?)\\.', '\\10.')"
        text = f"regexp_replace({text}, '^-(0(\\.0*)?)$', '\\1')"  # -0.00 is 0
        return f"regexp_replace(regexp_replace({text}, '(\\.[0-9]*?)0+$', '\\1'), '\\.$', '')"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return f"base64({expression})"
    return f"CAST({expression} AS VARCHAR)"


def _key_sql(schema: TableSchema, keys: tuple[str, ...], table: str) -> str:
    parts = []
    for attribute in keys:
        found = [c for c in schema.columns if c.path == (attribute,) and c.encoding == "scalar"]
        if not found:
            raise ValueError(f"{table} has no column for the key attribute {attribute!r}")
        values = [_scalar_sql(_quote(c.name), c.type_) for c in found]
        parts.append(values[0] if len(values) == 1 else "coalesce(" + ", ".join(values) + ")")
    # The key as text users can read in the examples: 'pk=a, sk=3'.
    return " || ', ' || ".join(f"'{a.replace(chr(39), chr(39) * 2)}=' || coalesce({p}, 'null')"
                               for a, p in zip(keys, parts))
