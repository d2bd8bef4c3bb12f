"""The change history table (``<table>_changes``): one row per change of each incremental export
applied with the history on, appended once, caught up after a failure, read back by DuckDB."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from ddb_assets.exports.storage import resolve
from ddb_assets.lake.catalog import CatalogConfig, open_catalog
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.test_incremental_merge import WINDOW, Chain, clock  # noqa: F401 - the fixture

COLUMNS = ["pk", "sk", "operation", "write_time", "export_id", "new_year", "new_v", "old_year", "old_v"]


def history_rows(chain: Chain, table: str = "t") -> list[dict[str, Any]]:
    """The history table's rows as pyiceberg reads them (by field id), ordered by write time."""
    catalog = open_catalog(CatalogConfig(), resolve(str(chain.lake)))
    rows = catalog.load_table(("ddb_lake", f"{table}_changes")).scan().to_arrow().to_pylist()
    return sorted(rows, key=lambda r: (r["write_time"], r["pk"]))


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(round(epoch * 1_000_000) / 1_000_000, timezone.utc)


def pick(row: dict[str, Any], columns: list[str] = COLUMNS) -> tuple:
    return tuple(row.get(c) for c in columns)


def test_history_holds_each_change_of_each_window_once(world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.put("b", 1, year={"N": "2015"}, v={"S": "b0"})
    chain.full()
    start = chain.mark
    clock.advance(10)
    chain.put("a", 1, year={"N": "2016"}, v={"S": "a1"})  # a modify that moves partition
    t_a = clock.now()
    clock.advance(10)
    chain.put("c", 2, year={"N": "2017"}, v={"S": "c1"})  # an insert
    t_c = clock.now()
    clock.advance(10)
    chain.delete("b", 1)  # a remove
    t_b = clock.now()
    clock.set(start + WINDOW + 1, frozen=True)
    first = chain.incremental(start, start + WINDOW, history=True)
    assert first.history_error is None and first.history is not None
    one = first.export.export_id
    assert first.history.appended == [(one, 3)]
    assert [pick(r) for r in history_rows(chain)] == [
        ("a", 1, "MODIFY", at(t_a), one, 2016, "a1", 2015, "a0"),
        ("c", 2, "INSERT", at(t_c), one, 2017, "c1", None, None),
        ("b", 1, "REMOVE", at(t_b), one, None, None, 2015, "b0")]
    row = history_rows(chain)[0]
    assert row["export_arn"] == first.export.summary.export_arn
    assert row["export_to_time"] == at(start + WINDOW)

    # The second window brings an attribute the table never had: a column of the table, and
    # new_/old_ columns of the history.
    clock.advance(30)
    chain.put("c", 2, year={"N": "2017"}, v={"S": "c2"}, late={"N": "1.5"})
    t_c2 = clock.now()
    clock.set(start + 2 * WINDOW + 1, frozen=True)
    second = chain.incremental(start + WINDOW, start + 2 * WINDOW, history=True)
    two = second.export.export_id
    assert second.history.appended == [(two, 1)]
    rows = history_rows(chain)
    assert len(rows) == 4
    assert pick(rows[-1], COLUMNS + ["new_late", "old_late"]) == \
        ("c", 2, "MODIFY", at(t_c2), two, 2017, "c2", 2017, "c1", Decimal("1.5"), None)
    assert [r["new_late"] for r in rows[:3]] == [None, None, None]

    # Applying the first export again changes neither the table nor its history.
    history_snapshots = len(second.history.table.snapshots())
    again = chain.convert(first.export.folder.uri, "t", history=True)
    assert again.unchanged and again.merge is None and again.history.appended == []  # known before reading
    assert len(history_rows(chain)) == 4
    catalog = open_catalog(CatalogConfig(), resolve(str(chain.lake)))
    assert len(catalog.load_table(("ddb_lake", "t_changes")).snapshots()) == history_snapshots

    # DuckDB reads it through the CLI, with the table's other views.
    out = run_cli("query", "SELECT pk, operation, new_v, old_v, new_late FROM t_changes ORDER BY write_time",
                  "--lake", str(chain.lake), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        {"pk": "a", "operation": "MODIFY", "new_v": "a1", "old_v": "a0", "new_late": None},
        {"pk": "c", "operation": "INSERT", "new_v": "c1", "old_v": None, "new_late": None},
        {"pk": "b", "operation": "REMOVE", "new_v": None, "old_v": "b0", "new_late": None},
        {"pk": "c", "operation": "MODIFY", "new_v": "c2", "old_v": "c1", "new_late": "1.5"}]
    # The README's SCD type 2 query: each version with the time it was valid from and to.
    scd = run_cli("query", """SELECT pk, v, valid_from, valid_to FROM (
                   SELECT pk, sk, operation, new_v AS v, write_time AS valid_from,
                          lead(write_time) OVER (PARTITION BY pk, sk ORDER BY write_time) AS valid_to
                   FROM t_changes) AS versions
                 WHERE operation <> 'REMOVE' ORDER BY pk, sk, valid_from""",
                  "--lake", str(chain.lake), "--format", "json")
    assert scd.returncode == 0, scd.stderr
    iso = lambda t: at(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")  # noqa: E731
    assert [tuple(json.loads(line).values()) for line in scd.stdout.splitlines()] == [
        ("a", "a1", iso(t_a), None), ("c", "c1", iso(t_c), iso(t_c2)), ("c", "c2", iso(t_c2), None)]
    listed = run_cli("tables", "--lake", str(chain.lake), "--format", "json")
    assert [t["identifier"] for t in json.loads(listed.stdout)["tables"]] == ["ddb_lake.t", "ddb_lake.t_changes"]


def test_new_image_view_says_upsert_and_has_no_old_image(world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "ION", "NEW_IMAGE")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.full()
    start = chain.mark
    clock.advance(5)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a1"})  # then deleted: only the final state is exported
    clock.advance(5)
    chain.put("n", 3, year={"N": "2018"}, v={"S": "n1"})
    t_n = clock.now()
    clock.advance(5)
    chain.delete("a", 1)  # after the update: the window's final state is a delete
    t_gone = clock.now()
    clock.set(start + WINDOW + 1, frozen=True)
    result = chain.incremental(start, start + WINDOW, history=True)
    one = result.export.export_id
    assert [pick(r) for r in history_rows(chain)] == [
        ("n", 3, "UPSERT", at(t_n), one, 2018, "n1", None, None),
        ("a", 1, "REMOVE", at(t_gone), one, None, None, None, None)]


def test_a_failed_history_append_is_caught_up_by_the_next_run(world: LocalWorld, clock: WorldClock,
                                                              tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.full()
    start = chain.mark
    ends = [start + WINDOW * (n + 1) for n in range(3)]
    exports = []
    for n, end in enumerate(ends):
        clock.set(end - WINDOW + 10, frozen=True)
        chain.put("a", 1, year={"N": "2015"}, v={"S": f"a{n + 1}"})
        clock.set(end + 1, frozen=True)
        # The second window's history is not appended (its run had the history off, as when the
        # append failed after the merge committed).
        result = chain.incremental(end - WINDOW, end, history=n != 1)
        assert result.history_error is None
        exports.append(result.export.export_id)
    assert result.history.appended == [(exports[1], 1), (exports[2], 1)]
    assert [(r["export_id"], r["old_v"], r["new_v"]) for r in history_rows(chain)] == [
        (exports[0], "a0", "a1"), (exports[1], "a1", "a2"), (exports[2], "a2", "a3")]
    # A window without changes is recorded too (the history's mark moves on), with no rows.
    clock.set(ends[-1] + WINDOW + 1, frozen=True)
    empty = chain.incremental(ends[-1], ends[-1] + WINDOW, history=True)
    assert empty.history.appended == [(empty.export.export_id, 0)]
    assert len(history_rows(chain)) == 3


def test_a_history_that_cannot_be_appended_leaves_the_merge_committed(world: LocalWorld, clock: WorldClock,
                                                                      tmp_path: Path) -> None:
    import pyarrow as pa

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.full()
    catalog = open_catalog(CatalogConfig(), resolve(str(chain.lake)))
    catalog.create_table(("ddb_lake", "t_changes"), schema=pa.schema([pa.field("x", pa.string())]),
                         location=str(tmp_path / "lake" / "t_changes"))  # someone else's table of that name
    start = chain.mark
    clock.advance(5)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a1"})
    clock.set(start + WINDOW + 1, frozen=True)
    result = chain.incremental(start, start + WINDOW, history=True)
    assert result.merge.commit is not None and result.history is None
    assert "t_changes exists and is not the change history of t" in result.history_error
    assert [i["v"] for i in chain.items("t")] == ["a1"]


def test_convert_history_flag(world: LocalWorld, clock: WorldClock, tmp_path: Path, aws_env: dict[str, str]) -> None:
    from ddb_assets_tests.conftest import wait_done

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.full()
    start = chain.mark
    clock.advance(5)
    chain.put("b", 2, year={"N": "2016"}, v={"S": "b1"})
    clock.set(start + WINDOW + 1, frozen=True)
    spec = {"ExportFromTime": start, "ExportToTime": start + WINDOW, "ExportViewType": "NEW_AND_OLD_IMAGES"}
    done = wait_done(chain.ddb, chain.ddb.export_table_to_point_in_time(
        TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix="inc", ExportType="INCREMENTAL_EXPORT",
        IncrementalExportSpecification=spec)["ExportDescription"]["ExportArn"])
    merged = run_cli("convert", chain._source(done), str(chain.lake / "t"), "--history", env=aws_env)
    assert merged.returncode == 0, merged.stderr
    export_id = done["ExportArn"].rsplit("/", 1)[-1]
    assert f"history        ddb_lake.t_changes: appended 1 change of export {export_id}" in merged.stdout
    again = run_cli("convert", chain._source(done), str(chain.lake / "t"), "--history", env=aws_env)
    assert again.returncode == 0, again.stderr
    assert "ddb_lake.t_changes: holds this export already" in again.stdout
    assert [(r["pk"], r["operation"], r["new_v"]) for r in history_rows(chain)] == [("b", "INSERT", "b1")]
    # A full export with --history: nothing to append, and it says so (not silence).
    full_source = chain.full("u").export.folder.uri  # a full export (converted into another table)
    into_new = run_cli("convert", full_source, str(chain.lake / "v"), "--history", env=aws_env)
    assert into_new.returncode == 0, into_new.stderr
    [line] = [line for line in into_new.stdout.splitlines() if line.startswith("history ")]
    assert line.split(None, 1)[1] == ("ddb_lake.v_changes: a full export adds no changes (the history starts with "
                                      "the next incremental export merged)")


def test_after_a_rollback_the_history_holds_each_application_the_table_holds_once(
        world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    """The history follows the table's chain: an export re-applied after a rollback is in it once
    (the rolled-back application's rows stay in the history's earlier snapshots)."""
    from ddb_assets.lake.tables import rollback

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    full = chain.full()
    start = chain.mark
    clock.advance(10)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a1"})
    clock.set(start + WINDOW + 1, frozen=True)
    first = chain.incremental(start, start + WINDOW, history=True)
    one = first.export.export_id
    clock.set(start + 2 * WINDOW - 100, frozen=True)
    chain.put("b", 2, year={"N": "2016"}, v={"S": "b1"})
    clock.set(start + 2 * WINDOW + 1, frozen=True)
    second = chain.incremental(start + WINDOW, start + 2 * WINDOW, history=True)
    two = second.export.export_id
    assert [(r["export_id"], r["pk"]) for r in history_rows(chain)] == [(one, "a"), (two, "b")]
    catalog = open_catalog(CatalogConfig(), resolve(str(chain.lake)))

    # Back to the full export, then both exports again: each is in the history once.
    rollback(catalog.load_table(("ddb_lake", "t")), full.commit.snapshot_id)
    again = chain.convert(first.export.folder.uri, "t", history=True)
    assert again.merge is not None and again.history_error is None
    assert again.history.appended == [(one, 1)]
    assert [(r["export_id"], r["pk"], r["old_v"], r["new_v"]) for r in history_rows(chain)] == [
        (one, "a", "a0", "a1")]
    again = chain.convert(second.export.folder.uri, "t", history=True)
    assert again.history.appended == [(two, 1)]
    assert [(r["export_id"], r["pk"]) for r in history_rows(chain)] == [(one, "a"), (two, "b")]

    # Back to the first export: the next append (here a catch-up with nothing new) drops the second
    # export's rows from the history's current snapshot; re-applied, it is there once again.
    table = catalog.load_table(("ddb_lake", "t"))
    rollback(table, table.current_snapshot().parent_snapshot_id)
    again = chain.convert(second.export.folder.uri, "t", history=True)
    assert again.merge is not None and again.history.appended == [(two, 1)]
    assert [(r["export_id"], r["pk"]) for r in history_rows(chain)] == [(one, "a"), (two, "b")]
    # Nothing is lost for audits: the history's first snapshot still holds the first application.
    history = catalog.load_table(("ddb_lake", "t_changes"))
    first_snapshot = history.snapshots()[0].snapshot_id
    assert [r["export_id"] for r in history.scan(snapshot_id=first_snapshot).to_arrow().to_pylist()] == [one]


def test_a_compaction_between_windows_appends_nothing_to_the_history(world: LocalWorld, clock: WorldClock,
                                                                    tmp_path: Path) -> None:
    """A compaction's snapshot carries the export record along: it applied nothing, so the history's
    catch-up does not append that export a second time, and "applied already" names the merge."""
    from ddb_assets.lake.catalog import load_table
    from ddb_assets.lake.maintenance import MaintenanceOptions, maintain

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    for sk in range(4):
        chain.put("a", sk, year={"N": "2015"}, v={"S": "x"})
    chain.full()
    start = chain.mark
    exports, merged_by = [], []
    for n in range(3):
        clock.set(start + n * WINDOW + 10, frozen=True)
        chain.put("a", n, year={"N": "2015"}, v={"S": f"v{n}"})
        clock.set(start + (n + 1) * WINDOW + 1, frozen=True)
        # The second window is merged with the history off (the catch-up appends it), by merge-on-read,
        # then compacted: the compaction's snapshot records that export too.
        result = chain.incremental(start + n * WINDOW, start + (n + 1) * WINDOW, history=n != 1,
                                   merge_mode="merge-on-read" if n == 1 else None)
        exports.append(result.export)
        merged_by.append(result.commit.snapshot_id)
        if n == 1:
            table = load_table(open_catalog(CatalogConfig(), resolve(str(chain.lake))), "ddb_lake", "t")
            assert maintain(table, MaintenanceOptions(small_file_bytes=1 << 30)).compacted
    assert result.history.appended == [(exports[1].export_id, 1), (exports[2].export_id, 1)]
    assert [(r["export_id"], r["old_v"], r["new_v"]) for r in history_rows(chain)] == [
        (exports[0].export_id, "x", "v0"), (exports[1].export_id, "x", "v1"), (exports[2].export_id, "x", "v2")]
    history = load_table(open_catalog(CatalogConfig(), resolve(str(chain.lake))), "ddb_lake", "t_changes")
    assert len(history.snapshots()) == 3  # one per window, none for the compaction

    again = run_cli("convert", exports[1].folder.uri, str(chain.lake / "t"), "--partition-by", "year",
                    env=world.env())
    assert again.returncode == 0, again.stderr
    assert f"was applied already (snapshot {merged_by[1]})" in again.stdout


def _windows(chain: Chain, clock: WorldClock, numbers: range, per_window: int, *, history: bool = True) -> list[Any]:
    """Windows ``numbers`` after the table's full export (window n: [mark + n WINDOW, mark + (n+1)
    WINDOW)), each inserting ``per_window`` items (keys w<n>-<i>), merged with ``history`` on or off."""
    start, results = chain.mark, []
    for n in numbers:
        clock.set(start + n * WINDOW + 10, frozen=True)
        for i in range(per_window):
            chain.put(f"w{n}-{i}", i, year={"N": str(2015 + i % 2)}, v={"S": f"v{n}"})
        clock.set(start + (n + 1) * WINDOW + 1, frozen=True)
        results.append(chain.incremental(start + n * WINDOW, start + (n + 1) * WINDOW, history=history))
    return results


def _history_exports(chain: Chain) -> dict[str, int]:
    """Rows of the history's current snapshot per export, in write order."""
    rows = history_rows(chain)
    return {export_id: sum(1 for r in rows if r["export_id"] == export_id) for export_id in
            dict.fromkeys(r["export_id"] for r in rows)}


def _maintain_expiring_all_but_one(chain: Chain, world: LocalWorld) -> None:
    maintained = run_cli("maintain", "t", "--lake", str(chain.lake), "--expire-after-days", "0", "--keep-snapshots",
                         "1", "--grace-hours", "0", env=world.env())
    assert maintained.returncode == 0, maintained.stderr


def test_expiring_the_merges_under_a_compaction_keeps_their_history(world: LocalWorld, clock: WorldClock,
                                                                   tmp_path: Path) -> None:
    """A user's repro: W1 merged, W2 merged with the history on, then `maintain` compacts and expires
    W2's merge; W3 with the history on. The table still holds W2 (its compaction records it): the
    history keeps W2's rows and adds W3's, and its own snapshots say what they are."""
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.full()
    [_] = _windows(chain, clock, range(0, 1), 4, history=False)
    [second] = _windows(chain, clock, range(1, 2), 5)
    assert _history_exports(chain) == {second.export.export_id: 5}
    _maintain_expiring_all_but_one(chain, world)
    table = open_catalog(CatalogConfig(), resolve(str(chain.lake))).load_table(("ddb_lake", "t"))
    [compaction] = table.snapshots()  # W2's merge (and everything under it) expired
    assert compaction.summary.additional_properties["ddb-assets.export-id"] == second.export.export_id

    [third] = _windows(chain, clock, range(2, 3), 3)
    assert third.history_error is None and third.history.appended == [(third.export.export_id, 3)]
    assert _history_exports(chain) == {second.export.export_id: 5, third.export.export_id: 3}

    shown = run_cli("history", "t_changes", "--lake", str(chain.lake), env=world.env())
    assert shown.returncode == 0, shown.stderr
    actions = [line.split()[2:4] for line in shown.stdout.splitlines()[2:]]
    assert actions == [["history", "append"], ["history", "append"]], shown.stdout


def test_a_rollback_to_a_compaction_whose_merges_expired_drops_only_the_later_windows(
        world: LocalWorld, clock: WorldClock, tmp_path: Path) -> None:
    """W1 and W2 with the history on, compacted and expired, then W3; the table rolled back to the
    compaction (its parents gone) and W3 applied again: the history holds W1 and W2 (the compaction
    holds them) and W3 once, as applied again."""
    from ddb_assets.lake.tables import rollback

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.full()
    first, second = _windows(chain, clock, range(0, 2), 2)
    _maintain_expiring_all_but_one(chain, world)
    catalog = open_catalog(CatalogConfig(), resolve(str(chain.lake)))
    [compaction] = catalog.load_table(("ddb_lake", "t")).snapshots()
    [third] = _windows(chain, clock, range(2, 3), 3)
    one, two, three = (r.export.export_id for r in (first, second, third))
    assert _history_exports(chain) == {one: 2, two: 2, three: 3}

    rollback(catalog.load_table(("ddb_lake", "t")), compaction.snapshot_id)
    again = chain.convert(third.export.folder.uri, "t", history=True)
    assert again.merge is not None and again.history_error is None
    assert again.history.appended == [(three, 3)]
    assert _history_exports(chain) == {one: 2, two: 2, three: 3}
    history = catalog.load_table(("ddb_lake", "t_changes"))
    assert len(history.snapshots()) == 4  # W3's first application stays readable (time travel)


def test_maintain_compacts_a_change_history_keeping_its_rows(world: LocalWorld, clock: WorldClock,
                                                            tmp_path: Path) -> None:
    """A history table has no column mapping (one Arrow schema, unpartitioned): `maintain` compacts
    its one small file per window into one, every row kept, then expires and sweeps as for any table."""
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    chain.full()
    first, second, third = _windows(chain, clock, range(0, 3), 3)
    before = sorted((r["export_id"], r["pk"], r["sk"], r["operation"]) for r in history_rows(chain))
    assert len(before) == 9
    catalog = open_catalog(CatalogConfig(), resolve(str(chain.lake)))
    files = catalog.load_table(("ddb_lake", "t_changes")).inspect.files().num_rows
    assert files == 3

    maintained = run_cli("maintain", "t_changes", "--lake", str(chain.lake), "--expire-after-days", "0",
                         "--keep-snapshots", "1", "--grace-hours", "0", env=world.env())
    assert maintained.returncode == 0, maintained.stderr
    assert "compacted  1 partition rewritten (3 files into 1)" in maintained.stdout, maintained.stdout
    history = catalog.load_table(("ddb_lake", "t_changes"))
    assert history.inspect.files().num_rows == 1
    assert sorted((r["export_id"], r["pk"], r["sk"], r["operation"]) for r in history_rows(chain)) == before
    [fourth] = _windows(chain, clock, range(3, 4), 2)  # the history goes on after its compaction
    assert fourth.history_error is None and fourth.history.appended == [(fourth.export.export_id, 2)]
    assert len(history_rows(chain)) == 11


def test_a_window_before_the_history_began_is_not_appended_and_says_why(world: LocalWorld, clock: WorldClock,
                                                                        tmp_path: Path) -> None:
    """The history is turned on at the second window; the table is rolled back to its full export
    and the first window applied again with the history on: not appended (the history records the
    windows from its first one on), and the result says so instead of "holds this export already"."""
    from ddb_assets.cli import _history_lines
    from ddb_assets.lake.tables import rollback

    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a0"})
    full = chain.full()
    start = chain.mark
    clock.advance(5)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "a1"})
    clock.set(start + WINDOW + 1, frozen=True)
    chain.incremental(start, start + WINDOW)  # no history yet
    clock.advance(5)
    chain.put("b", 2, year={"N": "2016"}, v={"S": "b1"})
    clock.set(start + 2 * WINDOW + 1, frozen=True)
    second = chain.incremental(start + WINDOW, start + 2 * WINDOW, history=True)
    assert [export_id for export_id, _ in second.history.appended] == [second.export.export_id]

    catalog = open_catalog(CatalogConfig(), resolve(str(chain.lake)))
    rollback(catalog.load_table(("ddb_lake", "t")), full.commit.snapshot_id)
    again = chain.incremental(start, start + WINDOW, history=True)

    assert again.merge.commit is not None and again.history.appended == []
    assert again.history.began_after == second.export.summary.export_from_time
    [(_, said)] = _history_lines(again)
    assert said == (f"ddb_lake.t_changes: not appended: the history records the windows from "
                    f"{second.export.summary.export_from_time} on (when it was turned on), and this one ends before that")
