"""bench/shard_scale.py: its --help, a tiny run of each part, and the projection's caps. No timing
is asserted (the figures are the script's output, not a test's)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from ddb_assets_tests.test_shards import needs_spark

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "shard_scale.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("shard_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shard_scale"] = module
    spec.loader.exec_module(module)
    return module


def _results(folder: Path) -> dict:
    [path] = folder.glob("shards-*.json")
    return json.loads(path.read_text())


@pytest.mark.fast
def test_help_names_the_three_parts_and_the_shard_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        _script().main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert "{throughput,commit,shards}" in text and "--shards N" in text and "--commit-files" in text


@pytest.mark.fast
def test_the_projection_caps_parallelism_at_the_exports_data_files() -> None:
    script = _script()
    figures = {"throughput": {"json_mb": 200.0, "gzip_mb": 40.0, "items": 200_000, "profile_mb_per_cpu_s": 50.0,
                              "write_mb_per_cpu_s": 25.0},
               "shards": {"per_task_slot_seconds_outside_shard_code": 1.0, "per_task_driver_seconds": 0.01},
               "commit": {"commits": [{"files": 1000, "create": {"seconds": 2.0}, "replace": {"seconds": 4.0}}]}}
    rows = {(r["tb"], r["executors"]): r for r in script.project(figures)}
    # 0.1 TB of JSON is 20 GB of gzip here: 200 data files of 100 MB, so 500 executors keep 200 busy
    small = rows[(0.1, 500)]
    assert small["data_files"] == 200 and small["shards"] == 200 and small["busy"] == 200
    # one per 256 MiB of gzip (75), rounded up to whole waves
    assert rows[(0.1, 100)]["shards"] == 100 and rows[(0.1, 10)]["shards"] == 80
    # the work itself does not depend on the executors; what they are billed for does
    assert rows[(50.0, 10)]["busy_core_hours"] == rows[(50.0, 500)]["busy_core_hours"] == \
        pytest.approx(50e6 * (1 / 50 + 1 / 25) / 3600)
    assert rows[(50.0, 500)]["wall_seconds"] < rows[(50.0, 100)]["wall_seconds"] < rows[(50.0, 10)]["wall_seconds"]


def test_a_tiny_run_commits_every_copy_and_measures_one_worker(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    script = _script()
    assert script.main(["--only", "commit", "--only", "throughput", "--commit-files", "30,70", "--seed-items", "500",
                        "--throughput-items", "1500", "--throughput-files", "3", "--slice", "2", "--rounds", "1",
                        "--data-dir", str(tmp_path / "data"), "--results", str(tmp_path / "results")]) == 0
    found = _results(tmp_path / "results")["parts"]
    commits = found["commit"]["commits"]
    assert [c["files"] for c in commits] == [30, 70]
    for c in commits:
        assert c["create"]["manifest_count"] == 1 and c["create"]["removed"] == 0
        # the next full export: every file of the first commit out, as many in
        assert c["replace"]["removed"] == c["files"] and c["replace"]["manifest_count"] == 2
        assert c["replace"]["metadata_json"] > c["create"]["metadata_json"] > 0
    from ddb_assets.exports.reader import open_export

    export = open_export(found["throughput"]["export"])
    measured = found["throughput"]["summary"]
    assert measured["data_files"] == 2 and measured["items"] == sum(f.manifest.item_count for f in export.files[:2])
    # a written file's entry in a shard result: its statistics, not its footer (17.5 KB at 32 columns)
    assert 0 < measured["result_bytes_per_file"] < 4096
    assert "projection" not in _results(tmp_path / "results")  # it needs the shards part too
    assert "results written to" in capsys.readouterr().out


@needs_spark
def test_a_tiny_spark_run_converts_every_item_in_both_shard_counts(tmp_path: Path) -> None:
    script = _script()
    assert script.main(["--only", "shards", "--shards", "3", "--few-shards", "2", "--items-per-file", "20",
                        "--results", str(tmp_path / "results")]) == 0
    found = _results(tmp_path / "results")["parts"]["shards"]
    assert [r["shards"] for r in found["runs"]] == [2, 3]
    assert all(r["rows"] == found["items"] == 4 * 20 for r in found["runs"])
    rounds = [s for s in found["runs"][1]["inside"]["spans"] if s["what"].startswith("round")]
    assert [r["tasks"] for r in rounds] == [3, 3]  # the profile pass, then the write pass
