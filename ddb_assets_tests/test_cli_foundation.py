"""The command line as a user meets it: help, the demo, the emulator service, one-line errors."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any

import boto3

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


def test_demo_runs_end_to_end() -> None:
    result = run_cli("demo", "--items", "300")
    assert result.returncode == 0, result.stderr
    assert "ItemCount" in result.stdout and "300" in result.stdout
    assert "manifest-summary.json" in result.stdout and "manifest-files.md5" in result.stdout


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
            if "table reviews loaded" in line or not line:
                break
        text = "".join(lines)
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in text, text
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
