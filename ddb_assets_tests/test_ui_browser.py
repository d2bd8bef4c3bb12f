"""The Dagster UI in headless Chromium: `dagster dev` on the local profile, an export started from
the CLI picked up by the sensor, then a backfill of every Parquet partition launched from the UI."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from ddb_assets_tests.cli_helpers import ddb_assets_command, free_port, run_cli

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _wait_for(predicate, timeout: float, what: str, interval: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _backfill_ids(page, url: str) -> list[str]:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/runs?view=backfills", wait_until="networkidle")
    page.wait_for_timeout(1000)
    links = page.locator("a[href*='/runs/b/']")
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    return sorted({h.split("/runs/b/")[1].split("?")[0] for h in hrefs if "/runs/b/" in h})


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[dict]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright is a dev extra: pip install -e '.[dev]'")
    emulator_port, ui_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{emulator_port}"
    home, lake = tmp_path / "dagster_home", tmp_path / "lake"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DDB_ASSETS_ENDPOINT_URL": endpoint,
           "DDB_ASSETS_LAKE_ROOT": str(lake), "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("DDB_ASSETS_CONFIG", None)
    logs = open(tmp_path / "dagster-dev.log", "w")
    emulator = subprocess.Popen([*ddb_assets_command(), "emulator", "--port", str(emulator_port),
                                 "--sample-items", "300"], stdout=logs, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    root = Path(__file__).resolve().parents[1]
    dagster = Path(sys.executable).parent / "dagster"
    server = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(ui_port)],
                              cwd=root, stdout=logs, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for(lambda: _http_ok(f"http://127.0.0.1:{ui_port}/server_info"), 120, "dagster dev to serve")
        yield {"url": f"http://127.0.0.1:{ui_port}", "env": env, "lake": lake, "log": tmp_path / "dagster-dev.log"}
    finally:
        for process in (server, emulator):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in (server, emulator):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        logs.close()


def test_backfill_all_parquet_partitions_from_the_ui(dagster_dev: dict) -> None:
    from playwright.sync_api import sync_playwright

    lake_table = dagster_dev["lake"] / "reviews" / "_ddb_assets.json"
    # An export started from the CLI: the sensor validates it and automation converts it, no click.
    started = run_cli("export", "reviews", env=dagster_dev["env"])
    assert started.returncode == 0, started.stderr
    _wait_for(lake_table.exists, 240, "the sensor and automation to publish the table")
    first_version = json.loads(lake_table.read_text())["version"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{dagster_dev['url']}/assets/reviews/parquet", wait_until="networkidle")
            page.get_by_role("button", name="Materialize…").wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            if page.get_by_role("button", name="Skip").count():  # the first-visit community dialog
                page.get_by_role("button", name="Skip").click()
            before = _backfill_ids(page, dagster_dev["url"])
            page.goto(f"{dagster_dev['url']}/assets/reviews/parquet", wait_until="networkidle")
            page.get_by_role("button", name="Materialize…").click()
            page.get_by_role("button", name="All", exact=True).click()
            partitions = json.loads(lake_table.read_text())["partitions"]
            page.get_by_text(f"{len(partitions)} partitions selected").wait_for(timeout=10_000)
            page.get_by_role("button", name="Launch backfill").click()

            page.wait_for_timeout(1000)
            new = _wait_for(lambda: [b for b in _backfill_ids(page, dagster_dev["url"]) if b not in before], 60,
                            "the backfill to appear in the UI")
            assert len(new) == 1, new

            def backfill_status() -> str | None:
                page.goto(f"{dagster_dev['url']}/runs/b/{new[0]}", wait_until="networkidle")
                page.get_by_text("Status").first.wait_for(timeout=20_000)
                text = page.locator("body").inner_text()
                for status in ("Succeeded", "Failed", "Canceled"):
                    if f"Status\n{status}" in text:
                        return status
                return None

            status = _wait_for(backfill_status, 240, "the backfill launched from the UI to finish", interval=3)
            assert status == "Succeeded", f"the backfill {new[0]} ended {status}; see {dagster_dev['log']}"
            page.screenshot(path=str(dagster_dev["log"].with_suffix(".png")))
        finally:
            browser.close()
    published = json.loads(lake_table.read_text())
    assert published["version"] != first_version  # the UI's backfill republished the table
    assert set(published["partitions"]) == set(partitions)
