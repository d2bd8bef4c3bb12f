"""The command line as a user meets it: help, the demo, the emulator service, one-line errors."""

from __future__ import annotations

import collections
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3

from ddb_assets.local.sample_data import ReviewGenerator
from ddb_assets.local.walkthrough import FLAT_QUERY, RAW_QUERY
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.cli_helpers import ddb_assets_command, free_port, run_cli
from ddb_assets_tests.conftest import make_table, unique


def _one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]


def test_help_lists_the_subcommands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "emulator", "export", "load", "generate-export"):
        assert command in result.stdout


def test_demo_runs_end_to_end_and_what_it_made_stays(tmp_path: Path) -> None:
    # As a user runs it: from the checkout (here a temporary folder: never the user's var/), with
    # no DAGSTER_HOME or lake set, so the defaults `make dev` shares apply.
    user = ("DAGSTER_HOME", "DDB_ASSETS_LAKE_ROOT", "DDB_ASSETS_CONFIG", "AWS_ENDPOINT_URL")
    result = run_cli("demo", "--items", "300", cwd=tmp_path, unset=user)
    assert result.returncode == 0, result.stderr
    assert "ItemCount" in result.stdout and "300" in result.stdout
    assert "manifest-summary.json" in result.stdout and "manifest-files.md5" in result.stdout
    for noise in ("Telemetry:", "SupersessionWarning", "Warning"):
        assert noise not in result.stdout + result.stderr

    # The AWS walkthrough's two queries, verbatim, right after the demo.
    items = list(ReviewGenerator(300, seed=7))
    top = run_cli("query", RAW_QUERY, "--format", "json", cwd=tmp_path, unset=user)
    assert top.returncode == 0, top.stderr
    counts = collections.Counter(item["customer_id"]["S"] for item in items)
    rows = [json.loads(line) for line in top.stdout.splitlines()]
    assert [r["Count"] for r in rows] == [n for _, n in counts.most_common(10)]
    assert all(counts[r["customer"]] == r["Count"] for r in rows)
    dune = run_cli("query", FLAT_QUERY, "--format", "json", cwd=tmp_path, unset=user)
    assert dune.returncode == 0, dune.stderr
    years = [json.loads(line)["item.year.n"] for line in dune.stdout.splitlines()]
    assert years == sorted(int(i["year"]["N"]) for i in items if i["product_title"]["S"] == "Dune")[:100]
    assert years

    # The export it printed can be inspected afterwards (the local world is gone).
    [kept] = re.findall(r"export kept in (\S+) ", result.stdout)
    assert kept.startswith("var/exports/ddb-exports/exports/reviews/AWSDynamoDB/")
    inspected = run_cli("inspect", kept, cwd=tmp_path, unset=user)
    assert inspected.returncode == 0, inspected.stderr
    assert "itemCount     300" in inspected.stdout

    # The runs are in the Dagster home `make dev` serves, with telemetry off there.
    import dagster as dg

    home = tmp_path / "var" / "dagster"
    assert "enabled: false" in (home / "dagster.yaml").read_text()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        for asset in ("pitr_export", "raw_export", "parquet", "top_customers"):
            assert instance.get_latest_materialization_event(dg.AssetKey(["reviews", asset])) is not None, asset
        assert len(instance.get_runs()) >= 4


def test_export_of_an_unknown_table_is_a_one_line_error(world: LocalWorld) -> None:
    _one_line_error(run_cli("export", "no-such-table", env=world.env()), "'no-such-table' does not exist")


def test_export_to_a_missing_bucket_is_a_one_line_error(world: LocalWorld, ddb: Any) -> None:
    name, _ = make_table(ddb)
    _one_line_error(run_cli("export", name, "--bucket", unique("missing"), env=world.env()), "bucket", "does not exist")


def test_emulator_on_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(run_cli("emulator", "--port", str(port), timeout=30), f"port {port}", "already in use")


def test_emulator_serves_and_the_cli_exports_from_it() -> None:
    port = free_port()
    server = subprocess.Popen([*ddb_assets_command(), "emulator", "--port", str(port), "--sample-items", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert server.stdout is not None
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if "export AWS_SECRET_ACCESS_KEY" in line or not line:  # the announcement's last line
                break
        text = "".join(lines)
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in text, text
        # The sample table is loaded before the world is announced: a client that starts on the
        # announcement finds it whole.
        assert text.index("table reviews loaded") < text.index("local AWS world listening on"), text
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        result = run_cli("export", "reviews", "--format", "ION", env=env)
        assert result.returncode == 0, result.stderr
        assert "COMPLETED" in result.stdout and "60 items" in result.stdout
        ddb = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
        [summary] = ddb.list_exports()["ExportSummaries"]
        assert summary["ExportStatus"] == "COMPLETED"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_incremental_demo_runs_the_dagster_assets_and_reconciles_equal(tmp_path: Path) -> None:
    user = ("DAGSTER_HOME", "DDB_ASSETS_LAKE_ROOT", "DDB_ASSETS_CONFIG", "AWS_ENDPOINT_URL")
    result = run_cli("demo", "--incremental", "--items", "200", "--windows", "2", cwd=tmp_path, unset=user,
                     timeout=600)
    assert result.returncode == 0, result.stderr
    assert "reconciliation: EQUAL" in result.stdout
    for noise in ("Telemetry:", "SupersessionWarning", "Warning", "WARNING"):
        assert noise not in result.stdout + result.stderr
    [full] = re.findall(r"full export (\S+) at \S+: 200 items into ddb_lake\.reviews ", result.stdout)
    windows = re.findall(r"window (\d) \((\S+) to \S+\): (\d+) inserts?, \d+ updates?, \d+ deletes?, \d+ partition "
                         r"moves?; export (\S+) merged: (\d+) upserts?, (\d+) deletes?, (\d+) files? rewritten, "
                         r"([\d,]+) rows?; history \+(\d+) changes?; high_water_mark_fresh passed", result.stdout)
    assert [w[0] for w in windows] == ["1", "2"], result.stdout
    assert "new columns moderation__score, moderation__state" in result.stdout  # the later window's attribute

    # Every export it made is kept (the world is gone): the full one and each window's read back.
    [kept] = re.findall(r"exports kept in (\S+): the full export and each window's in AWSDynamoDB/<export id>/, "
                        r"the reconciliation's below reconciliation/", result.stdout)
    assert kept == "var/exports/ddb-exports/exports/reviews/"
    assert len(list((tmp_path / kept / "reconciliation" / "AWSDynamoDB").glob("*/manifest-summary.json"))) == 1
    full_inspected = run_cli("inspect", f"{kept}AWSDynamoDB/{full}/", cwd=tmp_path, unset=user, timeout=120)
    assert full_inspected.returncode == 0 and "200 items" in full_inspected.stdout, full_inspected.stdout
    window_inspected = run_cli("inspect", f"{kept}AWSDynamoDB/{windows[-1][3]}/", cwd=tmp_path, unset=user,
                               timeout=120)
    assert window_inspected.returncode == 0, window_inspected.stderr
    assert "INCREMENTAL_EXPORT" in window_inspected.stdout, window_inspected.stdout

    # What `make dev` shows afterwards: the Dagster home the demo used by default (var/dagster) holds,
    # per window, its incremental_export partition, one raw_export (validated) and one parquet run
    # merging it, with the figures printed; and the checks' evaluations.
    import dagster as dg

    from ddb_assets.lake.record import instant

    def materializations(key: list[str], partition: str | None = None) -> list[dict[str, Any]]:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None), limit=1000).records
        return [{"run_id": r.run_id, "partition": r.partition_key,
                 **{k: v.value for k, v in r.asset_materialization.metadata.items()}}
                for r in records if r.asset_materialization is not None]

    def checks(asset: list[str], name: str) -> list[Any]:
        return instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(asset), name), limit=100)

    with dg.DagsterInstance.local_temp(str(tmp_path / "var" / "dagster")) as instance:
        raw = materializations(["reviews", "raw_export"])
        assert sorted((m["partition"], m["export_type"], m["valid"]) for m in raw) == sorted(
            [(full, "FULL_EXPORT", True)] + [(w[3], "INCREMENTAL_EXPORT", True) for w in windows])
        parquet = materializations(["reviews", "parquet"])
        for number, start, _, export_id, upserts, deletes, rewritten, rows, history in windows:
            [window] = materializations(["reviews", "incremental_export"], start[:16])
            assert window["export_id"] == export_id
            assert instant(window["export_from_time"]) == instant(start)
            [raw_run] = [m for m in raw if m["partition"] == export_id]
            assert instant(raw_run["export_from_time"]) == instant(start)
            merges = [m for m in parquet if m["export_id"] == export_id]
            assert len({m["run_id"] for m in merges}) == 1  # one run, one event per year partition
            assert merges[0]["merged"] == [{"export_id": export_id, "upserts": int(upserts), "deletes": int(deletes),
                                            "deletes_missing": 0, "files_rewritten": int(rewritten),
                                            "merge_mode": "copy-on-write", "delete_files": 0}]
            assert merges[0]["table_rows"] == int(rows.replace(",", ""))
            assert merges[0]["history_appended"] == [{"export_id": export_id, "changes": int(history)}]
        assert {m["export_id"] for m in parquet} == {full, *(w[3] for w in windows)}
        assert [c.status.value for c in checks(["reviews", "raw_export"], "checksums_verified")] == ["SUCCEEDED"] * 3
        assert [c.status.value for c in checks(["reviews", "parquet"], "high_water_mark_fresh")] == ["SUCCEEDED"] * 2
        [reconciled] = checks(["reviews", "parquet"], "matches_fresh_full_export")
        assert reconciled.status.value == "SUCCEEDED"

    # Both tables, read back by the independent reader: the same items.
    from ddb_assets_tests.lake_reader import read_rows, rebuild_items

    tables = [sorted(rebuild_items(*read_rows(str(tmp_path / "var" / "lake" / name))),
                     key=lambda i: (i["product_id"], i["review_id"])) for name in ("reviews", "reviews_check")]
    assert tables[0] == tables[1]
    assert len(tables[0]) == int(windows[-1][7].replace(",", ""))
    inserted = sum(int(w[2]) for w in windows)
    assert any(i["review_id"].startswith("N") for i in tables[0]) == (inserted > 0)
    for name in ("reviews", "reviews_check"):
        [location] = re.findall(rf"ddb_lake\.{name}: (\S+\.metadata\.json)", result.stdout)
        assert Path(location).exists()

    # The report tables were refreshed from the merged table: they count its reviews, not the
    # sample's 200 (reviews_per_year sums to the table's rows).
    assert re.search(r"5 report tables refreshed from the merged table \(\S+s; deployed, reviews_reports_sensor "
                     r"requests them after each commit\)", result.stdout), result.stdout
    per_year = run_cli("query", "SELECT sum(reviews) AS n FROM reviews_reviews_per_year", "--format", "json",
                       cwd=tmp_path, unset=user, timeout=120)
    assert per_year.returncode == 0, per_year.stderr
    assert [int(json.loads(line)["n"]) for line in per_year.stdout.splitlines()] == [len(tables[0])]  # exact: text

    # The Dagster home's exports and the lake table's mark are ahead of real time now: `make demo`'s
    # export, made now, could not replace them, and it says so in one line before making anything;
    # another lake alone is no way out (the home's future export would be taken over the demo's).
    # The ways out name only what holds changes ahead.
    last_end = re.findall(r"holds changes up to (\S+);", result.stdout)[-1]
    for lake, ways, remove in (("var/lake", "another --dagster-home and another --lake", "var/dagster and var/lake"),
                               ("var/lake2", "another --dagster-home, or", "var/dagster")):
        behind = run_cli("demo", "--items", "20", "--lake", lake, cwd=tmp_path, unset=user, timeout=120)
        _one_line_error(behind, "the Dagster home var/dagster holds validated export",
                        f"with changes up to {last_end}, later than now", "demo --incremental",
                        f"run the demo after {last_end}", f"give it {ways}", f"remove {remove}")
        assert behind.stderr.rstrip().endswith(f"remove {remove}")
    assert not (tmp_path / "var" / "lake2").exists()
    fresh_home = run_cli("demo", "--items", "20", "--dagster-home", "var/other", cwd=tmp_path, unset=user,
                         timeout=120)
    _one_line_error(fresh_home, f"ddb_lake.reviews in var/lake holds changes up to {last_end}, later than now",
                    "give it another --lake, or remove var/lake")
    assert not (tmp_path / "var" / "other").exists()  # refused before the home was made

    # While `ddb-assets dev` serves the Dagster home, the demo is refused in one line (exit code 1).
    from ddb_assets.local.dev import DevLock

    lock = DevLock.acquire(tmp_path / "var" / "dagster", {"pid": 1, "command": "ddb-assets dev"})
    try:
        refused = run_cli("demo", "--incremental", "--items", "20", "--windows", "1", cwd=tmp_path, unset=user,
                          timeout=120)
    finally:
        lock.release()
    _one_line_error(refused, "already running on the Dagster home", "its sensors would act on the demo's runs")

