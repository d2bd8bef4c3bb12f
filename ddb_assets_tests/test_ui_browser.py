"""The Dagster UI in headless Chromium, on `ddb-assets dev` (what `make dev` runs): an export started
from the CLI is picked up by the sensor and converted by automation, then a backfill of every
Parquet partition is launched from the UI.

Robust under load: the test waits for automation's own backfill to finish before it launches one,
and finds its backfill in the instance by what it is (not tagged by automation, not seen before),
instead of counting backfills on a page."""

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ddb_assets_tests.cli_helpers import ddb_assets_command, free_port, run_cli

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FROM_AUTOMATION = "dagster/from_automation_condition"


def _wait_for(predicate, timeout: float, what: str, interval: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[dict]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright is a dev extra: pip install -e '.[dev]'")
    emulator_port, ui_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{emulator_port}"
    home, lake = tmp_path / "dagster_home", tmp_path / "lake"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("DDB_ASSETS_CONFIG", None)
    log_path = tmp_path / "dagster-dev.log"
    with open(log_path, "w") as log:
        dev = subprocess.Popen([*ddb_assets_command(), "dev", "--port", str(ui_port), "--emulator-port",
                                str(emulator_port), "--sample-items", "300", "--dagster-home", str(home), "--lake",
                                str(lake)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    try:
        _wait_for(lambda: "Dagster UI:" in log_path.read_text() or dev.poll() is not None, 180,
                  "ddb-assets dev to serve the UI")
        assert dev.poll() is None, log_path.read_text()
        yield {"url": f"http://127.0.0.1:{ui_port}", "env": env, "lake": lake, "home": home, "log": log_path}
    finally:
        dev.send_signal(signal.SIGTERM)  # stops dagster dev and everything it started
        try:
            dev.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)


def _instance(home: Path) -> Any:
    import dagster as dg

    return dg.DagsterInstance.local_temp(str(home))


def _backfills(home: Path) -> list[Any]:
    with _instance(home) as instance:
        return list(instance.get_backfills())


def _snapshot_id(lake: Path) -> int | None:
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.catalog import CatalogConfig, load_table, open_catalog

    if not (lake / "catalog.db").exists():
        return None
    table = load_table(open_catalog(CatalogConfig(), resolve(lake)), "ddb_lake", "reviews")
    snapshot = table.current_snapshot() if table is not None else None
    return snapshot.snapshot_id if snapshot is not None else None


def _quiet(home: Path) -> bool:
    """No backfill or run in progress: automation has done what the export asked for."""
    import dagster as dg

    with _instance(home) as instance:
        busy = instance.get_runs(filters=dg.RunsFilter(statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
        backfills = list(instance.get_backfills())
    return not busy and all(b.status.value not in ("REQUESTED", "CANCELING") for b in backfills)


def test_backfill_all_parquet_partitions_from_the_ui(dagster_dev: dict) -> None:
    from playwright.sync_api import sync_playwright

    home, lake = dagster_dev["home"], dagster_dev["lake"]
    # An export started from the CLI: the sensor validates it and automation converts it, no click.
    started = run_cli("export", "reviews", env=dagster_dev["env"])
    assert started.returncode == 0, started.stderr
    _wait_for(lambda: _snapshot_id(lake), 300, "the sensor and automation to publish the table", interval=2)
    _wait_for(lambda: _quiet(home), 300, "automation's backfill and the report run to finish", interval=2)
    automatic = [b for b in _backfills(home) if b.tags.get(FROM_AUTOMATION)]
    assert automatic and all(b.status.value == "COMPLETED_SUCCESS" for b in automatic), automatic
    first_snapshot = _snapshot_id(lake)
    before = {b.backfill_id for b in _backfills(home)}
    with _instance(home) as instance:
        partitions = instance.get_dynamic_partitions("reviews__year")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{dagster_dev['url']}/assets/reviews/parquet", wait_until="networkidle")
            page.get_by_role("button", name="Materialize…").wait_for(timeout=60_000)
            _click_past_dialogs(page, page.get_by_role("button", name="Materialize…"))
            page.get_by_role("button", name="All", exact=True).click()
            page.get_by_text(f"{len(partitions)} partitions selected").wait_for(timeout=30_000)
            page.get_by_role("button", name="Launch backfill").click()

            # Ours: new, and not one automation launched (it may, if anything changed meanwhile).
            [mine] = _wait_for(lambda: [b for b in _backfills(home) if b.backfill_id not in before
                                        and not b.tags.get(FROM_AUTOMATION)], 120, "the UI's backfill to be created")
            done = _wait_for(lambda: [b for b in _backfills(home) if b.backfill_id == mine.backfill_id
                                      and b.status.value not in ("REQUESTED", "CANCELING")], 300,
                             "the backfill launched from the UI to finish", interval=2)
            assert done[0].status.value == "COMPLETED_SUCCESS", f"{done[0].status}; see {dagster_dev['log']}"
            # And the UI says so.
            page.goto(f"{dagster_dev['url']}/runs/b/{mine.backfill_id}", wait_until="networkidle")
            page.get_by_text("Succeeded").first.wait_for(timeout=60_000)
            page.screenshot(path=str(dagster_dev["log"].with_suffix(".png")))
        finally:
            browser.close()
    # The backfill asked for the export the table holds already: idempotent, no new snapshot, and
    # each partition's materialization says why.
    assert _snapshot_id(lake) == first_snapshot
    with _instance(home) as instance:
        import dagster as dg

        key = dg.AssetKey(["reviews", "parquet"])
        assert instance.get_materialized_partitions(key) == set(partitions)
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        conversion = event.asset_materialization.metadata["conversion"].value
        assert conversion.startswith("none: the table holds export "), conversion


def _click_past_dialogs(page: Any, target: Any, attempts: int = 10) -> None:
    """Click ``target`` once no dialog covers the page: Dagster's first-visit dialog (Skip) can
    open a moment after the page looks ready, and its backdrop then takes the click."""
    for _ in range(attempts):
        page.wait_for_timeout(1000)
        skip = page.get_by_role("button", name="Skip")
        if skip.count():
            skip.first.click()
            continue
        if page.locator(".bp5-overlay-backdrop").count():
            page.keyboard.press("Escape")
            continue
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            target.click(timeout=5_000)
            return
        except PlaywrightTimeout:
            continue  # a dialog opened just then: dismiss it and click again
    target.click()  # one last try, failing with playwright's own account of what is in the way
