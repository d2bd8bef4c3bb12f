"""``ddb-assets demo --incremental``: a full export, then windows of changes merged, then proof.

On the local world, with its clock driven so that 15-minute windows pass in seconds:

1. load the sample reviews, export the table in full and convert it into ``<lake>/reviews``;
2. per window: random inserts, updates, deletes and partition moves (``year`` changes), with an
   attribute that first appears in a later window; then the window's incremental export
   (``ExportFromTime`` = the table's high-water mark) merged into the table, one snapshot each;
3. a fresh full export at the last window's end, converted into ``<lake>/reviews_check``, and the
   two tables reconciled item by item (``lake/reconcile.py``).

It runs the same library calls as ``ddb-assets export --incremental`` and ``ddb-assets convert``;
the Dagster path (the ``incremental_export`` asset) is the same code behind assets.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ddb_assets.local.sample_data import PARTITION_KEY, SORT_KEY, TABLE_NAME, ReviewGenerator
from ddb_assets.wording import counted

WINDOW_SECONDS = 15 * 60
CHECK_TABLE = f"{TABLE_NAME}_check"


@dataclass
class WindowChanges:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    moves: int = 0

    def text(self) -> str:
        return (f"{counted(self.inserts, 'insert')}, {counted(self.updates, 'update')}, "
                f"{counted(self.deletes, 'delete')}, {counted(self.moves, 'partition move')}")


def run_incremental_demo(log: Callable[[str], None], *, items: int = 3000, seed: int = 7, windows: int = 4,
                         changes_per_window: int = 60, export_format: str = "DYNAMODB_JSON",
                         lake_root: str = "var/lake", load: Callable[[Any, int, int], str] | None = None
                         ) -> dict[str, Any]:
    """Run the incremental demo; returns ``{"equal", "reconciliation" (dict), "tables": {name:
    metadata_location}, "windows": [per-window figures]}``. ``load(world, items, seed)`` loads the
    sample table and returns its ARN (the CLI passes one that shows progress)."""
    from ddb_assets.aws.dynamodb_exports import start_export, wait_for_export
    from ddb_assets.lake.catalog import CatalogConfig
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets.lake.reconcile import reconcile
    from ddb_assets.local.demo import EXPORT_BUCKET, load_sample_table
    from ddb_assets.local.world import LocalWorld

    if windows < 1:
        raise ValueError("the incremental demo needs at least one window")
    lake = os.path.abspath(lake_root)
    rng = random.Random(seed)
    figures: list[dict[str, Any]] = []
    with LocalWorld() as world, world.environment():
        clock = world.clock
        ddb = world.client("dynamodb")
        # Stand still on a whole second: every write of a step gets one known time.
        clock.set(math.ceil(clock.now()) + 1, frozen=True)
        log(f"local AWS world at {world.endpoint}; its clock is driven by the demo (windows of 15 minutes "
            f"pass in seconds)")
        if load is not None:
            table_arn = load(world, items, seed)
        else:
            from rich.console import Console

            table_arn = load_sample_table(world, items, seed, Console(quiet=True))
        known = {(i[PARTITION_KEY]["S"], i[SORT_KEY]["S"]): i for i in ReviewGenerator(items, seed=seed)}

        def export(**spec: Any) -> str:
            started = start_export(ddb, table_arn=table_arn, bucket=EXPORT_BUCKET, prefix=f"exports/{TABLE_NAME}",
                                   export_format=export_format, **spec)
            done = wait_for_export(ddb, started["ExportArn"], poll_seconds=0.05)
            return f"s3://{EXPORT_BUCKET}/{done['ExportManifest']}"

        def convert(source: str, table: str, **options: Any) -> Any:
            return convert_export(source, os.path.join(lake, table), ConvertOptions(
                partition_by="year", catalog=CatalogConfig(), workers=1, **options))

        clock.advance(1)
        mark = clock.now()
        started = time.monotonic()
        full = convert(export(export_time=datetime.fromtimestamp(mark, timezone.utc)), TABLE_NAME, rebuild=True)
        log(f"full export at {_iso(mark)}: {full.commit.rows:,} items into {full.table} "
            f"({time.monotonic() - started:.1f}s)")

        next_number = items
        for window in range(windows):
            start, end = mark, mark + WINDOW_SECONDS
            changes = WindowChanges()
            for offset in sorted(rng.uniform(1, WINDOW_SECONDS - 1) for _ in range(changes_per_window)):
                clock.set(start + offset, frozen=True)
                next_number = _change(ddb, rng, known, changes, next_number, late=window >= windows // 2)
            clock.set(end + 1, frozen=True)
            started = time.monotonic()
            merged = convert(export(incremental=(datetime.fromtimestamp(start, timezone.utc),
                                                 datetime.fromtimestamp(end, timezone.utc))), TABLE_NAME)
            seconds = time.monotonic() - started
            merge = merged.merge
            log(f"window {window + 1} ({_iso(start)} to {_iso(end)}): {changes.text()}; merged: "
                f"{counted(merge.upserts, 'upsert')}, {counted(merge.deletes, 'delete')}, "
                f"{counted(merge.files_rewritten, 'file')} rewritten, {counted(merged.commit.rows, 'row')} ({seconds:.1f}s)"
                + (f"; new columns {', '.join(c.name for c in merged.plan.added)}" if merged.plan.added else ""))
            figures.append({"window": [_iso(start), _iso(end)], "changes": vars(changes), "upserts": merge.upserts,
                            "deletes": merge.deletes, "files_rewritten": merge.files_rewritten,
                            "rows": merged.commit.rows, "seconds": round(seconds, 2)})
            mark = end

        check = convert(export(export_time=datetime.fromtimestamp(mark, timezone.utc)), CHECK_TABLE, rebuild=True)
        log(f"fresh full export at {_iso(mark)} (the last window's end): {check.commit.rows:,} items into "
            f"{check.table}")
        found = reconcile(merged.commit.table, check.commit.table, [PARTITION_KEY, SORT_KEY])
    log(("reconciliation: EQUAL. " if found.equal else "reconciliation: NOT EQUAL. ") + found.describe())
    for example in found.examples:
        log(f"  {example['problem']}: {example['key']}")
    tables = {merged.table: merged.commit.metadata_location, check.table: check.commit.metadata_location}
    for name, location in tables.items():
        log(f"{name}: {location}")
    return {"equal": found.equal, "reconciliation": found.as_dict(), "tables": tables, "windows": figures}


def _change(ddb: Any, rng: random.Random, known: dict[tuple[str, str], dict[str, Any]], changes: WindowChanges,
            number: int, *, late: bool) -> int:
    """One random write: insert, update, delete or partition move. Returns the next item number."""
    roll = rng.random()
    if roll < 0.25 or not known:
        item = dict(next(iter(ReviewGenerator(1, seed=number))))
        item[SORT_KEY] = {"S": f"N{number:08d}"}  # a review no sample item has
        _put(ddb, known, item, late)
        changes.inserts += 1
        return number + 1
    key = rng.choice(sorted(known))
    item = dict(known[key])
    if roll < 0.45:
        ddb.delete_item(TableName=TABLE_NAME, Key={PARTITION_KEY: item[PARTITION_KEY], SORT_KEY: item[SORT_KEY]})
        del known[key]
        changes.deletes += 1
    elif roll < 0.6:
        item["year"] = {"N": str(int(item["year"]["N"]) + rng.choice([-3, -1, 1]))}
        _put(ddb, known, item, late)
        changes.moves += 1
    else:
        votes = int(item["total_votes"]["N"]) + 1
        item.update(total_votes={"N": str(votes)}, helpful_votes={"N": str(rng.randint(0, votes))},
                    star_rating={"N": str(rng.randint(1, 5))})
        _put(ddb, known, item, late)
        changes.updates += 1
    return number


def _put(ddb: Any, known: dict[tuple[str, str], dict[str, Any]], item: dict[str, Any], late: bool) -> None:
    if late:  # an attribute the table has never seen, from the later windows on
        item["moderation"] = {"M": {"state": {"S": "approved"}, "score": {"N": f"0.{len(known) % 97:02d}"}}}
    ddb.put_item(TableName=TABLE_NAME, Item=item)
    known[(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])] = item


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
