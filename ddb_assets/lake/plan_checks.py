"""Checks that a conversion's schema plan may be written: the two ways a table could end up with
files of two schemas, caught before anything is published.

- A partial rewrite (some partitions) keeps the others as published, so its plan must be the
  published table's (``check_partial_rewrite``).
- A one-pass conversion plans from a profile read earlier; the items it then reads must need that
  very plan (``check_profile``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ddb_assets.lake.publish import TableMetadata
from ddb_assets.lake.schema import TablePlan


class SchemaChanged(ValueError):
    """A partial rewrite would publish some partitions under a schema the others do not have."""


class ProfileMismatch(ValueError):
    """The profile handed to a one-pass conversion is not the export's."""


def schema_changes(published: pa.Schema, planned: pa.Schema) -> list[str]:
    """What differs between two table schemas, column by column, in words."""
    old = {f.name: f.type for f in published}
    new = {f.name: f.type for f in planned}
    changes = [f"{name}: {old[name]} -> {kind}" for name, kind in new.items() if name in old and old[name] != kind]
    changes += [f"added {name} ({kind})" for name, kind in new.items() if name not in old]
    changes += [f"removed {name} ({kind})" for name, kind in old.items() if name not in new]
    return changes


def plan_changes(schema: pa.Schema, mapping: list[dict[str, Any]], planned: TablePlan) -> list[str]:
    """``schema_changes``, or, when the types agree, whether the columns come from other attributes."""
    changes = schema_changes(schema, planned.arrow_schema)
    if not changes and mapping != planned.mapping():
        changes = ["the columns map from other attributes"]
    return changes


def check_partial_rewrite(published: TableMetadata, plan: TablePlan, export_id: str,
                          partitions: frozenset[str]) -> None:
    """A partial rewrite keeps the other partitions as published: it must not change the schema,
    or the table would hold files of two schemas (engines reject an INT64 file under a decimal
    column, and readers that take the first file's schema miss columns)."""
    changes = plan_changes(published.arrow_schema, published.columns, plan)
    if published.partition_column != plan.partition_column:
        changes.append(f"partition column {published.partition_column} -> {plan.partition_column}")
    if changes:
        raise SchemaChanged(
            f"export {export_id} gives table {published.table} a different schema ({'; '.join(changes)}); "
            f"a rewrite of only partition(s) {', '.join(sorted(partitions))} would leave the other "
            f"partitions with the published one. Convert every partition instead (no partition selection; "
            f"in Dagster, materialize all partitions of the table).")


def check_profile(seen: TablePlan, plan: TablePlan, export_id: str) -> None:
    """The one pass profiled every item again (``seen`` is planned from that): it must be the
    plan the files were written with."""
    changes = plan_changes(plan.arrow_schema, plan.mapping(), seen)
    if changes:
        raise ProfileMismatch(f"the profile given does not describe export {export_id}: its items need "
                              f"another schema ({'; '.join(changes)}). Profile the export again (inspect "
                              f"--save-profile), or convert without a profile")
