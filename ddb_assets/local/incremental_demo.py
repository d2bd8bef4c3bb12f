"""``ddb-assets demo --incremental``: a full export, then windows of changes merged, then proof, all
through the Dagster assets users deploy, into the Dagster home ``make dev`` shows.

The table's settings are the packaged local profile's with ``incremental:`` set (15-minute windows
starting at the full export's time) and ``history: true``. On the local world, with its clock driven
so that 15-minute windows pass in seconds:

1. load the sample reviews; ``pitr_export`` at the first window's start, the export completion
   sensor's tick, ``raw_export`` (validated and staged, with its checks), ``parquet`` (rebuilt from
   it: each run of the demo starts the chain again);
2. per window: random inserts, updates, deletes and partition moves (``year`` changes), with an
   attribute that first appears in a later window; then the window's ``incremental_export``
   partition, the sensor's tick, ``raw_export`` of that export and ``parquet`` merging it (and
   appending the change history), with the freshness check in the same run;
3. the reconciliation check (``<table>_reconcile_job``): a fresh full export at the table's
   high-water mark (the last window's end), converted into ``<table>_check`` and compared item
   by item.

The demo's clock starts at the next window boundary after the present and after what the Dagster
home or the lake already reach (so a second run never meets the first one's windows): it runs ahead
of real time (Dagster is told: ``future_windows``), and the lake table's high-water mark is left in
the future, about ``windows`` quarter-hours ahead.
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
                         lake_root: str = "var/lake", dagster_home: str | None = None,
                         load: Callable[[Any, int, int], str] | None = None,
                         exports_root: str = "var/exports") -> dict[str, Any]:
    """Run the incremental demo through Dagster; returns ``{"equal", "reconciliation" (the check's
    metadata values), "tables": {name: metadata_location}, "windows": [per-window figures, each
    with its export id and the merge's run id], "full_export": export id, "dagster_home",
    "exports_folder": the kept copies' folder (the export prefix)}``. ``load(world, items, seed)`` loads the
    sample table and returns its ARN (the CLI passes one that shows progress). Every export the demo
    made is copied to ``<exports_root>/<bucket>/<key>`` (the world dies with the demo).
    Raises DemoRefused while ``ddb-assets dev`` serves the Dagster home, ValueError for no windows."""
    import dagster as dg

    from ddb_assets.defs.incremental_checks import FRESHNESS, RECONCILIATION
    from ddb_assets.local.demo import EXPORT_BUCKET, dagster_runs_line, demo_dagster_home, keep_exports, \
        load_sample_table, shown_path
    from ddb_assets.local.pipeline import LocalDagster, local_settings, refresh_reports
    from ddb_assets.local.world import LocalWorld
    from ddb_assets.settings import IncrementalSettings, TableSettings

    if windows < 1:
        raise ValueError("the incremental demo needs at least one window")
    lake = os.path.abspath(lake_root)
    rng = random.Random(seed)
    figures: list[dict[str, Any]] = []
    with demo_dagster_home(dagster_home, "ddb-assets demo --incremental") as home, LocalWorld() as world, \
            world.environment(), dg.DagsterInstance.local_temp(str(home)) as instance:
        base = local_settings(world.endpoint, lake)
        start = _first_window_start(LocalDagster(base, instance))
        last_end = start + windows * WINDOW_SECONDS
        table = TableSettings(
            table=TABLE_NAME, export_bucket=EXPORT_BUCKET, export_prefix=f"exports/{TABLE_NAME}",
            export_format=export_format, history=True,
            incremental=IncrementalSettings(
                window="15m", start=_iso(start),
                # Dagster lists windows up to the real present only; the demo's clock runs ahead.
                future_windows=math.ceil((last_end - time.time()) / WINDOW_SECONDS) + 1))
        dagster = LocalDagster(base.model_copy(update={"tables": [table]}), instance, quiet=True)
        names = dagster.names
        clock = world.clock
        # Stand still: every write of a step gets one known time. The sample is loaded just before
        # the first window, so the full export at its start holds it.
        clock.set(start - 60, frozen=True)
        log(f"local AWS world at {world.endpoint}; its clock is driven by the demo (windows of 15 minutes "
            f"pass in seconds); Dagster home {shown_path(str(home))}")
        if load is not None:
            load(world, items, seed)
        else:
            from rich.console import Console

            load_sample_table(world, items, seed, Console(quiet=True))
        known = {(i[PARTITION_KEY]["S"], i[SORT_KEY]["S"]): i for i in ReviewGenerator(items, seed=seed)}

        clock.set(start, frozen=True)
        started = time.monotonic()
        run = dagster.materialize([names.pitr_export_key], config={names.pitr_export_key: {"export_time": _iso(start)}})
        full_id = dagster.node_metadata(run, names.pitr_export_key)["export_id"]
        _validate(dagster, full_id)
        # A lake table left by an earlier run (of either demo) is rebuilt: its schema planned again, so
        # the later windows' new attribute shows as new columns each time. A new table commits what
        # raw_export staged; a rebuild cannot (new field ids) and reads the export again, which its
        # run's warning says (in the UI; here the line below says it).
        rebuild = dagster.defs.resources["lake"].table(names.name) is not None
        merged = dagster.node_metadata(dagster.lake_table(rebuild=rebuild, log_level="ERROR" if rebuild else None),
                                       names.parquet_key)
        log(f"full export {full_id} at {_iso(start)}: {merged['table_rows']:,} items into "
            f"{merged['dagster/table_name']} (pitr_export, the export sensor, raw_export, parquet: "
            f"{time.monotonic() - started:.1f}s)"
            + (f"; {merged['dagster/table_name']} held an earlier run's table: rebuilt (run config rebuild: "
               f"true), its columns planned again, the export read again" if rebuild else ""))

        ddb, next_number = world.client("dynamodb"), items
        for window in range(windows):
            window_start, window_end = start + window * WINDOW_SECONDS, start + (window + 1) * WINDOW_SECONDS
            changes = WindowChanges()
            for offset in sorted(rng.uniform(1, WINDOW_SECONDS - 1) for _ in range(changes_per_window)):
                clock.set(window_start + offset, frozen=True)
                next_number = _change(ddb, rng, known, changes, next_number, late=window >= windows // 2)
            clock.set(window_end + 1, frozen=True)  # the window has closed: DynamoDB exports it
            started = time.monotonic()
            key = datetime.fromtimestamp(window_start, timezone.utc).strftime("%Y-%m-%dT%H:%M")
            exported = dagster.materialize([names.incremental_export_key], partition_key=key)
            export_id = dagster.node_metadata(exported, names.incremental_export_key)["export_id"]
            _validate(dagster, export_id)
            # The freshness check (scheduled at each window's close when deployed) runs in the
            # merge's run, right after it: one Dagster run less per window.
            lake_run = dagster.lake_table(checks=(FRESHNESS,))
            merged = dagster.node_metadata(lake_run, names.parquet_key)
            [merge] = merged["merged"]
            [freshness] = [e for e in lake_run.get_asset_check_evaluations() if e.check_name == FRESHNESS]
            seconds = time.monotonic() - started
            history = sum(h["changes"] for h in merged["history_appended"])
            added = _new_columns(merged["schema_changes"])
            log(f"window {window + 1} ({_iso(window_start)} to {_iso(window_end)}): {changes.text()}; "
                f"export {export_id} merged: {counted(merge['upserts'], 'upsert')}, "
                f"{counted(merge['deletes'], 'delete')}, {counted(merge['files_rewritten'], 'file')} rewritten, "
                f"{counted(merged['table_rows'], 'row')}; history +{counted(history, 'change')}; "
                f"{FRESHNESS} {'passed' if freshness.passed else 'FAILED'} ({seconds:.1f}s)"
                + (f"; new columns {', '.join(added)}" if added else ""))
            figures.append({"window": [_iso(window_start), _iso(window_end)], "partition": key,
                            "export_id": export_id, "changes": vars(changes), "upserts": merge["upserts"],
                            "deletes": merge["deletes"], "files_rewritten": merge["files_rewritten"],
                            "rows": merged["table_rows"], "history": history, "new_columns": added,
                            "freshness_passed": freshness.passed, "run_id": lake_run.run_id,
                            "seconds": round(seconds, 2)})

        # The reports follow the merged table (deployed, the reports sensor requests one run per
        # commit): refreshed once here, not left describing an earlier demo's table.
        started = time.monotonic()
        reports = refresh_reports(dagster)
        log(f"{len(reports)} report tables refreshed from the merged table ({time.monotonic() - started:.1f}s; "
            f"deployed, {names.name}_reports_sensor requests them after each commit)")
        started = time.monotonic()
        [check] = dagster.run_checks(f"{names.name}_reconcile_job")
        found = {k: v.value for k, v in check.metadata.items()}
        if "problem" in found:  # no full export could be made or read: nothing was compared
            found.setdefault("result", found["problem"])
        log(f"{RECONCILIATION} ({names.name}_reconcile_job, {time.monotonic() - started:.1f}s): a fresh full "
            f"export at the high-water mark {_iso(last_end)} (the last window's end) converted into "
            f"{base.catalog.namespace}.{CHECK_TABLE}"
            + (f", {found['full_export_rows']:,} items" if "full_export_rows" in found else "")
            + ", compared item by item")
        # The world dies with the demo: its exports are kept, as the plain demo keeps its one.
        kept = keep_exports(world, table.export_prefix, exports_root)
    log(("reconciliation: EQUAL. " if check.passed else "reconciliation: NOT EQUAL. ") + str(found["result"]))
    for example in found.get("examples") or []:
        log(f"  {example['problem']}: {example['key']}")
    tables = {f"{base.catalog.namespace}.{names.name}": merged["metadata_location"]}
    if "check_table" in found:
        tables[f"{base.catalog.namespace}.{CHECK_TABLE}"] = found["check_table"]
    for name, location in tables.items():
        log(f"{name}: {location}")
    log(f"exports kept in {shown_path(kept)}: the full export and each window's in AWSDynamoDB/<export id>/, the "
        f"reconciliation's below reconciliation/ (inspect one: ddb-assets inspect "
        f"{shown_path(kept)}AWSDynamoDB/{full_id}/)")
    log(dagster_runs_line(home, dagster_home))
    log(f"the demo's clock ran ahead: {base.catalog.namespace}.{names.name} holds changes up to {_iso(last_end)}; "
        f"`ddb-assets demo` with {shown_path(str(home))} or {shown_path(lake)} refuses until then")
    return {"equal": bool(check.passed), "reconciliation": found, "tables": tables, "windows": figures,
            "full_export": full_id, "dagster_home": str(home), "exports_folder": kept}


def _first_window_start(dagster: Any) -> float:
    """Where the demo's clock starts: the next window boundary after the present and after every
    export the Dagster home knows and the lake table's high-water mark. The demo's exports must be
    the newest the home knows (the lake table orders exports by their ids, which begin with their
    start time), and no window of an earlier run (whose exports went with its local world) may chain
    after its full export. The world's clock only moves forward, so it cannot start in the past."""
    from ddb_assets.defs.export_assets import validated_exports
    from ddb_assets.lake.record import high_water_mark, instant

    names = dagster.names
    reached = [time.time()]
    reached += [int(export_id.split("-")[0]) / 1000
                for export_id in names.export_partitions.get_partition_keys(dynamic_partitions_store=dagster.instance)
                if export_id.split("-")[0].isdigit()]
    reached += [instant(e.mark) for e in validated_exports(dagster.instance, names) if e.mark]
    table = dagster.defs.resources["lake"].table(names.name)
    mark = high_water_mark(table)[0] if table is not None else None
    if mark:
        reached.append(instant(mark))
    # A minute of room: the sample is loaded just before the full export.
    return float(math.ceil((max(reached) + 60) / WINDOW_SECONDS) * WINDOW_SECONDS)


def _validate(dagster: Any, export_id: str) -> None:
    """The export completion sensor's tick, then raw_export of the export it found, as the daemon
    would run them."""
    found = dagster.completion_sensor_tick()
    if export_id not in found:
        raise RuntimeError(f"the export completion sensor did not pick up export {export_id} (found: "
                           f"{', '.join(found) or 'none'})")
    for each in found:
        dagster.validate(each)


def _new_columns(schema_changes: list[str]) -> list[str]:
    """The columns a commit added, from its schema changes (``added <column> (<type>) for ...``)."""
    return [change.split()[1] for change in schema_changes if change.startswith("added ")]


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
