"""Human-readable views of a profile and a plan (for ``ddb-assets inspect`` and asset metadata)."""

from __future__ import annotations

from dataclasses import dataclass

from ddb_assets.lake.profile import Path, Profile
from ddb_assets.lake.evolution import TablePlan
from ddb_assets.lake.schema import path_text


@dataclass(frozen=True)
class AttributeRow:
    attribute: str
    depth: int
    types: dict[str, int]
    present: int
    null_fraction: float  # share of items where the attribute is absent or NULL
    mixed: bool
    columns: tuple[str, ...]


def attribute_rows(profile: Profile, plan: TablePlan) -> list[AttributeRow]:
    columns_by_path: dict[Path, list[str]] = {}
    for column in plan.columns:
        columns_by_path.setdefault(column.path, []).append(f"{column.name}: {column.type_}")
    rows = []

    def visit(path: Path, depth: int, parent_present: int) -> None:
        # Null share relative to where the attribute could be: all items at the top, the
        # parent map's occurrences below it.
        stats = profile.nodes[path]
        non_null = stats.present - stats.descriptors.get("NULL", 0)
        rows.append(AttributeRow(
            attribute=path_text(path), depth=depth, types=dict(sorted(stats.descriptors.items())),
            present=stats.present,
            null_fraction=1 - non_null / parent_present if parent_present else 0.0,
            mixed=len(set(stats.descriptors) - {"NULL"}) > 1,
            columns=tuple(columns_by_path.get(path, ())),
        ))
        maps = stats.descriptors.get("M", 0)
        for child in profile.children(path):
            visit(child, depth + 1, maps)
        if path + (None,) in profile.nodes:
            visit(path + (None,), depth + 1, profile.nodes[path + (None,)].present)

    for path in profile.top_level():
        visit(path, 0, profile.items)
    return rows
