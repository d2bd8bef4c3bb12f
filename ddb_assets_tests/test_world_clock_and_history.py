"""The local world's clock (in process, over HTTP, from another process) and the write history
that PITR exports replay, pruned as the PITR window moves."""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ddb_assets.local.clock import ClockClient, WorldClock
from ddb_assets.local.history import WriteHistory
from ddb_assets.local.world import ACCOUNT_ID, CREDENTIALS, LocalWorld
from ddb_assets_tests.conftest import make_table, wait_done
from ddb_assets_tests.independent_reader import read_export

DAY = 86400


# -- the clock ----------------------------------------------------------------------------------


def test_a_new_clock_is_real_time_and_moves_only_forward() -> None:
    clock = WorldClock()
    assert abs(clock.now() - time.time()) < 0.5 and not clock.frozen
    ahead = clock.advance(3600)
    assert abs(ahead - (time.time() + 3600)) < 0.5
    time.sleep(0.02)
    assert clock.now() > ahead  # still flowing
    target = math.ceil(clock.now()) + 10_000
    assert clock.set(target, frozen=True) == target and clock.frozen
    time.sleep(0.02)
    assert clock.now() == target  # standing still
    assert clock.advance(15 * 60) == target + 900 and clock.frozen
    assert clock.datetime() == datetime.fromtimestamp(target + 900, timezone.utc)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(target)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    flowing = clock.set(target + 2000)
    assert not clock.frozen and abs(flowing - (target + 2000)) < 0.5
    # Real time again, but never backwards: a clock ahead keeps its lead and flows from there...
    ahead = clock.real_time()
    assert ahead >= flowing and not clock.frozen and clock.state()["offset"] > 10_000
    time.sleep(0.02)
    assert clock.now() > ahead
    # ...and a frozen one that fell behind the wall clock joins it.
    behind = WorldClock()
    behind.advance(0, frozen=True)
    time.sleep(0.05)
    assert behind.state()["offset"] < -0.04
    assert abs(behind.real_time() - time.time()) < 0.01 and abs(behind.state()["offset"]) < 0.01
    # reset() is a fresh world's clock: the wall clock, even if that is a step back (the end of a test).
    back = clock.reset()
    assert abs(back - time.time()) < 0.5 and not clock.frozen and abs(clock.state()["offset"]) < 0.5


@pytest.mark.parametrize("frozen", [None, True, False])
def test_advance_keeps_or_sets_the_clock_standing(frozen: bool | None) -> None:
    clock = WorldClock()
    clock.set(math.ceil(clock.now()) + 100, frozen=True)
    start = clock.now()
    assert clock.advance(60, frozen=frozen) == start + 60 or frozen is False
    assert clock.frozen == (frozen is not False)
    assert clock.now() >= start + 60
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(float("inf"))
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(float("nan"))


def test_the_world_clock_is_driven_over_http(world: LocalWorld, clock: WorldClock) -> None:
    remote = ClockClient(world.endpoint)
    state = remote.state()
    assert {k: state[k] for k in ("now", "iso", "frozen")} == {k: clock.state()[k] for k in ("now", "iso", "frozen")}
    now = remote.now()
    assert remote.advance(900) == now + 900 == clock.now() and remote.frozen
    assert remote.set(now + 2 * DAY, frozen=True) == clock.now() == now + 2 * DAY
    with pytest.raises(ValueError, match="only moves forward"):
        remote.set(now)
    with pytest.raises(ValueError, match="must be a number"):
        remote.advance("soon")  # type: ignore[arg-type]
    remote.real_time()  # the clock is two days ahead: it flows on from there, never back
    assert not clock.frozen and clock.now() >= now + 2 * DAY
    assert remote.advance(0, frozen=True) == clock.now() and clock.frozen  # freeze at the present, in one step


def test_exports_take_their_times_from_the_clock(ddb: Any, s3: Any, bucket: str, clock: WorldClock) -> None:
    name, arn = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    clock.advance(10 * DAY)  # far ahead of the wall clock: ExportTime "now" is the clock's now
    moment = clock.now()
    started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="c",
                                                ExportTime=datetime.fromtimestamp(moment, timezone.utc))
    description = started["ExportDescription"]
    assert description["StartTime"].timestamp() == moment
    assert int(description["ExportArn"].rsplit("/", 1)[1][:14]) == moment * 1000
    done = wait_done(ddb, description["ExportArn"])
    assert done["ExportStatus"] == "COMPLETED" and done["EndTime"].timestamp() == moment  # the clock stood still
    summary = read_export(s3, bucket, done["ExportManifest"]).summary
    expected = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert summary["startTime"] == summary["endTime"] == summary["exportTime"] == expected
    with pytest.raises(ClientError) as raised:  # a second past the clock is the future
        ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket,
                                          ExportTime=datetime.fromtimestamp(moment + 1, timezone.utc))
    assert raised.value.response["Error"]["Code"] == "InvalidExportTimeException"


def test_another_process_drives_a_served_world(tmp_path: Any) -> None:
    # The shape of `dagster dev` against `ddb-assets emulator`: the world in one process, the
    # code moving its clock and calling AWS in another.
    serve = ("import sys; from ddb_assets.local.world import LocalWorld; world = LocalWorld().start(); "
             "print(world.endpoint, flush=True); sys.stdin.read(); world.stop()")
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with subprocess.Popen([sys.executable, "-c", serve], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env=env) as server:
        try:
            endpoint = server.stdout.readline().strip()  # type: ignore[union-attr]
            remote = ClockClient(endpoint)
            ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                               aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                               aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="far-away")
            start = remote.set(math.ceil(remote.now()) + 5, frozen=True)
            name, arn = make_table(ddb)
            ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
            remote.advance(20 * 60)
            started = ddb.export_table_to_point_in_time(
                TableArn=arn, S3Bucket="far-away", ExportType="INCREMENTAL_EXPORT",
                IncrementalExportSpecification={"ExportFromTime": start})["ExportDescription"]
            assert started["IncrementalExportSpecification"]["ExportToTime"].timestamp() == start + 20 * 60
            assert wait_done(ddb, started["ExportArn"])["ItemCount"] == 1
            # A moto reset is a fresh world: real time again.
            import requests

            requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
            assert not remote.frozen and abs(remote.now() - time.time()) < 1
        finally:
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(timeout=30)


# -- the write history --------------------------------------------------------------------------


def _item(key: str, value: int) -> dict[str, Any]:
    return {"pk": {"S": key}, "v": {"N": str(value)}}


def test_history_answers_instants_and_windows_at_their_bounds() -> None:
    history = WriteHistory()
    history.record(10, "a", _item("a", 1))
    history.record(20, "a", _item("a", 2))
    history.record(20, "b", _item("b", 1))
    history.record(30, "b", None)
    assert history.items_at(19.999) == [_item("a", 1)]
    assert history.items_at(20) == [_item("a", 2), _item("b", 1)]  # writes at the instant count
    assert history.items_at(30) == [_item("a", 2)]
    changes = {c.key: c for c in history.changes(20, 30)}  # from inclusive, to exclusive
    assert set(changes) == {"a", "b"} and changes["a"].old == _item("a", 1) and changes["a"].kind == "update"
    assert changes["b"].kind == "insert" and changes["b"].last_write_at == 20
    assert [c.key for c in history.changes(20, 31)] == ["a"]  # b inserted and deleted inside: gone
    assert history.record(5, "c", None).at == 30  # a clock put back cannot reorder history


def test_pruning_keeps_the_state_at_the_window_start_and_everything_after() -> None:
    history = WriteHistory()
    history.record(1, "kept", _item("kept", 1))
    history.record(2, "kept", _item("kept", 2))
    history.record(3, "gone", _item("gone", 1))
    history.record(4, "gone", None)
    history.record(5, "late", _item("late", 1))
    history.record(10, "late", _item("late", 2))
    history.record(11, "kept", _item("kept", 3))
    before = (history.items_at(10), history.changes(10, 20))
    assert history.prune(10) == 5 and len(history) == 4  # base: kept@2, late@1; writes: late@10, kept@11
    assert history.base == {"kept": _item("kept", 2), "late": _item("late", 1)} and history.base_time == 10
    assert (history.items_at(10), history.changes(10, 20)) == before
    assert history.prune(8) == 0 and history.base_time == 10  # what was pruned stays pruned
    with pytest.raises(ValueError, match="pruned"):
        history.items_at(9)
    with pytest.raises(ValueError, match="pruned"):
        history.changes(9.5, 20)


def test_pruned_history_answers_like_the_whole_one() -> None:
    rng = random.Random(11)
    whole, pruned = WriteHistory(), WriteHistory()
    at = 0.0
    for step in range(600):
        at += rng.choice([0, 0.5, 1, 3])
        key = f"k{rng.randrange(12)}"
        item = None if rng.random() < 0.3 else _item(key, step)
        whole.record(at, key, item)
        pruned.record(at, key, item)
        if step % 50 == 49:
            cutoff = at - rng.uniform(0, 40)
            pruned.prune(cutoff)
            for _ in range(10):
                a = rng.uniform(pruned.base_time, at + 1)
                b = a + rng.uniform(0, 30)
                assert sorted(map(str, pruned.items_at(a))) == sorted(map(str, whole.items_at(a)))
                assert pruned.changes(a, b) == whole.changes(a, b)
    assert len(pruned) < len(whole) / 3


def _history_of(world: LocalWorld, name: str) -> WriteHistory:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[ACCOUNT_ID][world.region].get_table(name)._ddb_assets_history  # type: ignore[no-any-return]


def test_the_emulator_prunes_history_beyond_the_recovery_period(world: LocalWorld, ddb: Any, s3: Any, bucket: str,
                                                                clock: WorldClock) -> None:
    name, arn = make_table(ddb)
    ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 1})
    for value in range(5):  # five writes of one key, a short-lived one, and one kept as it is
        ddb.put_item(TableName=name, Item={"pk": {"S": "often"}, "sk": {"N": "1"}, "v": {"N": str(value)}})
        clock.advance(60)
    ddb.put_item(TableName=name, Item={"pk": {"S": "brief"}, "sk": {"N": "1"}})
    ddb.delete_item(TableName=name, Key={"pk": {"S": "brief"}, "sk": {"N": "1"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "steady"}, "sk": {"N": "1"}})
    assert len(_history_of(world, name)) == 8

    clock.advance(2 * DAY)
    ddb.put_item(TableName=name, Item={"pk": {"S": "new"}, "sk": {"N": "1"}})
    history = _history_of(world, name)
    assert history.base_time == math.floor(clock.now() - DAY)
    assert len(history.base) == 2 and len(history.writes) == 1  # often@4, steady; then new

    earliest = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"]["EarliestRestorableDateTime"]
    assert earliest.timestamp() == clock.now() - DAY
    done = wait_done(ddb, ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="pruned",
                                                            ExportTime=earliest)["ExportDescription"]["ExportArn"])
    items = read_export(s3, bucket, done["ExportManifest"]).items
    assert sorted((i["Item"]["pk"]["S"], i["Item"].get("v", {}).get("N")) for i in items) == [
        ("often", "4"), ("steady", None)]  # the state at the window's start survived the pruning
    with pytest.raises(ClientError) as raised:
        ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket,
                                          ExportTime=datetime.fromtimestamp(earliest.timestamp() - 1, timezone.utc))
    assert raised.value.response["Error"]["Code"] == "InvalidExportTimeException"


def test_the_default_recovery_period_is_35_days(world: LocalWorld, ddb: Any, clock: WorldClock) -> None:
    name, _ = make_table(ddb)
    for value in range(3):
        ddb.put_item(TableName=name, Item={"pk": {"S": "k"}, "sk": {"N": "1"}, "v": {"N": str(value)}})
        clock.advance(1)
    clock.advance(34 * DAY)
    ddb.put_item(TableName=name, Item={"pk": {"S": "other"}, "sk": {"N": "1"}})
    assert len(_history_of(world, name).writes) == 4  # all inside the 35 days
    clock.advance(2 * DAY)
    ddb.put_item(TableName=name, Item={"pk": {"S": "other"}, "sk": {"N": "1"}, "v": {"N": "1"}})
    history = _history_of(world, name)
    assert list(history.base) and len(history.base) == 1  # k as it was 35 days ago
    assert len(history.writes) == 2  # both writes of "other" are inside the window


def test_without_pitr_only_the_present_is_kept(world: LocalWorld, ddb: Any, clock: WorldClock) -> None:
    name, _ = make_table(ddb, pitr=False)
    for value in range(20):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"k{value % 4}"}, "sk": {"N": "1"}, "v": {"N": str(value)}})
        clock.advance(1)
    assert len(_history_of(world, name)) <= 5  # one entry per key, plus the latest write


def test_transactions_are_recorded_and_a_failed_one_leaves_no_trace(world: LocalWorld, ddb: Any) -> None:
    name, _ = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    with pytest.raises(ClientError):
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": name, "Item": {"pk": {"S": "b"}, "sk": {"N": "1"}}}},
            {"Put": {"TableName": name, "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert [w.item["pk"]["S"] for w in _history_of(world, name).writes if w.item] == ["a"]
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": name, "Item": {"pk": {"S": "c"}, "sk": {"N": "1"}}}},
        {"Delete": {"TableName": name, "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}}},
    ])
    assert [(w.key, w.item is None) for w in _history_of(world, name).writes][1:] == [
        ('[{"S": "c"}, {"N": "1"}]', False), ('[{"S": "a"}, {"N": "1"}]', True)]


def test_a_restored_table_exports_the_items_it_was_restored_with(world: LocalWorld, ddb: Any, s3: Any,
                                                                 bucket: str, clock: WorldClock) -> None:
    name, _ = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "kept"}, "sk": {"N": "1"}, "v": {"N": "1.50"}})
    backup = ddb.create_backup(TableName=name, BackupName="before-restore")["BackupDetails"]["BackupArn"]
    restored = f"{name}-restored"
    arn = ddb.restore_table_from_backup(TargetTableName=restored, BackupArn=backup)["TableDescription"]["TableArn"]
    ddb.update_continuous_backups(TableName=restored,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    clock.advance(1)
    done = wait_done(ddb, ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="restored")[
        "ExportDescription"]["ExportArn"])
    assert [i["Item"] for i in read_export(s3, bucket, done["ExportManifest"]).items] == [
        {"pk": {"S": "kept"}, "sk": {"N": "1"}, "v": {"N": "1.5"}}]


def test_the_cli_shows_and_moves_the_clock(world: LocalWorld, clock: WorldClock) -> None:
    from ddb_assets_tests.cli_helpers import run_cli

    env = world.env()
    start = clock.now()
    result = run_cli("clock", "--advance", "15m", env=env)
    assert result.returncode == 0, result.stderr
    assert clock.now() == start + 900 and "frozen" in result.stdout
    assert datetime.fromtimestamp(start + 900, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") in result.stdout
    result = run_cli("clock", "--set", "2001-01-01T00:00:00", env=env)
    assert result.returncode == 1 and "only moves forward" in result.stderr


def test_the_cli_clock_never_moves_back_and_checks_every_flag_first(world: LocalWorld, clock: WorldClock) -> None:
    from ddb_assets_tests.cli_helpers import run_cli

    env = world.env()
    clock.reset()
    shown = run_cli("clock", env=env)
    assert shown.returncode == 0 and shown.stdout.endswith("  (running, on the wall clock)\n"), shown.stdout
    assert "-0s" not in shown.stdout

    ahead = run_cli("clock", "--advance", "1h", env=env)
    assert ahead.returncode == 0 and "(running, 1h ahead of the wall clock)" in ahead.stdout, ahead.stdout
    before = clock.now()
    # Back to real time: a step back would rewrite history, so the clock keeps its lead, and says so.
    real = run_cli("clock", "--real-time", env=env)
    assert real.returncode == 0, real.stderr
    assert clock.now() >= before and not clock.frozen and clock.state()["offset"] > 3590
    assert re.search(r"\(running, (1h|59m 5\ds) ahead of the wall clock\)", real.stdout), real.stdout
    assert real.stderr.startswith("note: the clock stays ") and "never moves backwards" in real.stderr

    # Refused options change nothing: each is checked before the clock is touched.
    for args, message in [(["--freeze", "--real-time"], "error: --real-time goes alone"),
                          (["--advance", "15m", "--real-time"], "error: --real-time goes alone"),
                          (["--freeze", "--advance", "-5m"], "error: invalid value for '--advance': '-5m' is not a "
                                                             "duration"),
                          (["--advance", "soon"], "error: invalid value for '--advance': 'soon' is not a duration"),
                          (["--advance", "inf"], "error: invalid value for '--advance': 'inf' is not a duration")]:
        state = clock.state()
        refused = run_cli("clock", *args, env=env)
        assert refused.returncode == 2 and refused.stdout == "", (args, refused)
        assert refused.stderr.splitlines()[-1].startswith(message), (args, refused.stderr)
        assert clock.frozen == state["frozen"] and abs(clock.state()["offset"] - state["offset"]) < 1, args
    refused = run_cli("clock", "--set", "2001-01-01T00:00:00", "--freeze", env=env)
    assert refused.returncode == 1 and not clock.frozen  # one request: refused whole

    # --freeze alone stands still at the present (it used to race the flowing clock and fail).
    frozen = run_cli("clock", "--freeze", "--advance", "90s", env=env)
    assert frozen.returncode == 0 and clock.frozen, frozen.stderr
    assert "(frozen, 1h 1m" in frozen.stdout or "(frozen, 1h 2m" in frozen.stdout, frozen.stdout
