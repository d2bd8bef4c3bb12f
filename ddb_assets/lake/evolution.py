"""Plan the table schema an export is written with: the stored schema ⊕ what the export asks for.

The policy (docs/schema_rules.md, "Schema evolution"):

- A column, once given, keeps its name, field id and meaning for the table's life.
- What the export asks for goes to the first stored column of the same attribute path and type
  descriptor that holds it: ``long`` holds integers of up to 18 digits; ``decimal(P, S)`` holds
  numbers of at most ``S`` fraction digits and ``P - S`` integer digits; exact text holds every
  number; a JSON column holds every map or list of its path.
- Otherwise a column widens where Iceberg allows it: a decimal's precision goes up, its scale never
  (pyiceberg 0.12 would accept a scale change, which corrupts reads: refused here by construction).
  ``long`` cannot become a decimal.
- Otherwise the export gets a *variant* column, appended: ``price__s`` for another descriptor,
  ``price__n_d2`` for numbers the existing ``N`` columns cannot hold (``_d<scale>``, ``_long``,
  ``_text``, ``_json``).
- Numbers are routed per value (``lake/flatten.py``): each ``N`` goes to the first ``N`` column of
  its attribute that holds it exactly, so integers keep filling ``price`` after ``price__n_d2``
  appeared. Other types go, per export, to the one column chosen here.
- An attribute that was only ever NULL has a string column: the first ``S`` values adopt it.
- Attributes the export lacks stay (null in its rows) and are reported (``vanished``).
- Nothing is ever silently cast. ``rebuild`` plans from scratch (new field ids), which a commit
  applies as a new schema replacing every data file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa

from ddb_assets.lake.partitioning import TIMESTAMP, PartitionBy, PartitionError, resolve_unit
from ddb_assets.lake.profile import NumberStats, Profile
from ddb_assets.lake.schema import (Column, Inferred, SchemaOptions, TableSchema, column_name, infer_columns,
                                    path_text, snake, unique_name, with_id)
from ddb_assets.wording import counted


class SchemaConflict(ValueError):
    """The export cannot be written into the table as it is stored (options changed, ...)."""


@dataclass
class TablePlan:
    """The schema an export's files are written with, and how it differs from the stored one."""

    schema: TableSchema
    active: frozenset[int]  # field ids that receive this export's values; the others are null
    added: list[Column] = field(default_factory=list)
    widened: list[tuple[Column, Column]] = field(default_factory=list)  # (stored, widened)
    vanished: list[str] = field(default_factory=list)  # stored attributes this export does not have
    variants: dict[str, dict[str, int]] = field(default_factory=dict)  # attribute -> descriptor -> items
    new_table: bool = False  # no stored schema was extended (a new table, or a rebuild)

    @property
    def columns(self) -> list[Column]:
        return self.schema.columns

    @property
    def arrow_schema(self) -> pa.Schema:
        return self.schema.arrow_schema

    @property
    def options(self) -> SchemaOptions:
        return self.schema.options

    def mapping(self) -> list[dict]:
        return [c.describe() for c in self.columns]

    def changes(self) -> list[str]:
        """The schema changes this plan makes to the stored table, in words."""
        if self.new_table:
            return []
        out = [f"added {c.name} ({c.type_text}) for {c.attribute} ({c.descriptor})" for c in self.added]
        out += [f"widened {old.name}: {old.type_text} -> {new.type_text}" for old, new in self.widened]
        return out


def plan_table(profile: Profile, options: SchemaOptions = SchemaOptions(), partition: PartitionBy | None = None,
               stored: TableSchema | None = None, *, rebuild: bool = False) -> TablePlan:
    """Plan the schema for an export with ``profile`` (every item's), extending ``stored`` (the
    table's schema, if the table exists) unless ``rebuild``.

    Raises SchemaConflict when the stored table was planned with other options or partitioning
    (``rebuild`` re-plans it), PartitionError when the partition attribute cannot partition.
    """
    extend = stored is not None and not rebuild
    if extend:
        assert stored is not None
        check_options(stored, options, partition)
        base = TableSchema(list(stored.columns), stored.options, stored.partition, stored.last_column_id)
    else:
        base = TableSchema([], options, partition, stored.last_column_id if stored is not None else 0)

    json_paths = frozenset((c.path, c.descriptor) for c in base.columns if c.encoding == "json")
    planner = _Planner(base)
    for inferred in infer_columns(profile, options, json_paths):
        planner.place(inferred)
    if partition is not None:
        planner.partition_source(profile, partition)
    variants = {path_text(path): dict(stats.descriptors) for path, stats in profile.nodes.items()
                if len(set(stats.descriptors) - {"NULL"}) > 1}
    schema, active = planner.schema, frozenset(planner.active)
    if stored is None:  # a new table: ids as Iceberg will number them
        schema, active = _fresh_ids(schema, active)
    seen = {path[0] for path in profile.nodes if path}
    vanished = sorted({c.path[0] for c in base.columns if c.path[0] not in seen and c.encoding != "time"}) \
        if extend else []
    added = [schema.by_id()[new] for new in _renumbered(planner.added, schema)] if schema is not planner.schema \
        else planner.added
    return TablePlan(schema, active, added, planner.widened, vanished, variants, new_table=not extend)


def check_options(stored: TableSchema, options: SchemaOptions, partition: PartitionBy | None) -> None:
    """Raise SchemaConflict unless the table was planned with ``options`` and ``partition``: known
    from the stored schema alone, so checked before an export is read (and again when planning)."""
    if stored.options != options:
        raise SchemaConflict(
            f"the table was planned with naming={stored.options.naming}, max_depth={stored.options.max_depth}, "
            f"dictionary_keys={stored.options.dictionary_keys}; this conversion asks for naming={options.naming}, "
            f"max_depth={options.max_depth}, dictionary_keys={options.dictionary_keys}. Use the table's options, "
            f"or rebuild it (--rebuild) to re-plan every column")
    if stored.partition != partition:
        raise SchemaConflict(
            f"the table is partitioned by {stored.partition.text if stored.partition else 'nothing'}; this "
            f"conversion asks for {partition.text if partition else 'no partitioning'}. Use the table's "
            f"partitioning, or rebuild it (--rebuild)")


def _fresh_ids(schema: TableSchema, active: frozenset[int]) -> tuple[TableSchema, frozenset[int]]:
    """Field ids as Iceberg assigns them to a new table (pyiceberg re-numbers a created table's
    schema so): the columns 1..n in order, then their list elements; files are written with these."""
    ids: dict[int, int] = {}
    columns = []
    next_element = len(schema.columns) + 1
    for position, column in enumerate(schema.columns, start=1):
        ids[column.field_id] = position
        element_id = None
        if column.element_id is not None:
            element_id, next_element = next_element, next_element + 1
        columns.append(with_id(column, position, element_id))
    renumbered = TableSchema(columns, schema.options, schema.partition, max([0, next_element - 1, len(columns)]))
    return renumbered, frozenset(ids[i] for i in active)


def _renumbered(added: list[Column], schema: TableSchema) -> list[int]:
    by_name = {c.name: c.field_id for c in schema.columns}
    return [by_name[c.name] for c in added]


class _Planner:
    def __init__(self, schema: TableSchema):
        self.schema = schema
        self.active: set[int] = set()
        self.added: list[Column] = []
        self.widened: list[tuple[Column, Column]] = []
        self.taken = {c.name for c in schema.columns}

    @property
    def columns(self) -> list[Column]:
        return self.schema.columns

    def place(self, inferred: Inferred) -> None:
        wanted = inferred.column
        if wanted.descriptor == "NULL" and any(c.path == wanted.path for c in self.columns):
            return  # only NULL here: nothing to hold that the path's columns do not already
        same = [i for i, c in enumerate(self.columns)
                if c.path == wanted.path and c.descriptor == wanted.descriptor and c.encoding != "time"]
        for index in same:
            held = _holds(self.columns[index], wanted, inferred.empty_list)
            if held is True:
                self._use(index, route=wanted.descriptor == "N" and wanted.encoding == "scalar")
                return
        for index in same:
            widened = _widen(self.columns[index], wanted)
            if widened is not None:
                old = self.columns[index]
                self.columns[index] = replace(old, type_=widened)
                self.widened.append((old, self.columns[index]))
                self._use(index, route=False)
                return
        if wanted.descriptor == "S" and wanted.encoding == "scalar":
            # An attribute only ever NULL so far has a string column: S values adopt it.
            for index, c in enumerate(self.columns):
                if c.path == wanted.path and c.descriptor == "NULL" and not same:
                    self.columns[index] = replace(c, descriptor="S")
                    self._use(index, route=False)
                    return
        path_taken = any(c.path == wanted.path and c.encoding != "time" for c in self.columns)
        naming = self.schema.options.naming
        if same:
            name = column_name(inferred.prefix, wanted.descriptor, naming, bare=False, tag=_tag(wanted))
        else:
            name = column_name(inferred.prefix, wanted.descriptor, naming, bare=inferred.primary and not path_taken)
        column = self._append(wanted, name)
        if wanted.descriptor == "N" and wanted.encoding == "scalar":
            self._use(len(self.columns) - 1, route=True)
        else:
            self.active.add(column.field_id)

    def _use(self, index: int, *, route: bool) -> None:
        column = self.columns[index]
        self.active.add(column.field_id)
        if route:
            # Numbers go, value by value, to the first N column of the attribute that holds them:
            # every N column before this one takes its share.
            for earlier in self.columns[:index]:
                if earlier.path == column.path and earlier.descriptor == "N" and earlier.encoding == "scalar":
                    self.active.add(earlier.field_id)

    def _append(self, column: Column, name: str) -> Column:
        name = unique_name(name, self.taken)
        self.taken.add(name)
        field_id = self.schema.last_column_id + 1
        element_id = field_id + 1 if pa.types.is_list(column.type_) else None
        self.schema.last_column_id = element_id or field_id
        placed = with_id(replace(column, numbers=None), field_id, element_id, name)
        self.columns.append(placed)
        self.added.append(placed)
        return placed

    def partition_source(self, profile: Profile, partition: PartitionBy) -> None:
        """Check the partition attribute can partition, and add its derived time column if needed."""
        path = (partition.attribute,)
        source = next((c for c in self.columns if c.path == path and c.encoding != "time"), None)
        stats = profile.nodes.get(path)
        if source is None and stats is None:
            if profile.items:
                raise PartitionError(
                    f"partition_by {partition.text}: attribute {partition.attribute!r} is in none of the "
                    f"{counted(profile.items, 'item')}; check its spelling (attribute names are case-sensitive)")
            return  # an empty export: the partitioning starts with the first export that has the attribute
        allowed = ("N", "S") if partition.derives_time else ("N", "S", "BOOL")
        if source is None or source.descriptor not in allowed or source.encoding != "scalar":
            # A flattened map has no column of its own path: name the type the items hold.
            descriptor = source.descriptor if source is not None else \
                max(stats.descriptors, key=lambda k: (stats.descriptors[k], k != "NULL"))  # type: ignore[union-attr]
            kind = {"M": "a map", "L": "a list", "SS": "a string set", "NS": "a number set", "BS": "a binary set",
                    "B": "binary", "BOOL": "a boolean", "NULL": "only ever NULL"}.get(descriptor, descriptor)
            raise PartitionError(f"partition_by {partition.text}: attribute {partition.attribute!r} is {kind} "
                                 f"({descriptor}); partition by a string or number attribute"
                                 + ("" if partition.derives_time else " or a boolean"))
        if partition.derives_time and not any(c.path == path and c.encoding == "time" for c in self.columns):
            stats = profile.nodes.get(path)
            numbers: NumberStats | None = stats.numbers if stats is not None else None
            unit = resolve_unit(partition, source.descriptor, numbers.int_digits if numbers else None)
            naming = self.schema.options.naming
            name = f"item.{partition.attribute.lower()}.ts" if naming == "glue" else f"{snake(partition.attribute)}__ts"
            derived = self._append(Column("", path, source.descriptor, "time", TIMESTAMP, unit=unit), name)
            self.active.add(derived.field_id)
        for c in self.columns:
            if c.path == path and c.encoding == "time":
                self.active.add(c.field_id)


def _holds(stored: Column, wanted: Column, empty_list: bool) -> bool:
    if stored.encoding == "json":
        return wanted.descriptor in ("M", "L")
    if stored.encoding != wanted.encoding:
        return wanted.encoding == "list" and empty_list and stored.encoding == "list"
    if wanted.encoding == "list":
        if empty_list:
            return True
        if stored.element != wanted.element:
            return False
    if _is_number(wanted):
        kind = stored.type_.value_type if pa.types.is_list(stored.type_) else stored.type_
        return number_holds(kind, wanted.numbers)
    return stored.type_ == wanted.type_


def _is_number(column: Column) -> bool:
    return (column.descriptor in ("N", "NS")) or (column.encoding == "list" and column.element == "N")


def number_holds(kind: pa.DataType, stats: NumberStats | None) -> bool:
    """Does a column of ``kind`` hold every number ``stats`` describes, exactly?"""
    if stats is None or stats.count == 0 or pa.types.is_string(kind):
        return True
    if pa.types.is_int64(kind):
        return stats.fits_int64
    if pa.types.is_decimal(kind):
        return not stats.unrepresentable and stats.scale <= kind.scale and \
            stats.int_digits <= kind.precision - kind.scale
    return False


def _widen(stored: Column, wanted: Column) -> pa.DataType | None:
    """A wider type Iceberg allows for ``stored`` that holds ``wanted``'s numbers (decimal
    precision up, same scale), or None."""
    if stored.encoding != "scalar" or wanted.encoding != "scalar" or wanted.descriptor != "N":
        return None
    stats = wanted.numbers
    if stats is None or not pa.types.is_decimal(stored.type_) or stats.unrepresentable:
        return None
    if stats.scale > stored.type_.scale or stats.int_digits + stored.type_.scale > 38:
        return None
    return pa.decimal128(stats.int_digits + stored.type_.scale, stored.type_.scale)


def _tag(column: Column) -> str:
    """What tells a same-descriptor variant apart in its name."""
    if column.encoding == "json":
        return "json"
    kind = column.type_.value_type if pa.types.is_list(column.type_) else column.type_
    number = "long" if pa.types.is_int64(kind) else f"d{kind.scale}" if pa.types.is_decimal(kind) else "text"
    if column.encoding == "list":
        return (column.element or "s").lower() + (f"_{number}" if column.element == "N" else "")
    return number if _is_number(column) else str(kind)
