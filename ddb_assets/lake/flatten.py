"""Raw export items (Arrow AttributeValue structs) -> the plan's typed, flattened columns.

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
from ddb_assets.exports.numbers import EXACT
from ddb_assets.exports.plain_json import plain_json_text, plain_map, plain_value
from ddb_assets.lake.evolution import TablePlan
import re

from ddb_assets.lake.partitioning import (NULL_PARTITION, PartitionBy, partition_name, to_timestamps,
                                          transform_values)
from ddb_assets.lake.profile import Path
from ddb_assets.lake.schema import Column

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_NUMBER_PARTS = r"^[+-]?0*(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*?)0*)?$"


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


def flatten_items(item: pa.StructArray, plan: TablePlan) -> pa.Table:
    """The items as a table of the plan's columns (its Arrow schema, field ids included)."""
    rows = len(item)
    columns = ItemColumns(item)
    schema = plan.arrow_schema
    routed = _route_numbers(columns, plan, rows)
    arrays = []
    for column, field in zip(plan.columns, schema):
        if column.field_id not in plan.active:
            arrays.append(pa.nulls(rows, field.type))
        elif column.field_id in routed:
            arrays.append(routed[column.field_id])
        else:
            try:
                arrays.append(_column(columns, column, field.type, rows))
            except (pa.ArrowException, ValueError, OverflowError) as exc:
                # Named here, where the column is known: Arrow's own message names no column.
                raise ColumnMisfit(f"values of {column.source} do not fit column {column.name} "
                                   f"({column.type_text}): {_first_line(exc)}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


class ColumnMisfit(ValueError):
    """Values of an attribute that the column planned for them cannot hold exactly (a fraction
    meeting a ``long`` column, a decimal needing more scale): the plan was made for other items."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _column(columns: ItemColumns, column: Column, kind: pa.DataType, rows: int) -> pa.Array:
    wrapper = columns.wrapper(column.path)
    if wrapper is None:
        return pa.nulls(rows, kind)
    if column.encoding == "json":
        values = descriptor_values(wrapper, column.descriptor)
        text = _json_text(values) if values is not None else pa.nulls(rows, pa.string())
        carried = descriptor_values(wrapper, RAW_MAP) if column.descriptor == "M" else None
        if carried is not None:
            text = pc.coalesce(text, carried)  # lifted maps come as plain JSON text already
        return text
    values = descriptor_values(wrapper, column.descriptor)
    if values is None:
        return pa.nulls(rows, kind)
    if column.encoding == "time":
        return to_timestamps(_epoch_numbers(values) if column.descriptor == "N" else values, column.unit or "")
    if column.encoding == "scalar":
        return convert_scalar(values, column.descriptor, kind)
    if column.encoding == "set":
        return _rebuild_list(values, convert_scalar(values.values, column.descriptor[0], kind.value_type), kind)
    # typed list: elements are AttributeValues of one scalar descriptor
    assert column.element is not None
    elements = values.values
    if pa.types.is_null(elements.type) or elements.type.get_field_index(column.element) < 0:
        element_values = pa.nulls(len(elements), kind.value_type)
    else:
        element_values = convert_scalar(elements.field(column.element), column.element, kind.value_type)
    return _rebuild_list(values, element_values, kind)


def _epoch_numbers(strings: pa.Array) -> pa.Array:
    try:
        return pc.cast(strings, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return strings  # fractions or exponent forms: read exactly, value by value


def _rebuild_list(original: pa.ListArray, new_values: pa.Array, kind: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(original.offsets, new_values, type=kind, mask=original.is_null())


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


# -- numbers routed value by value ------------------------------------------------------------------


def _route_numbers(columns: ItemColumns, plan: TablePlan, rows: int) -> dict[int, pa.Array]:
    """Attributes with several active N columns: each value goes to the first column (in table
    order) that holds it exactly (docs/schema_rules.md, "Schema evolution")."""
    groups: dict[Path, list[tuple[Column, pa.DataType]]] = {}
    for column, field in zip(plan.columns, plan.arrow_schema):
        if column.field_id in plan.active and column.descriptor == "N" and column.encoding == "scalar":
            groups.setdefault(column.path, []).append((column, field.type))
    out: dict[int, pa.Array] = {}
    for path, targets in groups.items():
        if len(targets) < 2:
            continue
        wrapper = columns.wrapper(path)
        strings = descriptor_values(wrapper, "N") if wrapper is not None else None
        if strings is None or pa.types.is_null(strings.type):
            for column, kind in targets:
                out[column.field_id] = pa.nulls(rows, kind)
            continue
        int_digits, scale = _number_shapes(strings)
        left = pc.is_valid(strings)
        for column, kind in targets:
            if pa.types.is_string(kind):
                fits = left
            elif pa.types.is_int64(kind):
                fits = pc.and_(left, pc.and_(pc.equal(scale, 0), pc.less_equal(int_digits, 18)))
            else:
                fits = pc.and_(left, pc.and_(pc.less_equal(scale, kind.scale),
                                             pc.less_equal(int_digits, kind.precision - kind.scale)))
            fits = pc.fill_null(fits, False)
            out[column.field_id] = convert_numbers(pc.if_else(fits, strings, pa.nulls(rows, pa.string())), kind)
            left = pc.and_(left, pc.invert(fits))
        if pc.any(left).as_py():
            raise ValueError(f"a number of {path[0]!r} fits none of its columns")  # the plan guarantees one does
    return out


def _number_shapes(strings: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Integer digits and fraction digits (trailing zeros ignored) of each number text; exponent
    forms (rare) through Python's exact Decimal; a value no decimal128 holds counts 99 digits."""
    plain = pc.fill_null(pc.match_substring_regex(strings, _NUMBER_PARTS), False)
    if pc.all(pc.or_(plain, pc.is_null(strings))).as_py():
        parts = pc.extract_regex(strings, _NUMBER_PARTS)
        return (pc.fill_null(pc.utf8_length(parts.field("int")), 0),
                pc.fill_null(pc.utf8_length(parts.field("frac")), 0))
    int_digits, scale = [], []
    for text in strings.to_pylist():
        if text is None:
            int_digits.append(0)
            scale.append(0)
            continue
        value = Decimal(text)
        _, digits, exponent = value.normalize(EXACT).as_tuple()
        assert isinstance(exponent, int)
        whole, fraction = (0, 0) if value.is_zero() else (max(0, len(digits) + exponent), max(0, -exponent))
        int_digits.append(whole if whole + fraction <= 38 else 99)
        scale.append(fraction if whole + fraction <= 38 else 99)
    return pa.array(int_digits, pa.int32()), pa.array(scale, pa.int32())


# -- JSON text for dictionary maps and mixed lists --------------------------------------------


def _json_text(values: pa.Array) -> pa.Array:
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


# -- partition names, from the raw attribute -----------------------------------------------------


def partition_names(columns: ItemColumns, partition: PartitionBy, rows: int) -> set[str]:
    """The partition names (``lake/partitioning.py``) these items fall in, from the partition
    attribute as read: what the Dagster partition set lists before anything is written. Items
    without a string, number or boolean value there fall in the null partition."""
    wrapper = columns.wrapper((partition.attribute,))
    if wrapper is None:
        return {NULL_PARTITION} if rows else set()
    names: set[str] = set()
    found = pa.nulls(rows, pa.bool_())
    for descriptor in ("N", "S", "BOOL"):
        values = descriptor_values(wrapper, descriptor)
        if values is None or pa.types.is_null(values.type):
            continue
        found = pc.coalesce(found, pc.is_valid(values))
        present = values.drop_null()
        if not len(present):
            continue
        if partition.derives_time:
            if descriptor == "BOOL":
                names.add(NULL_PARTITION)
                continue
            unit = partition.unit
            if unit == "auto":
                unit = "iso8601" if descriptor == "S" else \
                    "epoch_seconds" if pc.max(pc.utf8_length(present)).as_py() <= 11 else "epoch_millis"
            stamps = to_timestamps(_epoch_numbers(present) if descriptor == "N" else present, unit)
            keys = transform_values(partition, stamps)
            names.update(partition_name(partition, key) for key in pc.unique(keys).to_pylist())
            continue
        distinct = pc.unique(present)
        if descriptor == "N":  # as the column will hold them: integers as integers
            numbers = distinct.to_pylist()
            distinct = pa.array([int(v) for v in numbers]) if all(_INTEGER.fullmatch(v) for v in numbers) \
                else distinct
        if partition.transform == "bucket":
            distinct = transform_values(partition, distinct)
        names.update(partition_name(partition, v) for v in distinct.to_pylist())
    if pc.any(pc.invert(pc.fill_null(found, False))).as_py():
        names.add(NULL_PARTITION)
    return names
