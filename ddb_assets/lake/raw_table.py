"""An export's items as they are, in one struct column ``item``: what an AWS Glue crawler makes of
a DynamoDB export (``item.customer_id.s``), so SQL written for Athena over a crawled export runs
unchanged (``ddb-assets query``, the demo's ``default.data``).

The struct keeps DynamoDB JSON's shape: one field per attribute, each a struct of its type tags
(``s``, ``n``, ``bool``, ``m``, ``l``, ...), lowercase as the crawler's (Hive) schema has them;
numbers stay text, as in the export. Two shapes have no Iceberg type and are kept as text instead,
losslessly: a map that is empty in every item (``{}``), and a value that is NULL in every item (a
list that is always empty has elements of no type). Maps and lists more than ``NESTED_LEVELS``
levels down are kept as their DynamoDB JSON text (see there). Meant for exploring: the whole export
is read into memory; the flattened lake table is for everything else.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.reader import Export

# Type tags whose value holds attributes (M) or tagged values (L), not a scalar.
_MAP, _LIST = "M", "L"
# Maps and lists nest as structs down to this level (a top-level attribute's value is level 1, a
# map's attribute or a list's element one more than the map or list); one at a deeper level is its
# DynamoDB JSON text (``{"name": {"S": "x"}}``, ``[{"N": "1"}]``: tags and number texts as in
# the export, map keys sorted), read with JSON functions. DynamoDB nests up to 32 levels, but
# pyiceberg reads a table's schema recursively, about 30 Python frames a level: 32 of them pass
# Python's recursion limit (1,000) when the table is created or loaded. 16 is the lake table's
# deepest column too (SchemaOptions.max_depth).
NESTED_LEVELS = 16


def export_items(export: Export) -> pa.StructArray:
    """Every item of ``export`` (DynamoDB JSON or Ion), verified against its manifests, as one
    struct array in DynamoDB JSON's shape (type tags as in the export: ``S``, ``N``, ...)."""
    from ddb_assets.exports.buffers import ByteArena, gunzip_into
    from ddb_assets.exports.decode import ion_to_json_lines, parse_items

    tables, known, arena = [], None, ByteArena()
    for data_file in export.files:
        raw = gunzip_into(data_file.read_verified(), arena, obj=data_file.name)
        output_format = data_file.output_format
        if output_format == "ION":
            from ddb_assets.exports.buffers import Text

            raw, output_format = Text.of(ion_to_json_lines(raw, obj=data_file.name)), "DYNAMODB_JSON"
        table, known = parse_items(raw, output_format=output_format, obj=data_file.name, known=known)
        if table.num_rows:
            tables.append(table)
    if not tables:
        return pa.array([], pa.struct([]))
    combined = pa.concat_tables(tables, promote_options="permissive")
    return pa.concat_arrays(combined.column("Item").chunks) if combined.num_rows else pa.array([], pa.struct([]))


def crawler_shape(items: pa.StructArray) -> pa.StructArray:
    """``items`` (from ``export_items``) with lowercase type tags and every type Iceberg can hold;
    maps and lists below ``NESTED_LEVELS`` as their DynamoDB JSON text."""
    return _attributes(items, 1)


def _attributes(array: pa.Array, level: int) -> pa.Array:
    """A struct whose fields are attribute names (an item, or an M value); their values are at
    nesting ``level``."""
    if array.type.num_fields == 0:
        return _as_text(array, "{}")
    children = array.flatten()
    fields = [array.type.field(i) for i in range(array.type.num_fields)]
    return pa.StructArray.from_arrays([_tagged(child, level) for child in children],
                                      names=[f.name for f in fields], mask=array.is_null())


def _tagged(array: pa.Array, level: int) -> pa.Array:
    """A struct whose fields are type tags (one attribute's value, at nesting ``level``)."""
    if not pa.types.is_struct(array.type):
        return _plain(array)
    if array.type.num_fields == 0:
        return _as_text(array, "{}")
    children = array.flatten()
    out = []
    for i, child in enumerate(children):
        tag = array.type.field(i).name
        if tag in (_MAP, _LIST) and level > NESTED_LEVELS:
            out.append(_dynamodb_json(child, tag))
        elif tag == _MAP and pa.types.is_struct(child.type):
            out.append(_attributes(child, level + 1))
        elif tag == _LIST and pa.types.is_list(child.type):
            out.append(pa.ListArray.from_arrays(child.offsets, _tagged(child.values, level + 1),
                                                mask=child.is_null()))
        else:
            out.append(_plain(child))
    return pa.StructArray.from_arrays(out, names=[array.type.field(i).name.lower() for i in range(len(children))],
                                      mask=array.is_null())


def _plain(array: pa.Array) -> pa.Array:
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_list(array.type) and pa.types.is_null(array.type.value_type):
        return array.cast(pa.list_(pa.string()))
    return array


def _dynamodb_json(values: pa.Array, tag: str) -> pa.Array:
    """M or L values (null where absent) as their DynamoDB JSON text."""
    def text(value: Any) -> str | None:
        if value is None:
            return None
        return orjson.dumps(_tags_only(value, tag), option=orjson.OPT_SORT_KEYS).decode("utf-8")

    return pa.array([text(value) for value in values.to_pylist()], pa.string())


def _tags_only(value: Any, tag: str) -> Any:
    """An M or L value as Arrow gives it to Python (every tag and attribute of the column, None
    where absent) with only what the item holds."""
    if tag == _MAP:
        return {name: _attribute(inner) for name, inner in value.items() if inner is not None}
    if tag == _LIST:
        return [_attribute(element) for element in value]
    return value


def _attribute(tags: dict[str, Any]) -> dict[str, Any]:
    """``{"S": None, "M": {...}, ...}`` -> ``{"M": {...}}`` (exactly one tag is present)."""
    return {tag: _tags_only(value, tag) for tag, value in tags.items() if value is not None}


def _as_text(array: pa.Array, text: str) -> pa.Array:
    return pc.if_else(array.is_valid(), pa.scalar(text, pa.string()), pa.scalar(None, pa.string()))


def write_raw_table(catalog: Any, identifier: tuple[str, str], location: str, export: Export) -> Any:
    """Replace the Iceberg table ``identifier`` (at ``location``) by ``export``'s items in one
    struct column ``item`` (see the module docstring); returns the pyiceberg Table.

    Raises ExportFormatError (the export does not match its manifests) before anything is written.
    """
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.catalog import ensure_namespace, load_table
    from ddb_assets.lake.commit import SUMMARY_PREFIX, TABLE_PROPERTIES, append_files
    from ddb_assets.lake.writer import FileTarget, PartitionedWriter

    items = crawler_shape(export_items(export))
    table = pa.table({"item": items})
    ensure_namespace(catalog, identifier[0])
    if load_table(catalog, *identifier) is not None:
        catalog.purge_table(identifier)  # the table is the export's copy: replaced, not evolved
    # Created and filled in one commit. Our writer writes the files: pyiceberg's would rename
    # nested fields such as "Review Text" (Avro-safe names), which readers matching nested fields
    # by name then miss.
    transaction = catalog.create_table_transaction(
        identifier, schema=table.schema, location=location,
        properties={**TABLE_PROPERTIES, f"{SUMMARY_PREFIX}raw-export": export.export_id})
    arrow_schema = schema_to_pyarrow(transaction.table_metadata.schema())
    data = resolve(location).join("data")
    writer = PartitionedWriter(data, arrow_schema, FileTarget(data=data.uri, run=f"raw-{export.export_id}"), worker=0)
    try:
        writer.write(table.cast(arrow_schema))
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    append_files(transaction, written, {f"{SUMMARY_PREFIX}export-id": export.export_id,
                                        f"{SUMMARY_PREFIX}export-arn": export.summary.export_arn,
                                        f"{SUMMARY_PREFIX}source": export.folder.uri})
    transaction.commit_transaction()
    return load_table(catalog, *identifier)
