"""What an export holds, attribute by attribute, from every item (no sampling).

A profile is built per data file from the raw Arrow shape (vectorized, no per-row Python) and the
profiles of all files are merged. It records, for every attribute path, how often each type
descriptor occurs and what the numbers need (int64? decimal precision and scale? neither?), which
is what the schema plan is decided from.

Paths are tuples of attribute names; ``None`` stands for "an element of a list", so attribute names
never collide with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Iterable

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ddb_assets.exports.decode import RAW_LIST, RAW_MAP
from ddb_assets.exports.numbers import EXACT

Path = tuple  # tuple[str | None, ...]

INT64_MAX_DIGITS = 18  # any integer of up to 18 digits fits int64
MAX_MAP_KEYS_TRACKED = 4096  # beyond this, a map is a dictionary whatever the threshold

_PLAIN_NUMBER = r"^-?[0-9]+(\.[0-9]+)?$"
_NUMBER_PARTS = r"^-?0*(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*?)0*)?$"


@dataclass
class NumberStats:
    """What it takes to hold every number seen at one path exactly."""

    count: int = 0
    all_integers: bool = True
    int_digits: int = 0  # most digits before the point
    scale: int = 0  # most digits after the point (trailing zeros ignored)
    unrepresentable: int = 0  # values no decimal128 holds (e.g. 1E+125, 1E-130)

    @property
    def fits_int64(self) -> bool:
        return self.all_integers and self.int_digits <= INT64_MAX_DIGITS and not self.unrepresentable

    @property
    def fits_decimal128(self) -> bool:
        return not self.unrepresentable and self.int_digits + self.scale <= 38

    def merge(self, other: "NumberStats") -> None:
        self.count += other.count
        self.all_integers &= other.all_integers
        self.int_digits = max(self.int_digits, other.int_digits)
        self.scale = max(self.scale, other.scale)
        self.unrepresentable += other.unrepresentable


@dataclass
class NodeStats:
    """One attribute path: descriptor counts, numbers, map keys, order of first appearance."""

    first_seen: tuple[int, int] = (1 << 30, 1 << 30)  # (file index, field index): column order
    present: int = 0
    descriptors: dict[str, int] = field(default_factory=dict)
    numbers: NumberStats | None = None  # for N
    set_numbers: NumberStats | None = None  # for NS elements
    map_keys: set[str] = field(default_factory=set)
    map_keys_overflow: bool = False
    empty_lists: int = 0
    empty_maps: int = 0

    def merge(self, other: "NodeStats") -> None:
        self.first_seen = min(self.first_seen, other.first_seen)
        self.present += other.present
        for kind, count in other.descriptors.items():
            self.descriptors[kind] = self.descriptors.get(kind, 0) + count
        for attr in ("numbers", "set_numbers"):
            theirs = getattr(other, attr)
            if theirs is not None:
                mine = getattr(self, attr)
                if mine is None:
                    setattr(self, attr, NumberStats())
                    mine = getattr(self, attr)
                mine.merge(theirs)
        self.map_keys |= other.map_keys
        self.map_keys_overflow |= other.map_keys_overflow or len(self.map_keys) > MAX_MAP_KEYS_TRACKED
        if self.map_keys_overflow:
            self.map_keys = set(sorted(self.map_keys)[:MAX_MAP_KEYS_TRACKED + 1])
        self.empty_lists += other.empty_lists
        self.empty_maps += other.empty_maps

    @property
    def distinct_map_keys(self) -> int:
        return len(self.map_keys) if not self.map_keys_overflow else MAX_MAP_KEYS_TRACKED + 1


@dataclass
class Profile:
    items: int = 0
    nodes: dict[Path, NodeStats] = field(default_factory=dict)
    partition_values: set[str] = field(default_factory=set)  # of the partition attribute, as text
    # (file index, attribute names of that file's first item, in order): the table's key
    # attributes come first in every export line, so the earliest file's first line orders columns.
    first_line: tuple[int, tuple[str, ...]] | None = None
    # An incremental export's primary key (its lines' Keys object); () for a full export.
    key_names: tuple[str, ...] = ()
    deletes: int = 0  # an incremental export's lines that delete (the others upsert); 0 for a full export

    def merge(self, other: "Profile") -> "Profile":
        self.items += other.items
        self.deletes += other.deletes
        self.partition_values |= other.partition_values
        self.key_names = self.key_names or other.key_names
        if other.first_line is not None and (self.first_line is None or other.first_line[0] < self.first_line[0]):
            self.first_line = other.first_line
        for path, stats in other.nodes.items():
            if path in self.nodes:
                self.nodes[path].merge(stats)
            else:
                self.nodes[path] = stats
        return self

    @staticmethod
    def merged(profiles: Iterable["Profile"]) -> "Profile":
        total = Profile()
        for profile in profiles:
            total.merge(profile)
        return total

    def children(self, path: Path) -> list[Path]:
        """Direct map children of ``path`` (not list elements), in a deterministic order.

        Top level: the attributes of the earliest file's first item in their order (keys first),
        then the others by the first file they appear in and by name. Below: by first file and
        name. Never by parse order, which depends on how files were spread over workers.
        """
        found = [p for p in self.nodes if len(p) == len(path) + 1 and p[:-1] == path and p[-1] is not None]
        leading = {name: rank for rank, name in enumerate(self.first_line[1])} if (path == () and self.first_line) else {}
        return sorted(found, key=lambda p: (leading.get(p[-1], len(leading)), self.nodes[p].first_seen[0], p[-1]))

    def top_level(self) -> list[Path]:
        return self.children(())


PROFILE_FORMAT = "ddb_assets.profile/1"


def profile_to_json(profile: Profile, export_id: str) -> bytes:
    """An export's whole profile as JSON, so that a later step plans from it without reading again."""
    return orjson.dumps({
        "format": PROFILE_FORMAT,
        "export_id": export_id,
        "items": profile.items,
        "partition_values": sorted(profile.partition_values),
        "first_line": [profile.first_line[0], list(profile.first_line[1])] if profile.first_line else None,
        "key_names": list(profile.key_names),
        "deletes": profile.deletes,
        "nodes": [[list(path), _node_to_dict(stats)] for path, stats in profile.nodes.items()],
    })


def profile_from_json(data: bytes, *, obj: str) -> tuple[str, Profile]:
    """(export id, profile) from ``profile_to_json``'s output; errors name ``obj``."""
    try:
        document = orjson.loads(data)
        if not isinstance(document, dict) or document.get("format") != PROFILE_FORMAT:
            raise ValueError(f"not a profile saved by ddb-assets (format {PROFILE_FORMAT})")
        first_line = document["first_line"]
        return document["export_id"], Profile(
            items=document["items"], partition_values=set(document["partition_values"]),
            first_line=(first_line[0], tuple(first_line[1])) if first_line else None,
            key_names=tuple(document.get("key_names") or ()), deletes=int(document.get("deletes") or 0),
            nodes={tuple(path): _node_from_dict(stats) for path, stats in document["nodes"]})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{obj}: cannot read the profile ({exc})") from None


def _node_to_dict(stats: NodeStats) -> dict:
    return {"first_seen": list(stats.first_seen), "present": stats.present, "descriptors": stats.descriptors,
            "numbers": asdict(stats.numbers) if stats.numbers else None,
            "set_numbers": asdict(stats.set_numbers) if stats.set_numbers else None,
            "map_keys": sorted(stats.map_keys), "map_keys_overflow": stats.map_keys_overflow,
            "empty_lists": stats.empty_lists, "empty_maps": stats.empty_maps}


def _node_from_dict(data: dict) -> NodeStats:
    return NodeStats(first_seen=tuple(data["first_seen"]), present=data["present"], descriptors=data["descriptors"],
                     numbers=NumberStats(**data["numbers"]) if data["numbers"] else None,
                     set_numbers=NumberStats(**data["set_numbers"]) if data["set_numbers"] else None,
                     map_keys=set(data["map_keys"]), map_keys_overflow=data["map_keys_overflow"],
                     empty_lists=data["empty_lists"], empty_maps=data["empty_maps"])


def profile_items(item: pa.StructArray, file_index: int) -> Profile:
    """Profile one data file's ``Item`` column."""
    profile = Profile(items=len(item))
    _walk_struct(item, (), profile, file_index)
    return profile


def _walk_struct(struct: pa.Array, path: Path, profile: Profile, file_index: int) -> None:
    children = struct.flatten()
    for index, (field_, child) in enumerate(zip(struct.type, children)):
        _walk_wrapper(child, path + (field_.name,), profile, (file_index, index))


def _walk_wrapper(wrapper: pa.Array, path: Path, profile: Profile, order: tuple[int, int]) -> None:
    present = len(wrapper) - wrapper.null_count
    if not present:
        return
    stats = profile.nodes.setdefault(path, NodeStats(first_seen=order))
    stats.present += present
    for field_, child in zip(wrapper.type, wrapper.flatten()):
        count = len(child) - child.null_count
        if not count:
            continue
        kind = field_.name
        if kind == RAW_MAP:  # a dictionary map (or one below CARRIED_DEPTH) carried as text: a map, not a schema
            stats.descriptors["M"] = stats.descriptors.get("M", 0) + count
            stats.map_keys_overflow = True
            continue
        if kind == RAW_LIST:  # a list carried as text (below exports.decode.CARRIED_DEPTH): not profiled inside
            stats.descriptors["L"] = stats.descriptors.get("L", 0) + count
            continue
        stats.descriptors[kind] = stats.descriptors.get(kind, 0) + count
        if kind == "N":
            stats.numbers = _merge_numbers(stats.numbers, number_stats(child))
        elif kind == "NS":
            stats.set_numbers = _merge_numbers(stats.set_numbers, number_stats(pc.list_flatten(child)))
        elif kind == "M":
            names = [f.name for f in child.type]
            stats.map_keys.update(names)
            if len(stats.map_keys) > MAX_MAP_KEYS_TRACKED:
                stats.map_keys_overflow = True
            if names:
                valid_children = pc.is_valid(child.flatten()[0])
                for grandchild in child.flatten()[1:]:
                    valid_children = pc.or_(valid_children, pc.is_valid(grandchild))
                stats.empty_maps += pc.sum(pc.and_(pc.is_valid(child), pc.invert(valid_children))).as_py() or 0
            else:
                stats.empty_maps += count
            _walk_struct(child, path, profile, order[0])
        elif kind == "L":
            lengths = pc.list_value_length(child)
            stats.empty_lists += pc.sum(pc.cast(pc.equal(lengths, 0), pa.int64())).as_py() or 0
            if not pa.types.is_null(child.type.value_type):
                _walk_wrapper(pc.list_flatten(child), path + (None,), profile, order)


def _merge_numbers(mine: NumberStats | None, theirs: NumberStats) -> NumberStats:
    if mine is None:
        return theirs
    mine.merge(theirs)
    return mine


def number_stats(strings: pa.Array) -> NumberStats:
    """Vectorized over plain decimal strings; exponent forms (rare) go through Python's Decimal."""
    strings = strings.drop_null()
    stats = NumberStats(count=len(strings))
    if not len(strings):
        return stats
    try:  # the common case, integers that fit int64: one C++ cast answers it
        integers = pc.cast(strings, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        low, high = pc.min_max(integers).values()
        stats.int_digits = max(len(str(abs(low.as_py()))), len(str(abs(high.as_py()))))
        if stats.int_digits <= INT64_MAX_DIGITS:
            return stats
    plain = pc.match_substring_regex(strings, _PLAIN_NUMBER)
    plain_values = strings.filter(plain)
    if len(plain_values):
        parts = pc.extract_regex(plain_values, _NUMBER_PARTS)
        int_part, frac_part = parts.field("int"), parts.field("frac")
        stats.int_digits = pc.max(pc.utf8_length(int_part)).as_py() or 0
        stats.scale = pc.max(pc.utf8_length(frac_part)).as_py() or 0
        stats.all_integers = stats.scale == 0
    for text in strings.filter(pc.invert(plain)).to_pylist():
        _add_unusual_number(stats, text)
    return stats


def _add_unusual_number(stats: NumberStats, text: str) -> None:
    value = Decimal(text).normalize(EXACT)
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if value.is_zero():
        return
    int_digits = max(0, len(digits) + exponent)
    scale = max(0, -exponent)
    if int_digits + scale > 38:
        stats.unrepresentable += 1
        stats.all_integers = False
        return
    stats.int_digits = max(stats.int_digits, int_digits)
    stats.scale = max(stats.scale, scale)
    stats.all_integers &= scale == 0
