"""Incremental exports staged by their validation and merged from the staged files (lake/staging.py):
windows staged before the ones ahead of them are applied end as a fresh full export says, a staged
window committed twice changes nothing, and one that cannot be committed as staged goes stale (the
caller reads it again) rather than committing wrong data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ddb_assets.lake.catalog import CatalogConfig
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.guards import ChainError
from ddb_assets.lake.staging import NotStaged, StagingStale, commit_staged, load_staged, stage_export
from ddb_assets.exports.storage import resolve
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import wait_done
from ddb_assets_tests.test_incremental_merge import WINDOW, Chain
from ddb_assets_tests.test_incremental_merge import clock  # noqa: F401 - the fixture


def _window(chain: Chain, start: float, end: float) -> str:
    """Export the window [start, end) (the clock is past its end); the manifest's URI."""
    spec = {"ExportFromTime": start, "ExportToTime": end, "ExportViewType": chain.view}
    started = chain.ddb.export_table_to_point_in_time(
        TableArn=chain.arn, S3Bucket=chain.bucket, S3Prefix="incremental", ExportFormat=chain.export_format,
        ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification=spec)["ExportDescription"]
    done = wait_done(chain.ddb, started["ExportArn"])
    assert done["ExportStatus"] == "COMPLETED", done
    return chain._source(done)


def _options(**options: Any) -> ConvertOptions:
    return ConvertOptions(workers=1, partition_by="year", catalog=CatalogConfig(), **options)


def _stage(chain: Chain, source: str, **options: Any) -> Any:
    with chain.world.environment():
        return stage_export(source, str(chain.lake / "t"), _options(**options))


def _commit_or_convert(chain: Chain, staged: Any, source: str, **options: Any) -> Any:
    """What the lake table's run does: commit the staged files, else read the export again."""
    with chain.world.environment():
        try:
            return commit_staged(staged, str(chain.lake / "t"), _options(**options))
        except StagingStale as stale:
            result = convert_export(source, str(chain.lake / "t"), _options(**options))
            result.warnings.append(str(stale))
            return result


def test_windows_staged_before_any_is_committed_end_as_a_fresh_full_export(world: LocalWorld, clock: WorldClock,
                                                                          tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    for i in range(6):
        chain.put(f"k{i}", i, year={"N": str(2015 + i % 2)}, v={"S": f"first {i}"})
    chain.full()
    start = chain.mark
    # Window 1: an update, a delete, a partition move. Window 2: a new attribute (the schema
    # evolves when it is applied). Window 3: without the attribute, a change to a row of the file
    # window 2 wrote (merged as planned before `late` existed, that file's rewrite would drop it).
    clock.advance(10)
    chain.put("k0", 0, year={"N": "2015"}, v={"S": "updated in 1"})
    chain.delete("k1", 1)
    chain.put("k2", 2, year={"N": "2020"}, v={"S": "moved in 1"})
    clock.set(start + WINDOW + 10, frozen=True)
    chain.put("k3", 3, year={"N": "2016"}, v={"S": "in 2"}, late={"BOOL": True})
    chain.put("k5", 5, year={"N": "2016"}, late={"BOOL": False})
    clock.set(start + 2 * WINDOW + 10, frozen=True)
    chain.put("k3", 3, year={"N": "2016"}, v={"S": "in 3"})
    chain.delete("k4", 4)
    clock.set(start + 3 * WINDOW + 1, frozen=True)
    sources = [_window(chain, start + i * WINDOW, start + (i + 1) * WINDOW) for i in range(3)]

    # A backlog validated window after window before the table's run: each is staged, the later
    # ones ahead of the table's mark (their merge checks the chain when committed).
    staged = [_stage(chain, source) for source in sources]
    assert all(s.record is not None and s.incremental for s in staged)
    assert [s.rows for s in staged] == [2, 2, 1]  # the upserts' new images
    assert [s.profile.items - s.skipped for s in staged] == [3, 2, 2]  # every change's keys

    with pytest.raises(ChainError, match="are missing"):  # window 2 before window 1: refused, kept
        _commit_or_convert(chain, staged[1], sources[1])
    assert load_staged(resolve(str(chain.lake / "t")), staged[1].export_id) is not None

    results = [_commit_or_convert(chain, s, source) for s, source in zip(staged, sources)]
    # Windows 1 and 2 merged from their staged files; window 3 was planned against the schema
    # before window 2 added `late`: stale, read again (never committed without the column).
    assert [r.staged for r in results] == [True, True, False]
    assert "schema has changed" in results[2].warnings[-1]
    assert [(r.merge.upserts, r.merge.deletes) for r in results] == [(2, 1), (2, 0), (1, 1)]
    assert [c.name for c in results[1].plan.added] == ["late"]
    check = chain.full("t_check", at=start + 3 * WINDOW)
    assert chain.items("t") == chain.items("t_check")
    assert check.commit.rows == 4
    assert [(i["pk"], i.get("late")) for i in chain.items("t") if i["pk"] in ("k3", "k5")] == \
        [("k3", None), ("k5", False)]
    assert not (chain.lake / "t" / "_staged").exists()  # records and change keys gone, and the folder


def test_a_staged_window_committed_twice_changes_nothing(world: LocalWorld, clock: WorldClock,
                                                         tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "ION", "NEW_IMAGE")
    chain.put("a", 1, year={"N": "2015"})
    chain.put("b", 1, year={"N": "2016"})
    chain.full()
    start = chain.mark
    clock.advance(30)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "new"})
    chain.delete("b", 1)
    clock.set(start + WINDOW + 1, frozen=True)
    source = _window(chain, start, start + WINDOW)
    staged = _stage(chain, source)
    keys = chain.lake / "t" / "_staged" / f"{staged.export_id}.keys.parquet"
    assert keys.is_file()

    first = _commit_or_convert(chain, staged, source)
    assert first.staged and first.merge.upserts == 1 and first.merge.deletes == 1
    assert not keys.exists()
    second = _commit_or_convert(chain, staged, source)
    assert second.unchanged and second.merge is None
    assert second.commit.snapshot_id == first.commit.snapshot_id
    # The staged files are the table's now: the second commit left them where they are.
    assert all(Path(w.path).is_file() for w in staged.written)
    assert [(i["pk"], i.get("v")) for i in chain.items("t")] == [("a", "new")]
    with pytest.raises(NotStaged, match="holds export"):  # validated again: nothing to stage
        _stage(chain, source)


def test_an_overlapping_window_staged_before_the_mark_moved_is_read_again(world: LocalWorld, clock: WorldClock,
                                                                          tmp_path: Path) -> None:
    chain = Chain(world, clock, tmp_path, "DYNAMODB_JSON", "NEW_AND_OLD_IMAGES")
    chain.put("a", 1, year={"N": "2015"}, v={"S": "full"})
    chain.full()
    start = chain.mark
    clock.advance(30)
    chain.put("a", 1, year={"N": "2015"}, v={"S": "early"})  # in both windows
    clock.set(start + WINDOW + 30, frozen=True)
    chain.put("b", 1, year={"N": "2016"})
    clock.set(start + 2 * WINDOW, frozen=True)
    first = _window(chain, start, start + WINDOW)
    overlapping = _window(chain, start + 10, start + WINDOW + 60)
    staged = [_stage(chain, s, allow_overlap=True) for s in (first, overlapping)]
    assert staged[1].skip_before_micros == int(start * 1_000_000) and staged[1].skipped == 0

    assert _commit_or_convert(chain, staged[0], first, allow_overlap=True).staged
    # Applied now, the overlap skips the change to `a` written before the mark (window 1 applied
    # it): the staged files hold it, so they go stale and the window is read again.
    again = _commit_or_convert(chain, staged[1], overlapping, allow_overlap=True)
    assert not again.staged and "written before the table's mark now" in again.warnings[-1]
    assert again.merge.upserts == 1
    assert [(i["pk"], i.get("v")) for i in chain.items("t")] == [("a", "early"), ("b", None)]
