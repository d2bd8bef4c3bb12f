"""A full export holds each primary key once: checked on the files a conversion wrote, before the commit.

A DynamoDB table holds one item per key, and a full export is a consistent copy of it: two items
with one key mean a damaged or hand-assembled export, and a table built from it would answer
``SELECT ... WHERE pk = ...`` with two rows. The check needs the table's key attributes (the
settings' ``key_attributes``, ``convert --key``); without them it does not run.

It reads only the key columns of the files written (Parquet: a small fraction of their bytes; their
sizes are the writer's, so S3 is not asked for them, a HEAD per file) and groups them. On one
machine (the ``local`` runner) DuckDB groups them, spilling to disk beyond its memory limit, so it
holds for any export size: measured on 300,000 items (21 files), about 0.4 s, 2% of their 20 s
conversion, but about 21 minutes per TB of JSON, all keys through one machine.
The Spark runners (spark, glue, emr_serverless) pass a ``find`` that groups them on the engine's
executors instead (lake/shards/key_round.py): same check, same error.

The grouping sees Parquet rows, not the export's lines. When it finds a key twice, this process
(the driver, on every runner) reads the export again to name the data files and lines of the first
two items holding it (exports/key_lines.py: a substring search of each decompressed piece, only
matching lines parsed, stopping at the second): a cost of the failure path only, never of a
conversion that succeeds. When that search fails (storage unreachable, say) or finds fewer than
two, the error says what it says without them: the duplicate is the news, never a second error.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.key_lines import KeyValue, lines_holding_key
from ddb_assets.exports.reader import Export
from ddb_assets.exports.storage import S3Options, resolver
from ddb_assets.lake.evolution import TablePlan
from ddb_assets.lake.schema import Column
from ddb_assets.lake.writer import WrittenFile


class DuplicateKey(ExportFormatError):
    """A full export holds two or more items with one primary key."""


# (the written files' URIs, their key columns) -> (the values of a key held more than once, in
# the columns' order, and how many items hold it), or None when each key is there once.
DuplicateFinder = Callable[[list[str], list[str]], "tuple[list[Any], int] | None"]


def key_columns(plan: TablePlan, key_attributes: Sequence[str]) -> list[str]:
    """The plan's column of each key attribute (its bare value column, not a derived time column).
    A key attribute with no column is one no item held: the read refuses that before."""
    return [column.name for column in _key_columns(plan, key_attributes)]


def _key_columns(plan: TablePlan, key_attributes: Sequence[str]) -> list[Column]:
    columns = []
    for attribute in key_attributes:
        match = [c for c in plan.columns if c.path == (attribute,) and c.encoding == "scalar"]
        if not match:
            raise ValueError(f"the key attribute {attribute!r} has no column in the table")
        columns.append(match[0])
    return columns


class MixedKeyTypes(ExportFormatError):
    """A key attribute holds values of two types (S and N, say) in one export."""


def check_key_types(plan: TablePlan, key_attributes: Sequence[str], *, export: str) -> None:
    """Raise MixedKeyTypes when this export fills two columns (variants) for one key attribute: a
    DynamoDB table declares each key attribute's type once, so such an export is damaged or assembled."""
    for attribute in key_attributes:
        filled = sorted(c.descriptor for c in plan.columns
                        if c.path == (attribute,) and c.encoding == "scalar" and c.field_id in plan.active)
        if len(filled) > 1:
            raise MixedKeyTypes(export, f"the key attribute {attribute!r} holds values of types {', '.join(filled)}; "
                                        f"a DynamoDB table declares one type per key attribute (a damaged or "
                                        f"assembled export?)")


def check_unique_keys(written: list[WrittenFile], plan: TablePlan, key_attributes: Sequence[str], *,
                      export: Export, s3: S3Options | None = None, work_dir: str | None = None,
                      find: DuplicateFinder | None = None) -> None:
    """Raise DuplicateKey when two rows of ``written`` share a primary key: one line naming the
    ``export`` (its folder), the key's attributes and values, how many items hold it and, when
    the export can be read again, the data files and 1-based lines of the first two of them.
    ``find`` groups the keys (an engine's, lake/shards/key_round.py); by default DuckDB here,
    spilling to ``work_dir``."""
    if not key_attributes or not written:
        return
    name = export.folder.uri
    check_key_types(plan, key_attributes, export=name)
    columns = _key_columns(plan, key_attributes)
    names = [column.name for column in columns]
    if find is None:
        found = duplicate_in_duckdb([f.path for f in written], names, s3=s3, work_dir=work_dir,
                                    sizes=[f.bytes for f in written])
    else:
        found = find([f.path for f in written], names)
    if found is None:
        return
    values, count = found
    key = ", ".join(f"{attribute}={_shown(value)}" for attribute, value in zip(key_attributes, values))
    where = _where(export, [KeyValue(attribute, column.descriptor, value)
                            for attribute, column, value in zip(key_attributes, columns, values)], count)
    raise DuplicateKey(name, f"{count} items have the primary key {key}{where}; a DynamoDB table holds one "
                             f"item per key (a damaged or assembled export?)")


def _where(export: Export, key: list[KeyValue], count: int) -> str:
    """``: FILE line N and FILE line M`` for the first two items holding ``key`` (``, ... and K
    more`` past two), or nothing when they cannot be found."""
    try:
        # Reads the export again: the failure path only (see the module's docstring).
        found = lines_holding_key(export.files, key, wanted=2)
    except Exception:  # noqa: BLE001 - the duplicate is the error to report, not the search's trouble
        return ""
    if len(found) < 2:
        return ""
    first, second = (f"{name} line {line}" for name, line in found)
    return f": {first} and {second}" if count == 2 else f": {first}, {second} and {count - 2} more"


def duplicate_in_duckdb(files: list[str], columns: list[str], *, s3: S3Options | None = None,
                        work_dir: str | None = None,
                        sizes: Sequence[int | None] | None = None) -> tuple[list[Any], int] | None:
    """A DuplicateFinder on this machine: the key ``columns`` of ``files`` (Parquet URIs) grouped
    in DuckDB (spilling to ``work_dir``). ``sizes``: each file's bytes, when known (the writer's),
    so that no request asks S3 for them."""
    import duckdb
    import pyarrow.dataset as ds

    # One filesystem for all files, and fragments made with their sizes: a dataset of bare paths
    # sends S3 a HEAD per file for its size before reading it (16k files, 16k requests).
    locate = resolver(s3)
    parquet = ds.ParquetFileFormat()
    fragments = []
    for uri, size in zip(files, sizes if sizes is not None else [None] * len(files)):
        location = locate(uri)
        fragments.append(parquet.make_fragment(location.path, location.fs, file_size=size or None))
    dataset = ds.FileSystemDataset(fragments, fragments[0].physical_schema, parquet, fragments[0].filesystem)
    connection = duckdb.connect()
    try:
        if work_dir:
            connection.execute("SET temp_directory = ?", [work_dir])
        connection.register("written_keys", dataset.scanner(columns=columns).to_reader())
        quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        found = connection.execute(f"SELECT {quoted}, count(*) FROM written_keys GROUP BY ALL "
                                   f"HAVING count(*) > 1 LIMIT 1").fetchone()
    finally:
        connection.close()
    if found is None:
        return None
    *values, count = found
    return list(values), int(count)


def _shown(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        import base64

        return repr(base64.b64encode(value).decode("ascii"))
    return repr(value) if isinstance(value, str) else str(value)


__all__ = ["DuplicateFinder", "DuplicateKey", "MixedKeyTypes", "check_key_types", "check_unique_keys",
           "duplicate_in_duckdb", "key_columns"]
