"""The benchmark script runs end to end on a tiny export (its figures are not checked: the
benchmark is for a quiet machine; this test keeps the script working as the code moves)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_benchmark_runs_and_the_dagster_path_reads_the_export_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_benchmark.py"), "--items", "3000", "--files", "2",
         "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / "out"), "--results-dir",
         str(tmp_path / "results"), "--skip", "naive", "--skip", "floor", "--skip", "floor-explicit",
         "--skip", "snappy", "--skip", "one-pass"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows per partition agree; spot values agree" in done.stdout
    [line] = [line for line in done.stdout.splitlines() if line.startswith("dagster path / duckdb")]
    assert "the export's bytes read 1.0x" in line, line
    assert len(list((tmp_path / "results").glob("*.json"))) == 1


def test_the_dagster_path_step_says_a_missing_export_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "dagster_path.py"), "stage", str(tmp_path / "none"),
                           str(tmp_path / "table")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none' / 'manifest-summary.json'}: missing: the export's manifest-summary.json was "
        f"expected here"]
