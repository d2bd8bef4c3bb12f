"""One schema for the whole dataset, decided from the profile of every item.

The rules (docs/schema_rules.md has the full text):

- ``S`` string, ``BOOL`` bool, ``B`` binary, ``NULL`` null. ``N`` the narrowest exact type: int64 if
  every value is an integer of at most 18 digits, else decimal128(p, s) when all fit 38 digits,
  else string. Never a float.
- ``SS``/``NS``/``BS`` lists of the element type.
- ``M`` flattened into ``parent__child`` columns up to ``max_depth`` levels; deeper maps, and maps
  used as dictionaries (more than ``dictionary_keys`` distinct keys), stay one JSON text column.
- ``L`` a typed list when every element everywhere has the same scalar type, else JSON text.
- An attribute seen with several types: the most frequent keeps the name, the others become
  variant columns ``<name>__<descriptor>`` (``price`` + ``price__s``), reported in ``variants``.
- Names: ``snake`` mode lowercases to ``[a-z0-9_]`` and makes them unique; ``glue`` mode reproduces
  AWS Glue Relationalize names (``item.product_title.s``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ddb_assets.lake.profile import NodeStats, NumberStats, Path, Profile

NAMING_MODES = ("snake", "glue")
SCALARS = ("S", "N", "B", "BOOL")
_DESCRIPTOR_ORDER = ("S", "N", "B", "BOOL", "M", "L", "SS", "NS", "BS", "NULL")
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's, Athena's and Spark's name for "no value"


@dataclass(frozen=True)
class SchemaOptions:
    naming: str = "snake"
    max_depth: int = 3  # map levels flattened into columns; deeper maps become JSON text
    dictionary_keys: int = 64  # a map with more distinct keys than this is data, not schema
    partition_by: str | None = "year"

    def __post_init__(self) -> None:
        if self.naming not in NAMING_MODES:
            raise ValueError(f"naming must be one of {', '.join(NAMING_MODES)}, not {self.naming!r}")


@dataclass(frozen=True)
class Column:
    """One output column: where its values come from and how they are encoded."""

    name: str
    path: Path  # attribute path in the item
    descriptor: str  # the type descriptor read at that path
    encoding: str  # "scalar" | "set" | "list" | "json"
    type_: pa.DataType
    element: str | None = None  # for lists: the element descriptor

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": str(self.type_), "attribute": _path_text(self.path),
                "path": list(self.path),
                "descriptor": self.descriptor, "encoding": self.encoding, "element": self.element}


@dataclass
class TablePlan:
    columns: list[Column]
    partition_column: str | None
    partition_attribute: str | None
    partition_type: pa.DataType | None
    variants: dict[str, dict[str, int]] = field(default_factory=dict)  # attribute -> descriptor -> count
    options: SchemaOptions = field(default_factory=SchemaOptions)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type_) for c in self.columns])

    def mapping(self) -> list[dict[str, Any]]:
        return [c.describe() for c in self.columns]


def number_type(stats: NumberStats | None) -> pa.DataType:
    if stats is None or stats.fits_int64:
        return pa.int64()
    if stats.fits_decimal128:
        return pa.decimal128(max(1, stats.int_digits + stats.scale), stats.scale)
    return pa.string()


def _scalar_type(descriptor: str, stats: NodeStats, set_numbers: bool = False) -> pa.DataType:
    if descriptor == "S" or descriptor == "SS":
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


def plan_table(profile: Profile, options: SchemaOptions = SchemaOptions()) -> TablePlan:
    columns: list[tuple[list[str], Column]] = []  # (name segments, column with placeholder name)
    variants: dict[str, dict[str, int]] = {}
    partition_type = None
    for path in profile.top_level():
        attribute = path[0]
        stats = profile.nodes[path]
        if options.partition_by is not None and attribute == options.partition_by:
            partition_type = _partition_type(stats)
            continue
        _plan_attribute(profile, path, stats, 1, options, columns, variants)
    partition_column = None
    if options.partition_by is not None:
        partition_column = (f"item.{options.partition_by.lower()}.n" if options.naming == "glue" and
                            partition_type == pa.int64() else
                            f"item.{options.partition_by.lower()}.s" if options.naming == "glue" else
                            _snake(options.partition_by))
        if partition_type is None:
            partition_type = pa.string()
    names = _unique_names([segments for segments, _ in columns], options.naming,
                          reserved={partition_column} if partition_column else set())
    final = [Column(name, c.path, c.descriptor, c.encoding, c.type_, c.element)
             for name, (_, c) in zip(names, columns)]
    return TablePlan(final, partition_column, options.partition_by, partition_type, variants, options)


def _partition_type(stats: NodeStats) -> pa.DataType:
    kinds = set(stats.descriptors) - {"NULL"}
    if kinds == {"N"} and stats.numbers is not None and stats.numbers.fits_int64:
        return pa.int64()
    return pa.string()


def _plan_attribute(profile: Profile, path: Path, stats: NodeStats, depth: int, options: SchemaOptions,
                    out: list[tuple[list[str], Column]], variants: dict[str, dict[str, int]],
                    prefix: list[str] | None = None) -> None:
    prefix = prefix if prefix is not None else [str(path[-1])]
    kinds = sorted((k for k in stats.descriptors if k != "NULL"),
                   key=lambda k: (-stats.descriptors[k], _DESCRIPTOR_ORDER.index(k)))
    if not kinds:  # only ever NULL
        out.append((_segments(prefix, "NULL", options, primary=True), Column("", path, "NULL", "scalar", pa.string())))
        return
    if len(kinds) > 1:
        variants[_path_text(path)] = dict(stats.descriptors)
    for rank, kind in enumerate(kinds):
        segments = _segments(prefix, kind, options, primary=rank == 0)
        if kind in SCALARS:
            out.append((segments, Column("", path, kind, "scalar", _scalar_type(kind, stats))))
        elif kind in ("SS", "NS", "BS"):
            out.append((segments, Column("", path, kind, "set", pa.list_(_scalar_type(kind, stats)), kind)))
        elif kind == "L":
            out.append((segments, _list_column(profile, path)))
        elif kind == "M":
            dictionary = stats.distinct_map_keys > options.dictionary_keys
            children = profile.children(path)
            if depth >= options.max_depth or dictionary or not children:
                out.append((segments, Column("", path, "M", "json", pa.string())))
            else:
                for child in children:
                    child_prefix = segments + ([str(child[-1])] if options.naming == "snake" else [str(child[-1])])
                    _plan_attribute(profile, child, profile.nodes[child], depth + 1, options, out, variants,
                                    child_prefix)


def _list_column(profile: Profile, path: Path) -> Column:
    element_path = path + (None,)
    element = profile.nodes.get(element_path)
    if element is None:  # only ever empty lists
        return Column("", path, "L", "list", pa.list_(pa.string()), "S")
    kinds = set(element.descriptors)
    if len(kinds) == 1 and next(iter(kinds)) in SCALARS:
        kind = next(iter(kinds))
        return Column("", path, "L", "list", pa.list_(_scalar_type(kind, element)), kind)
    return Column("", path, "L", "json", pa.string())


def _segments(prefix: list[str], kind: str, options: SchemaOptions, *, primary: bool) -> list[str]:
    if options.naming == "glue":
        # Glue Relationalize keeps the descriptor in every name: item.price.n, item.reviewer.m.name.s
        return prefix + [kind.lower()] if kind != "M" else prefix + ["m"]
    return prefix if primary else prefix + [kind.lower()]


def _unique_names(all_segments: list[list[str]], naming: str, reserved: set[str]) -> list[str]:
    if naming == "glue":
        candidates = [".".join(["item", *(s.lower() for s in segments)]) for segments in all_segments]
    else:
        candidates = ["__".join(_snake(s) for s in segments) for segments in all_segments]
    taken = set(reserved)
    names = []
    for candidate in candidates:
        name, suffix = candidate, 2
        while name in taken:
            name = f"{candidate}_{suffix}"
            suffix += 1
        taken.add(name)
        names.append(name)
    return names


def _snake(name: str) -> str:
    """Athena/Glue-safe: lowercase ``[a-z0-9_]``, never empty, never starting with a digit."""
    text = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    text = re.sub(r"_{2,}", "_", text)  # "__" separates levels; keep it unambiguous
    if not text:
        text = "attr"
    if text[0].isdigit():
        text = f"_{text}"
    return text


def _path_text(path: Path) -> str:
    out = ""
    for segment in path:
        out += "[]" if segment is None else (f".{segment}" if out else str(segment))
    return out
