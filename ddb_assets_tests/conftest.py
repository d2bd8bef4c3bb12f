"""Shared fixtures: one local AWS world (moto server over HTTP) for the session."""

from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings

# `HYPOTHESIS_PROFILE=thorough make test` for a long hunt; the default keeps CI quick.
# A loaded machine (CI neighbours, a parallel run) makes generation slow and examples late: that
# is no failure of the code under test, so neither the too_slow health check nor a deadline applies.
_CALM = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("default", max_examples=25, **_CALM)
settings.register_profile("thorough", max_examples=400, **_CALM)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

from ddb_assets.local import emulator
from ddb_assets.local.clock import WorldClock
from ddb_assets.local.world import LocalWorld


REPO = Path(__file__).resolve().parents[1]


def _repo_state() -> dict[str, tuple[int, int]]:
    """What a test could leave in the checkout: the repo's top-level entries and everything under
    var/ (the demo's lake, exports and Dagster home belong to the user)."""
    state = {entry.name: (0, 0) for entry in REPO.iterdir()}
    var = REPO / "var"
    if var.is_dir():
        for path in var.rglob("*"):
            try:
                stat = path.stat()
            except OSError:  # removed while we walk (a make dev running beside the tests)
                continue
            state[str(path.relative_to(REPO))] = (stat.st_size, stat.st_mtime_ns)
    return state


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._ddb_repo_state = _repo_state()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A tripwire: `make test` must never touch the user's var/ (a test once ran the demo from the
    # repo root and replaced the demo's lake) nor leave anything in the checkout.
    before = getattr(session.config, "_ddb_repo_state", None)
    if before is None:
        return
    after = _repo_state()
    changed = sorted(k for k in before.keys() | after.keys()
                     if before.get(k) != after.get(k) and not k.startswith((".pytest_cache", ".hypothesis")))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"the tests changed the checkout at {REPO}: {', '.join(changed[:20])}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test runs from a temporary folder, with the Dagster home and the configured lake
    there too: defaults such as ``var/lake`` resolve outside the user's checkout."""
    scratch = tmp_path_factory.mktemp("session-cwd")
    saved_cwd = os.getcwd()
    saved_env = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "DDB_ASSETS_LAKE_ROOT")}
    (scratch / "dagster_home").mkdir()
    (scratch / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(scratch / "dagster_home")
    os.environ["DDB_ASSETS_LAKE_ROOT"] = str(scratch / "var" / "lake")
    os.chdir(scratch)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never let a test reach a real account through a developer's credentials or profile.
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def world() -> Iterator[LocalWorld]:
    emulator.settings["export_delay_seconds"] = 0.2
    with LocalWorld() as started:
        yield started


@pytest.fixture
def clock(world: LocalWorld) -> Iterator[WorldClock]:
    """The world clock, frozen at a whole second just ahead of now (every write's time is the
    instant the test set); real time again afterwards. Modules that need more (a window
    boundary, no export delay) define their own ``clock``."""
    world.clock.set(math.ceil(world.clock.now()) + 1, frozen=True)
    try:
        yield world.clock
    finally:
        world.clock.reset()


@pytest.fixture
def aws_env(world: LocalWorld, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point every boto3 client made in the test at the local world, as a user's shell would."""
    for key, value in world.env().items():
        monkeypatch.setenv(key, value)
    return world.env()


@pytest.fixture
def ddb(world: LocalWorld) -> Any:
    return world.client("dynamodb")


@pytest.fixture
def s3(world: LocalWorld) -> Any:
    return world.client("s3")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bucket(s3: Any) -> str:
    name = unique("exports")
    s3.create_bucket(Bucket=name)
    return name


def make_table(ddb: Any, *, pitr: bool = True, sort_key: bool = True) -> tuple[str, str]:
    name = unique("tbl")
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attrs.append({"AttributeName": "sk", "AttributeType": "N"})
    arn = ddb.create_table(TableName=name, KeySchema=keys, AttributeDefinitions=attrs,
                           BillingMode="PAY_PER_REQUEST")["TableDescription"]["TableArn"]
    if pitr:
        ddb.update_continuous_backups(TableName=name,
                                      PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return name, arn


def wait_done(ddb: Any, export_arn: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        description = ddb.describe_export(ExportArn=export_arn)["ExportDescription"]
        if description["ExportStatus"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return description
        time.sleep(0.1)
