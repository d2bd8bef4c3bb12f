"""Raw export items (Arrow wrapper structs) -> the plan's typed, flattened columns.

Everything common is vectorized: strings, booleans, numbers (cast straight from their exact
decimal text), sets and typed lists. Only what is rare by nature goes through Python per value:
base64 binaries, numbers in exponent form, and the JSON text of dictionary maps and mixed lists.
"""

from __future__ import annotations

import base64
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.decode import RAW_MAP
from ddb_assets.exports.plain_json import plain_json_text, plain_map, plain_value
from ddb_assets.lake.profile import Path
from ddb_assets.lake.schema import NULL_PARTITION, Column, TablePlan


class ItemColumns:
    """Navigates one file's ``Item`` struct by attribute path, caching each level."""

    def __init__(self, item: pa.StructArray):
        self._wrappers: dict[Path, pa.Array | None] = {}
        self._item = item
        self._top = dict(zip((f.name for f in item.type), item.flatten())) if len(item.type) else {}

    def wrapper(self, path: Path) -> pa.Array | None:
        """The AttributeValue structs at ``path`` (null where absent), or None if no item has it."""
        if path in self._wrappers:
            return self._wrappers[path]
        if len(path) == 1:
            found = self._top.get(path[0])
        else:
            parent = self.wrapper(path[:-1])
            found = None
            if parent is not None:
                mapping = descriptor_values(parent, "M")
                if mapping is not None and mapping.type.get_field_index(path[-1]) >= 0:
                    found = mapping.flatten()[mapping.type.get_field_index(path[-1])]
        self._wrappers[path] = found
        return found


def descriptor_values(wrapper: pa.Array, descriptor: str) -> pa.Array | None:
    index = wrapper.type.get_field_index(descriptor)
    if index < 0:
        return None
    return wrapper.flatten()[index]  # flatten() folds the wrapper's own nulls into the child


def flatten_items(item: pa.StructArray, plan: TablePlan) -> tuple[pa.Table, pa.Array | None]:
    """Returns (typed table in the plan's column order, partition value per row or None)."""
    rows = len(item)
    columns = ItemColumns(item)
    arrays = [_column(columns, column, rows) for column in plan.columns]
    table = pa.Table.from_arrays(arrays, schema=plan.arrow_schema)
    partitions = None
    if plan.partition_attribute is not None:
        partitions = partition_values(columns.wrapper((plan.partition_attribute,)), rows)
    return table, partitions


def _column(columns: ItemColumns, column: Column, rows: int) -> pa.Array:
    wrapper = columns.wrapper(column.path)
    if wrapper is None:
        return pa.nulls(rows, column.type_)
    if column.encoding == "json":
        values = descriptor_values(wrapper, column.descriptor)
        text = _json_text(values, rows) if values is not None else pa.nulls(rows, pa.string())
        carried = descriptor_values(wrapper, RAW_MAP) if column.descriptor == "M" else None
        if carried is not None:
            text = pc.coalesce(text, carried)  # lifted maps come as plain JSON text already
        return text
    values = descriptor_values(wrapper, column.descriptor)
    if values is None:
        return pa.nulls(rows, column.type_)
    if column.encoding == "scalar":
        return convert_scalar(values, column.descriptor, column.type_)
    if column.encoding == "set":
        return _rebuild_list(values, convert_scalar(values.values, column.descriptor[0], column.type_.value_type))
    # typed list: elements are AttributeValues of one scalar descriptor
    assert column.element is not None
    elements = values.values
    if pa.types.is_null(elements.type) or elements.type.get_field_index(column.element) < 0:
        element_values = pa.nulls(len(elements), column.type_.value_type)
    else:
        element_values = convert_scalar(elements.field(column.element), column.element, column.type_.value_type)
    return _rebuild_list(values, element_values)


def _rebuild_list(original: pa.ListArray, new_values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(original.offsets, new_values, mask=original.is_null())


def convert_scalar(values: pa.Array, descriptor: str, target: pa.DataType) -> pa.Array:
    if pa.types.is_null(values.type) or descriptor == "NULL":
        return pa.nulls(len(values), target)  # NULL is null, whatever JSON value carried it
    if descriptor == "N":
        return convert_numbers(values, target)
    if descriptor == "B":
        return pa.array([None if v is None else base64.b64decode(v) for v in values.to_pylist()], pa.binary())
    return values.cast(target)


def convert_numbers(strings: pa.Array, target: pa.DataType) -> pa.Array:
    """Exact text -> int64 / decimal128 / string. Never through a float."""
    if pa.types.is_string(target):
        return strings
    try:
        return pc.cast(strings, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Exponent forms such as "1E+2" (rare): Python's Decimal is exact.
        python_values = [None if v is None else Decimal(v) for v in strings.to_pylist()]
        if pa.types.is_integer(target):
            return pa.array([None if v is None else _exact_int(v) for v in python_values], target)
        return pa.array(python_values, target)  # pyarrow refuses what the decimal type cannot hold


def _exact_int(value: Decimal) -> int:
    if value != value.to_integral_value():
        raise ValueError(f"{value} is not an integer")  # int() would silently drop the fraction
    return int(value)


def partition_values(wrapper: pa.Array | None, rows: int) -> pa.Array:
    """The partition attribute's value per row as text; items without it get the null partition."""
    if wrapper is None:
        return pa.array([NULL_PARTITION] * rows, pa.string())
    result = pa.nulls(rows, pa.string())
    for descriptor in ("N", "S", "BOOL"):
        values = descriptor_values(wrapper, descriptor)
        if values is not None and not pa.types.is_null(values.type):
            text = values.cast(pa.string())
            result = pc.coalesce(result, text)
    return pc.fill_null(result, NULL_PARTITION)


# -- JSON text for dictionary maps and mixed lists --------------------------------------------


def _json_text(values: pa.Array, rows: int) -> pa.Array:
    """Each value as compact JSON: numbers exact (their DynamoDB text), binaries base64, sets arrays."""
    descriptor_is_map = pa.types.is_struct(values.type)
    out = []
    for value in values.to_pylist():
        if value is None:
            out.append(None)
        elif descriptor_is_map:
            out.append(plain_json_text(plain_map(value)))
        else:
            out.append(plain_json_text([plain_value(element) for element in value]))
    return pa.array(out, pa.string())
