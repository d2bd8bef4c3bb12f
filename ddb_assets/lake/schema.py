"""The table schema: its columns, where each comes from, and how an export's items ask for them.

A lake table's schema is an Iceberg schema plus the *column mapping*: for every column (by its
Iceberg field id) the attribute path it comes from, the AttributeValue type descriptor it holds and
how it is encoded. Both are stored with the table (``TableSchema``); docs/schema_rules.md has the
rules in full. This module holds the types and the *inferred* side: what one export's profile asks
for (``infer_columns``). ``lake/evolution.py`` merges that with the stored schema.

Inferred types, from every item (no sampling):

- ``S`` string, ``BOOL`` bool, ``B`` binary, ``NULL`` null. ``N`` the narrowest exact type: long if
  every value is an integer of at most 18 digits, else decimal(p, s) when all fit 38 digits,
  else string holding the exact number text. Never a float.
- ``SS``/``NS``/``BS`` lists of the element type.
- ``M`` flattened into ``parent__child`` columns up to ``max_depth`` levels; deeper maps, and maps
  used as dictionaries (more than ``dictionary_keys`` distinct keys), stay one JSON text column.
- ``L`` a typed list when every element everywhere has the same scalar type, else JSON text.
- An attribute seen with several types: the most frequent keeps the bare name, the others get
  variant columns ``<name>__<descriptor>`` (``price`` + ``price__s``).
- Names: ``snake`` lowercases to ``[a-z0-9_]`` and makes them unique; ``glue`` reproduces AWS Glue
  Relationalize names (``item.product_title.s``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from ddb_assets.lake.partitioning import TIMESTAMP, PartitionBy
from ddb_assets.lake.profile import NodeStats, NumberStats, Path, Profile

NAMING_MODES = ("snake", "glue")
SCALARS = ("S", "N", "B", "BOOL")
DESCRIPTOR_ORDER = ("S", "N", "B", "BOOL", "M", "L", "SS", "NS", "BS", "NULL")
ENCODINGS = ("scalar", "set", "list", "json", "time")

# Table properties holding what the Iceberg schema cannot: see TableSchema.properties.
COLUMNS_PROPERTY = "ddb_assets.columns"
OPTIONS_PROPERTY = "ddb_assets.schema_options"
PARTITION_PROPERTY = "ddb_assets.partition_by"
MAPPING_FORMAT = 1


class OptionError(ValueError):
    """A conversion option out of its range: ``option`` names it (``max_depth``), the message says
    what it must be. Raised when the options are made, before anything is read."""

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option} {problem}")
        self.option, self.problem = option, problem


@dataclass(frozen=True)
class SchemaOptions:
    naming: str = "snake"
    max_depth: int = 3  # map levels flattened into columns; deeper maps become JSON text
    dictionary_keys: int = 64  # a map with more distinct keys than this is data, not schema

    def __post_init__(self) -> None:
        if self.naming not in NAMING_MODES:
            raise OptionError("naming", f"must be one of {', '.join(NAMING_MODES)}, not {self.naming!r}")
        if not 1 <= self.max_depth <= 16:
            raise OptionError("max_depth", f"must be between 1 and 16, not {self.max_depth}")
        if self.dictionary_keys < 1:
            raise OptionError("dictionary_keys", f"must be at least 1, not {self.dictionary_keys}")


@dataclass(frozen=True)
class Column:
    """One column of the table: its Iceberg field id, name and type, and what it holds.

    ``encoding``: ``scalar`` (one AttributeValue of ``descriptor``), ``set`` (SS/NS/BS as a list),
    ``list`` (an L whose elements are all ``element``), ``json`` (the value as JSON text) or
    ``time`` (a timestamp derived from the attribute, for a time partition transform; ``unit``
    says how the attribute holds it).
    """

    name: str
    path: Path  # attribute path in the item
    descriptor: str  # the AttributeValue type descriptor read at that path
    encoding: str
    type_: pa.DataType  # plain Arrow type; lists hold their values in a field named "element"
    element: str | None = None  # lists: the element descriptor
    field_id: int = 0
    element_id: int | None = None  # lists: the element's field id
    unit: str | None = None  # time: epoch_seconds | epoch_millis | iso8601
    numbers: NumberStats | None = field(default=None, compare=False)  # inferred columns: what N values need

    @property
    def attribute(self) -> str:
        return path_text(self.path)

    @property
    def type_text(self) -> str:
        """The Iceberg type, as engines and users see it (``long``, ``decimal(5, 2)``, ``list<string>``)."""
        return str(iceberg_type(self)) if self.element_id is not None or not pa.types.is_list(self.type_) \
            else f"list<{_scalar_iceberg(self.type_.value_type)}>"

    @property
    def arrow_field(self) -> pa.Field:
        kind = self.type_
        if pa.types.is_list(kind):
            element = pa.field("element", kind.value_type, nullable=True,
                               metadata={b"PARQUET:field_id": str(self.element_id).encode()})
            kind = pa.list_(element)
        return pa.field(self.name, kind, nullable=True, metadata={b"PARQUET:field_id": str(self.field_id).encode()})

    @property
    def source(self) -> str:
        """Where the column's values come from, in words: ``reviewer.name (S)``, ``tags (SS, a list)``,
        ``extras (M, JSON text)``, ``created_at (N as epoch_seconds, a timestamp)``."""
        detail = {"scalar": "", "set": ", a list", "list": f", a list of {self.element}", "json": ", JSON text",
                  "time": f" as {self.unit}, a timestamp"}.get(self.encoding, f", {self.encoding}")
        return f"{self.attribute} ({self.descriptor}{detail})"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "field_id": self.field_id, "type": self.type_text, "attribute": self.attribute,
                "path": list(self.path), "descriptor": self.descriptor, "encoding": self.encoding,
                "element": self.element, **({"unit": self.unit} if self.unit else {})}


def path_text(path: Path) -> str:
    out = ""
    for segment in path:
        out += "[]" if segment is None else (f".{segment}" if out else str(segment))
    return out


# -- the stored schema --------------------------------------------------------------------------------


@dataclass
class TableSchema:
    """A table's schema as stored: columns in order (field ids, names, types, mapping), the naming
    options it was planned with, and the partitioning."""

    columns: list[Column]
    options: SchemaOptions = field(default_factory=SchemaOptions)
    partition: PartitionBy | None = None
    last_column_id: int = 0

    @property
    def arrow_schema(self) -> pa.Schema:
        """The data files' schema, with the Iceberg field ids (``PARQUET:field_id``)."""
        return pa.schema([c.arrow_field for c in self.columns])

    def by_id(self) -> dict[int, Column]:
        return {c.field_id: c for c in self.columns}

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def partition_source(self) -> Column | None:
        """The column the partition transform reads (the attribute's first column, or its derived
        time column), or None when unpartitioned or not yet seen."""
        if self.partition is None:
            return None
        path = (self.partition.attribute,)
        if self.partition.derives_time:
            return next((c for c in self.columns if c.path == path and c.encoding == "time"), None)
        return next((c for c in self.columns if c.path == path and c.encoding != "time"), None)

    def iceberg_schema(self, schema_id: int = 0) -> Any:
        from pyiceberg.schema import Schema
        from pyiceberg.types import NestedField

        return Schema(*[NestedField(c.field_id, c.name, iceberg_type(c), required=False) for c in self.columns],
                      schema_id=schema_id)

    def properties(self) -> dict[str, str]:
        """Table properties: the column mapping by field id, the options, the partitioning."""
        mapping = [[c.field_id, list(c.path), c.descriptor, c.encoding, c.element, c.unit] for c in self.columns]
        return {COLUMNS_PROPERTY: json.dumps({"format": MAPPING_FORMAT, "columns": mapping}, separators=(",", ":"),
                                             ensure_ascii=False),
                OPTIONS_PROPERTY: json.dumps({"naming": self.options.naming, "max_depth": self.options.max_depth,
                                              "dictionary_keys": self.options.dictionary_keys}),
                PARTITION_PROPERTY: self.partition.text if self.partition else ""}

    @classmethod
    def from_iceberg(cls, schema: Any, properties: dict[str, str], last_column_id: int) -> "TableSchema":
        """The stored schema of a table made by ddb_assets; ValueError if the mapping is missing
        or does not match the Iceberg schema (a table written by something else)."""
        try:
            document = json.loads(properties[COLUMNS_PROPERTY])
            options = SchemaOptions(**json.loads(properties[OPTIONS_PROPERTY]))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"the table has no ddb_assets column mapping ({exc}); it was not written by ddb_assets")
        if document.get("format") != MAPPING_FORMAT:
            raise ValueError(f"unknown column mapping format {document.get('format')!r}")
        mapping = {entry[0]: entry for entry in document["columns"]}
        columns = []
        for nested in schema.fields:
            if nested.field_id not in mapping:
                raise ValueError(f"column {nested.name} (field id {nested.field_id}) has no ddb_assets mapping")
            _, path, descriptor, encoding, element, unit = mapping[nested.field_id]
            kind = arrow_type(nested.field_type)
            element_id = getattr(nested.field_type, "element_id", None)
            columns.append(Column(nested.name, tuple(path), descriptor, encoding, kind, element, nested.field_id,
                                  element_id, unit))
        return cls(columns, options, PartitionBy.parse(properties.get(PARTITION_PROPERTY) or None), last_column_id)


def iceberg_type(column: Column) -> Any:
    from pyiceberg.types import ListType

    if pa.types.is_list(column.type_):
        assert column.element_id is not None
        return ListType(column.element_id, _scalar_iceberg(column.type_.value_type), element_required=False)
    return _scalar_iceberg(column.type_)


def _scalar_iceberg(kind: pa.DataType) -> Any:
    from pyiceberg.types import (BinaryType, BooleanType, DecimalType, LongType, StringType, TimestamptzType)

    if pa.types.is_string(kind):
        return StringType()
    if pa.types.is_int64(kind):
        return LongType()
    if pa.types.is_decimal(kind):
        return DecimalType(kind.precision, kind.scale)
    if pa.types.is_boolean(kind):
        return BooleanType()
    if pa.types.is_binary(kind):
        return BinaryType()
    if kind == TIMESTAMP:
        return TimestamptzType()
    raise TypeError(f"no Iceberg type for {kind}")


def arrow_type(kind: Any) -> pa.DataType:
    from pyiceberg.types import (BinaryType, BooleanType, DecimalType, IntegerType, ListType, LongType,
                                 StringType, TimestamptzType)

    if isinstance(kind, ListType):
        return pa.list_(arrow_type(kind.element_type))
    if isinstance(kind, StringType):
        return pa.string()
    if isinstance(kind, (LongType, IntegerType)):
        return pa.int64()
    if isinstance(kind, DecimalType):
        return pa.decimal128(kind.precision, kind.scale)
    if isinstance(kind, BooleanType):
        return pa.bool_()
    if isinstance(kind, BinaryType):
        return pa.binary()
    if isinstance(kind, TimestamptzType):
        return TIMESTAMP
    raise TypeError(f"the table has a column of Iceberg type {kind}, which ddb_assets does not write")


# -- what one export asks for ----------------------------------------------------------------------


@dataclass(frozen=True)
class Inferred:
    """A column one export's items ask for, before names and field ids: ``prefix`` is the name
    segments of its attribute path (variant and map segments included), ``kind`` its descriptor,
    ``primary`` whether it is the attribute's most frequent type in this export."""

    prefix: tuple[str, ...]
    column: Column
    primary: bool
    empty_list: bool = False  # an L only ever empty: any list or JSON column of the path holds it


def number_type(stats: NumberStats | None) -> pa.DataType:
    if stats is None or stats.fits_int64:
        return pa.int64()
    if stats.fits_decimal128:
        return pa.decimal128(max(1, stats.int_digits + stats.scale), stats.scale)
    return pa.string()


def _scalar_type(descriptor: str, stats: NodeStats) -> pa.DataType:
    if descriptor in ("S", "SS"):
        return pa.string()
    if descriptor == "N":
        return number_type(stats.numbers)
    if descriptor == "NS":
        return number_type(stats.set_numbers)
    if descriptor in ("B", "BS"):
        return pa.binary()
    if descriptor == "BOOL":
        return pa.bool_()
    return pa.string()  # NULL only: a column of nulls (typed string, which every engine reads)


def infer_columns(profile: Profile, options: SchemaOptions,
                  json_paths: frozenset[tuple[Path, str]] = frozenset()) -> list[Inferred]:
    """The columns this export's items ask for, in deterministic order (docs/schema_rules.md,
    "Column order"). ``json_paths``: (path, descriptor) the table already holds as JSON text, so
    that maps and lists there are not flattened or typed (the stored decision stands)."""
    out: list[Inferred] = []
    for path in profile.top_level():
        _infer_attribute(profile, path, profile.nodes[path], 1, options, json_paths, out, (str(path[0]),))
    return out


def _infer_attribute(profile: Profile, path: Path, stats: NodeStats, depth: int, options: SchemaOptions,
                     json_paths: frozenset[tuple[Path, str]], out: list[Inferred], prefix: tuple[str, ...]) -> None:
    kinds = sorted((k for k in stats.descriptors if k != "NULL"),
                   key=lambda k: (-stats.descriptors[k], DESCRIPTOR_ORDER.index(k)))
    if not kinds:  # only ever NULL
        out.append(Inferred(prefix, Column("", path, "NULL", "scalar", pa.string()), True))
        return
    for rank, kind in enumerate(kinds):
        primary = rank == 0
        if kind in SCALARS:
            out.append(Inferred(prefix, Column("", path, kind, "scalar", _scalar_type(kind, stats),
                                               numbers=stats.numbers if kind == "N" else None), primary))
        elif kind in ("SS", "NS", "BS"):
            out.append(Inferred(prefix, Column("", path, kind, "set", pa.list_(_scalar_type(kind, stats)), kind,
                                               numbers=stats.set_numbers if kind == "NS" else None), primary))
        elif kind == "L":
            if (path, "L") in json_paths:
                out.append(Inferred(prefix, Column("", path, "L", "json", pa.string()), primary))
            else:
                out.append(Inferred(prefix, _list_column(profile, path), primary,
                                    empty_list=profile.nodes.get(path + (None,)) is None))
        elif kind == "M":
            dictionary = stats.distinct_map_keys > options.dictionary_keys
            children = profile.children(path)
            if depth >= options.max_depth or dictionary or not children or (path, "M") in json_paths:
                out.append(Inferred(prefix, Column("", path, "M", "json", pa.string()), primary))
            else:
                # Glue names carry every level's descriptor (item.reviewer.m.name.s); snake names
                # only a variant's (reviewer__m__name when M is not the attribute's main type).
                segments = prefix + ("m",) if options.naming == "glue" or not primary else prefix
                for child in children:
                    _infer_attribute(profile, child, profile.nodes[child], depth + 1, options, json_paths, out,
                                     segments + (str(child[-1]),))


def _list_column(profile: Profile, path: Path) -> Column:
    element = profile.nodes.get(path + (None,))
    if element is None:  # only ever empty lists
        return Column("", path, "L", "list", pa.list_(pa.string()), "S")
    kinds = set(element.descriptors)
    if len(kinds) == 1 and next(iter(kinds)) in SCALARS:
        kind = next(iter(kinds))
        return Column("", path, "L", "list", pa.list_(_scalar_type(kind, element)), kind,
                      numbers=element.numbers if kind == "N" else None)
    return Column("", path, "L", "json", pa.string())


# -- names ------------------------------------------------------------------------------------------


def column_name(prefix: tuple[str, ...], descriptor: str, naming: str, *, bare: bool, tag: str = "") -> str:
    """The name of a column of ``descriptor`` at ``prefix``: ``price`` (bare), ``price__s`` (a
    variant of another descriptor), ``price__n_d2`` (a variant of the same descriptor that the
    bare column cannot hold). In glue naming every name carries its descriptor (``item.price.n``)."""
    kind = descriptor.lower() if descriptor != "NULL" else "null"
    if naming == "glue":
        return ".".join(["item", *(s.lower() for s in prefix), kind]) + (f"_{tag}" if tag else "")
    base = "__".join(snake(s) for s in prefix)
    if bare and not tag:
        return base
    return f"{base}__{kind}" + (f"_{tag}" if tag else "")


def unique_name(candidate: str, taken: set[str]) -> str:
    name, suffix = candidate, 2
    while name in taken:
        name = f"{candidate}_{suffix}"
        suffix += 1
    return name


def snake(name: str) -> str:
    """Athena/Glue-safe: lowercase ``[a-z0-9_]``, never empty, never starting with a digit."""
    text = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    text = re.sub(r"_{2,}", "_", text)  # "__" separates levels; keep it unambiguous
    if not text:
        text = "attr"
    if text[0].isdigit():
        text = f"_{text}"
    return text


def with_id(column: Column, field_id: int, element_id: int | None, name: str | None = None) -> Column:
    return replace(column, field_id=field_id, element_id=element_id if pa.types.is_list(column.type_) else None,
                   name=name if name is not None else column.name)
