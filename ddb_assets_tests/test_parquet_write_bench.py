"""bench/parquet_write.py: the cardinality rule, a tiny run over a table's files (every variant
checked to read back as written) and its results file. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "parquet_write.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("parquet_write", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["parquet_write"] = module
    spec.loader.exec_module(module)
    return module


def _reviews(rows: int, start: int = 0) -> pa.Table:
    return pa.table({
        "review_id": [f"R{start + i:08d}" for i in range(rows)],  # unique
        "star_rating": pa.array([i % 5 + 1 for i in range(rows)], pa.int64()),  # 5 values
        "review_body": pa.array([None if i % 4 == 0 else f"body {start + i} " * 20 for i in range(rows)], pa.string()),
        "tags": pa.array([["a", "b"] if i % 2 else None for i in range(rows)], pa.list_(pa.string())),
        "comment": pa.array([None] * rows, pa.string()),
    })


@pytest.mark.fast
def test_dictionary_columns_keeps_the_low_cardinality_leaves() -> None:
    chosen = _script().dictionary_columns(_reviews(1000), 0.10)
    assert chosen == ["star_rating", "tags.list.element", "comment"]


@pytest.mark.fast
def test_column_paths_name_list_items_as_parquet_does() -> None:
    assert _script().column_paths(_reviews(1).schema) == ["review_id", "star_rating", "review_body",
                                                           "tags.list.element", "comment"]


def test_a_tiny_run_writes_every_variant_and_its_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "table" / "data" / "year=2015"
    data.mkdir(parents=True)
    for n in range(2):
        with pq.ParquetWriter(data / f"part-{n}.parquet", _reviews(1).schema) as writer:
            for group in range(3):
                writer.write_table(_reviews(700, start=n * 10_000 + group * 700))
    _script().main(["--source", str(tmp_path / "table"), "--rows", "3000", "--rounds", "1", "--results-dir",
                    str(tmp_path / "results"), "--pruning-columns", "review_id,star_rating"])
    out = capsys.readouterr().out
    assert "3,500 rows in 2 files, 5 row groups" in out  # whole row groups until --rows are held
    [path] = (tmp_path / "results").glob("parquet-write-*.json")
    results = json.loads(path.read_text())
    names = [v["name"] for v in results["variants"]]
    assert names[0] == "baseline" and {"dict-low", "stats-pruning", "lz4", "one-row-group"} <= set(names)
    assert results["rows"] == 3500
    assert all(v["bytes"] > 0 and len(v["cpu_seconds"]) == 1 for v in results["variants"])
    by_name = {v["name"]: v for v in results["variants"]}
    assert by_name["uncompressed"]["bytes"] > by_name["baseline"]["bytes"]
