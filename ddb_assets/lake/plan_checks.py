"""The check that a one-pass conversion's plan was right: the items it read must need that plan.

A one-pass conversion plans its schema from a profile read earlier (the Dagster ``raw_export``
asset, ``inspect --save-profile``) and writes while it reads, profiling every item again. If the
items turn out to need another plan, the profile was not this export's: the files are discarded.
"""

from __future__ import annotations

from ddb_assets.lake.evolution import TablePlan


class ProfileMismatch(ValueError):
    """The profile handed to a one-pass conversion is not the export's."""


def plan_differences(planned: TablePlan, seen: TablePlan) -> list[str]:
    """What differs between two plans of one table, column by column, in words."""
    before = {c.field_id: c for c in planned.columns}
    after = {c.field_id: c for c in seen.columns}
    # Iceberg's type names (decimal(4, 3), long), as every other line of the output shows them.
    changes = [f"{c.name}: {before[i].type_text} -> {c.type_text}" for i, c in after.items()
               if i in before and (before[i].name, before[i].type_) != (c.name, c.type_)]
    changes += [f"added {c.name} ({c.type_text})" for i, c in after.items() if i not in before]
    changes += [f"removed {c.name} ({c.type_text})" for i, c in before.items() if i not in after]
    if not changes and planned.active != seen.active:
        changes = ["the columns map from other attributes"]
    return changes


def check_profile(seen: TablePlan, plan: TablePlan, export_id: str) -> None:
    """The one pass profiled every item again (``seen`` is planned from that): it must be the
    plan the files were written with."""
    changes = plan_differences(plan, seen)
    if changes:
        raise ProfileMismatch(f"the profile given does not describe export {export_id}: its items need "
                              f"another schema ({'; '.join(changes)}). Profile the export again (inspect "
                              f"--save-profile), or convert without a profile")


def plan_misfits(seen: TablePlan, plan: TablePlan) -> list[str]:
    """What files written with ``plan`` would lack for items that need ``seen`` (empty: they fit).
    They fit when both have the same columns (ids, names, types) and every column the items fill
    is one the plan fills; the plan may fill more (attributes an earlier export had: null here)."""
    changes = [c for c in plan_differences(plan, seen) if c != "the columns map from other attributes"]
    if changes:
        return changes
    by_id = seen.schema.by_id()
    unfilled = sorted(by_id[i].name for i in seen.active - plan.active if i in by_id)
    return [f"values for {', '.join(unfilled)}"] if unfilled else []
