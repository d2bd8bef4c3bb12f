"""Shard tasks: balanced plans, specs and results that survive JSON, attempts that never collide,
`ddb-assets shard run`, and the spark runner (pyspark local mode, spark-submit) converting an export
into the same table as the local runner, or failing on bad input with its file and line and
committing nothing."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.reader import open_export
from ddb_assets.lake.catalog import load_table
from ddb_assets.lake.convert import ConvertOptions, convert_export, lake_target, profile_export
from ddb_assets.lake.evolution import plan_table
from ddb_assets.lake.shards.driver import shard_specs
from ddb_assets.lake.shards.options import RunnerOptions
from ddb_assets.lake.shards.plan import plan_shards, shard_count
from ddb_assets.lake.shards.spec import ShardFile, ShardResult, ShardSpec
from ddb_assets.lake.shards.worker import run_shard
from ddb_assets.lake.unique_keys import DuplicateKey
from ddb_assets.lake.writer import FileTarget
from ddb_assets.local.sample_data import PARTITION_KEY, SORT_KEY
from ddb_assets_tests import doctor
from ddb_assets_tests.cli_helpers import run_cli


def _file(index: int, items: int, size: int | None) -> ShardFile:
    return ShardFile(index, f"data/{index}.json.gz", f"/exports/data/{index}.json.gz", "md5", "etag", items, size)


@pytest.mark.fast
def test_shards_balance_skewed_files_by_size_largest_first_and_keep_export_order() -> None:
    # A hot partition key: file 2 is as big as the four small ones together.
    files = [_file(0, 100, 100), _file(1, 100, 110), _file(2, 400, 420), _file(3, 100, 100), _file(4, 100, 105)]
    groups = plan_shards(files, 2)
    assert [[f.index for f in g] for g in groups] == [[2], [0, 1, 3, 4]]
    # sizes not listed for every file: the manifest's item counts weigh them instead
    by_items = plan_shards([_file(0, 50, None), _file(1, 300, 1), _file(2, 200, 1), _file(3, 100, 1)], 2)
    assert [[f.index for f in g] for g in by_items] == [[0, 1], [2, 3]]
    # never more shards than files with items; automatic: at least two
    assert shard_count(files, 9) == 5 and shard_count(files[:1], 0) == 1 and shard_count(files, 0) == 2
    assert [len(g) for g in plan_shards(files, 5)] == [1, 1, 1, 1, 1]


@pytest.mark.fast
def test_the_settings_choose_the_runner_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    from ddb_assets.settings import ConfigError, load_settings

    base = "lake_root: ./lake\ntables:\n  - table: reviews\n    export_bucket: ddb-exports\n"
    path = tmp_path / "c.yaml"
    path.write_text(base + "runner: spark\nspark:\n  master: spark://head:7077\n  shards: 64\n"
                           "  conf: {spark.executor.memory: 4g}\n")
    settings = load_settings(path)
    assert settings.convert_options(settings.tables[0]).runner == RunnerOptions(
        kind="spark", shards=64, spark_master="spark://head:7077", spark_conf=(("spark.executor.memory", "4g"),))
    path.write_text(base + "runner: emr\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert "runner" in str(raised.value) and "'local', 'spark', 'glue' or 'emr_serverless'" in str(raised.value)


def _written_specs(tmp_path: Path, items: int = 600, files: int = 3) -> tuple[Path, list[ShardSpec]]:
    """An export and its writing shard specs for an unpartitioned table at tmp_path/lake/t."""
    folder = doctor.make_export(tmp_path / "export", items=items, files=files)
    options = ConvertOptions(workers=1, runner=RunnerOptions(shards=2))
    export, profile = profile_export(folder, options)
    plan = plan_table(profile, options.schema_options)
    data = lake_target(tmp_path / "lake" / "t", options).location.join("data").uri
    specs = [dataclasses.replace(spec, schema=plan.schema, active=plan.active, target=FileTarget(data, "run1"))
             for spec in shard_specs(export, options, "run1")]
    return folder, specs


def test_a_shard_spec_and_result_survive_json_and_attempts_write_distinct_files(tmp_path: Path) -> None:
    folder, specs = _written_specs(tmp_path)
    spec = ShardSpec.from_json(specs[0].to_json(), obj="spec.json")
    assert spec == specs[0]
    first = run_shard(spec)
    retry = run_shard(dataclasses.replace(spec, attempt=1))
    assert [Path(w.path).name for w in first.written] == ["run1-0-00000.parquet"]
    assert [Path(w.path).name for w in retry.written] == ["run1-1-00000.parquet"]
    assert all(Path(w.path).exists() for w in first.written + retry.written)  # the retry overwrote nothing
    assert first.partitions == {"": spec.items}
    back = ShardResult.from_json(first.to_json(), obj="result.json")
    assert back.partitions == first.partitions and back.profile.items == spec.items
    [written], [again] = first.written, back.written
    assert (again.path, again.rows, again.bytes) == (written.path, written.rows, written.bytes)
    # what the commit takes: the file's statistics, computed by the shard (no footer travels)
    assert again.statistics == written.statistics and again.statistics["record_count"] == written.rows == spec.items
    assert "footer" not in first.to_json().decode()
    assert [(r.key, r.items) for r in back.reads] == [(f.key, f.items) for f in spec.files]
    assert [(r.arrow_rs, r.pyarrow) for r in back.reads] == [(r.arrow_rs, r.pyarrow) for r in first.reads]


def test_a_shard_parses_with_the_json_reader_its_spec_names(tmp_path: Path) -> None:
    _, specs = _written_specs(tmp_path)
    spec = max(specs, key=lambda s: len(s.files))
    pieces = {}
    for reader in ("arrow-rs", "pyarrow"):
        # 16 KiB pieces: a file's first piece has no learned schema yet (pyarrow's), later ones may
        sent = dataclasses.replace(spec, json_reader=reader, piece_bytes=16 << 10, attempt=len(pieces) + 1)
        assert ShardSpec.from_json(sent.to_json(), obj="spec.json").json_reader == reader
        result = ShardResult.from_json(run_shard(sent).to_json(), obj="result.json")
        pieces[reader] = [(r.arrow_rs, r.pyarrow) for r in result.reads]
    assert sum(a for a, _ in pieces["arrow-rs"]) >= 1, pieces
    assert all(a == 0 for a, _ in pieces["pyarrow"])
    assert [a + p for a, p in pieces["arrow-rs"]] == [p for _, p in pieces["pyarrow"]]


def test_shard_run_writes_the_result_beside_the_spec_and_reports_bad_input_with_its_line(tmp_path: Path) -> None:
    folder, specs = _written_specs(tmp_path)
    spec_path = tmp_path / "specs" / "shard-00001.json"
    spec_path.parent.mkdir()
    spec_path.write_bytes(specs[1].to_json())
    done = run_cli("shard", "run", "--spec", str(spec_path))
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "specs" / "shard-00001.result.json").read_bytes())
    assert result["error"] is None and sum(result["partitions"].values()) == specs[1].items
    assert [Path(w["path"]).name for w in result["written"]] == ["run1-0-00001.parquet"]

    bad = specs[1].files[0]
    entry = next(e for e in doctor.manifest_lines(folder) if e["dataFileS3Key"] == bad.key)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(2, lines[2][:-7]))  # line 3 cut short
    fixed = dataclasses.replace(bad, md5=next(e for e in doctor.manifest_lines(folder)
                                              if e["dataFileS3Key"] == bad.key)["md5Checksum"])
    spec_path.write_bytes(dataclasses.replace(specs[1], files=(fixed, *specs[1].files[1:])).to_json())
    failed = run_cli("shard", "run", "--spec", str(spec_path), "--result", str(tmp_path / "failed.json"))
    assert failed.returncode == 1
    # The file is named where it is read from (the manifest's key names the bucket first written to).
    assert f"{bad.uri}:3: malformed JSON" in failed.stderr and failed.stderr.count("\n") == 1, failed.stderr
    error = json.loads((tmp_path / "failed.json").read_bytes())["error"]
    assert (error["kind"], error["obj"], error["line"]) == ("ExportFormatError", bad.uri, 3)


# -- the spark runner -------------------------------------------------------------------------------

def _spark_missing() -> str | None:
    if shutil.which("java") is None:
        return "no Java runtime (the spark runner needs one: apt-get install default-jre-headless)"
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install '.[spark]')"
    return None


def needs_spark(test):  # type: ignore[no-untyped-def]
    """Marked ``spark``; skipped, saying why, only where Java or pyspark is missing (CI has both)."""
    missing = _spark_missing()
    return pytest.mark.spark(pytest.mark.skipif(missing is not None, reason=missing or "")(test))



KEYS = (PARTITION_KEY, SORT_KEY)
# No web UI: parallel test runs would race for its port 4040.
SPARK = RunnerOptions(kind="spark", shards=3, spark_master="local[2]", spark_conf=(("spark.ui.enabled", "false"),))


def _sorted_rows(table, keys: list[str]):  # type: ignore[no-untyped-def]
    return table.scan().to_arrow().sort_by([(k, "ascending") for k in keys])


def _key_columns(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [next(c.name for c in result.plan.columns if c.path == (name,) and c.encoding == "scalar")
            for name in (PARTITION_KEY, SORT_KEY)]


@needs_spark
def test_the_spark_runner_gives_the_table_the_local_runner_gives(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=3000, files=5, seed=11)
    lake = tmp_path / "lake"
    local = convert_export(folder, lake / "by_local", ConvertOptions(partition_by="year", workers=2,
                                                                      key_attributes=KEYS))
    events: list[str] = []
    # With the key attributes the key check runs too, as a round of the Spark application.
    spark = convert_export(folder, lake / "by_spark", ConvertOptions(partition_by="year", runner=SPARK,
                                                                      key_attributes=KEYS),
                           progress=lambda kind, info: events.append(kind))
    assert spark.shards == 3 and events[:2] == ["opened", "sharded"] and events[-1] == "committed"
    # one piece a file, each its shard's first or after another's: counted across Spark
    assert spark.readers.arrow_rs + spark.readers.pyarrow == 5 and spark.json_reader == "arrow-rs"
    assert spark.commit.rows == local.commit.rows == 3000
    assert spark.partitions.keys() == local.partitions.keys()
    assert {k: v["rows"] for k, v in spark.partitions.items()} == {k: v["rows"] for k, v in local.partitions.items()}
    by_local, by_spark = local.commit.table, spark.commit.table
    assert by_spark.schema() == by_local.schema() and by_spark.spec() == by_local.spec()
    keys = _key_columns(local)
    expected, got = _sorted_rows(by_local, keys), _sorted_rows(by_spark, keys)
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)
    # one snapshot, recording the export, as a local conversion's
    summary = by_spark.current_snapshot().summary.additional_properties
    assert summary["ddb-assets.export-id"] == local.export.export_id and len(by_spark.history()) == 1


@needs_spark
def test_a_shard_that_fails_fails_the_run_with_file_and_line_and_commits_nothing(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=1500, files=4, seed=3)
    _, known = profile_export(folder, ConvertOptions(workers=1))
    # The profile was read before the damage: the write pass meets it, after other shards wrote files.
    entry = doctor.biggest_entry(folder)
    doctor.edit_lines(folder, entry, lambda lines: lines.__setitem__(4, lines[4][:-7]))  # line 5 cut short
    root = tmp_path / "lake" / "t"
    with pytest.raises(ExportFormatError) as raised:
        convert_export(open_export(folder), root, ConvertOptions(runner=SPARK), known=known)
    path = str(doctor.data_path(folder, entry))  # where it is read from, not the manifest's key
    assert raised.value.obj == path and raised.value.line == 5
    assert f"{path}:5: malformed JSON" in str(raised.value)
    target = lake_target(root, ConvertOptions())
    assert load_table(target.catalog, *target.identifier) is None  # nothing committed
    assert list(root.rglob("*.parquet")) == []  # and no shard's files left behind


@needs_spark
def test_a_bad_master_is_one_line_with_sparks_cause_and_leaves_no_staging(tmp_path: Path) -> None:
    """Spark's warnings and stack frames stay in its log; the line gives the cause. The temporary
    staging folder goes; the log, which the line names, stays."""
    folder = doctor.make_export(tmp_path / "export", items=300, files=2)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = run_cli("convert", str(folder), str(tmp_path / "lake" / "t"), "--runner", "spark", "--spark-master",
                     "nowhere://x", env={"TMPDIR": str(temporary)})
    assert result.returncode == 1, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert re.fullmatch(r"error: spark-submit ended \(status 1\) before the shards' results came back: "
                        r"org\.apache\.spark\.SparkException: Master must either be yarn or start with spark, k8s, "
                        r"or local \(its log: (?P<log>\S+)\)", line), line
    log = Path(re.search(r"its log: (\S+)\)", line)[1])
    assert log.parent == temporary and "WARN" not in line
    assert [p.name for p in temporary.iterdir()] == [log.name]  # no ddb-assets-shards-* folder left
    assert not (tmp_path / "lake" / "t" / "metadata").exists()


@needs_spark
def test_a_stale_spark_home_does_not_break_pysparks_own_spark_submit(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=300, files=2)
    result = run_cli("convert", str(folder), str(tmp_path / "lake" / "t"), "--runner", "spark", "--spark-master",
                     "local[2]", "--shards", "2", env={"SPARK_HOME": str(tmp_path / "removed-spark")})
    assert result.returncode == 0, result.stderr
    assert "2 shard tasks on the spark runner" in result.stdout


@needs_spark
def test_the_round_results_name_each_tasks_result_file_and_hold_no_statistics(tmp_path: Path) -> None:
    """What passes through Spark's collect() is a small record a shard; each task's result (the
    files it wrote, with their statistics) is a file of its own in the staging folder, which a
    configured staging folder keeps after a run that succeeded. With key attributes the key
    check is a round of the same application."""
    folder = doctor.make_export(tmp_path / "export", items=600, files=3, seed=5)
    staging = tmp_path / "staging"
    runner = dataclasses.replace(SPARK, staging=str(staging))
    result = convert_export(folder, tmp_path / "lake" / "t", ConvertOptions(runner=runner, key_attributes=KEYS))
    [run] = list(staging.iterdir())
    # a new table: a profile pass (round 0), the writing pass (round 1), the key check (round 2)
    request = json.loads((run / "round-2.json").read_bytes())["keys"]
    assert request["columns"] == _key_columns_of(folder) and request["files"] == [f.path for f in result.written]
    answer = json.loads((run / "round-2.results.json").read_bytes())
    assert answer["keys"] == {"files": len(result.written), "duplicate": None}
    document = (run / "round-1.results.json").read_text()
    assert "statistics" not in document and "written" not in document and "profile" not in document
    records = json.loads(document)
    assert records["format"] == "ddb_assets.shard-results/3"
    assert [r["shard"] for r in records["results"]] == [0, 1, 2]
    for record in records["results"]:
        assert set(record) == {"shard", "attempt", "result", "items", "rows", "files", "error"}
        assert record["result"] == str(run / "round-1" / f"shard-{record['shard']:05d}.attempt-0.result.json")
        written = json.loads(Path(record["result"]).read_bytes())["written"]
        assert len(written) == record["files"] >= 1 and record["error"] is None
        assert sum(w["statistics"]["record_count"] for w in written) == sum(w["rows"] for w in written) \
            == record["rows"] == record["items"]
    assert sum(r["rows"] for r in records["results"]) == result.commit.rows == 600


@pytest.mark.fast
def test_round_results_of_another_version_or_missing_a_result_are_one_line(tmp_path: Path) -> None:
    from ddb_assets.lake.shards.rounds import round_results
    from ddb_assets.lake.shards.spec import ShardFailed

    old = tmp_path / "round-0.results.json"  # as a job of the previous version writes it: whole results
    old.write_text(json.dumps({"format": "ddb_assets.shard-results/1", "results": [{"shard": 0, "written": []}]}))
    with pytest.raises(ShardFailed) as raised:
        round_results(old.read_bytes(), str(old))
    assert str(raised.value) == (
        f"{old}: the shard results are format ddb_assets.shard-results/1, this ddb-assets reads "
        f"ddb_assets.shard-results/3: the job ran another version of the package (upload this one with "
        f"`ddb-assets shard package`)")
    missing = str(tmp_path / "round-0" / "shard-00003.attempt-1.result.json")
    new = json.dumps({"format": "ddb_assets.shard-results/3", "results": [
        {"shard": 3, "attempt": 1, "result": missing, "items": 5, "rows": 5, "files": 1, "error": None}]})
    with pytest.raises(ShardFailed) as raised:
        round_results(new.encode(), str(old))
    assert str(raised.value) == f"{missing}: shard 4's result is missing"


@needs_spark
def test_a_cluster_master_without_a_staging_folder_its_executors_reach_is_refused(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=100, files=1)
    result = run_cli("convert", str(folder), str(tmp_path / "lake" / "t"), "--runner", "spark",
                     "--spark-master", "yarn")
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        "error: the spark runner with master yarn needs a staging folder its executors can write (the shards' "
        "results pass through it): an s3:// one, or one every machine shares (--staging; spark.staging in the "
        "settings)"], result.stderr
    assert not (tmp_path / "lake" / "t" / "metadata").exists()


# -- the key check on the engine --------------------------------------------------------------------

def _one_key_in_two_files(folder: Path) -> dict:
    """The first item of the export's first data file takes the key of the first item of its
    second: one key in two data files (so in two shards when each file is one). Returns that key
    (attribute -> DynamoDB JSON value)."""
    first, second = doctor.manifest_lines(folder)[:2]
    item = json.loads(doctor.decompressed(folder, second).split(b"\n")[0])["Item"]
    key = {name: item[name] for name in KEYS}

    def take(lines: list[bytes]) -> None:
        taken = json.loads(lines[0])
        taken["Item"].update(key)
        lines[0] = json.dumps(taken).encode()

    doctor.edit_lines(folder, first, take)
    return key


@needs_spark
def test_the_spark_runner_refuses_a_key_held_in_two_shards_as_the_local_runner_does_committing_nothing(
        tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=1200, files=4, seed=13)
    key = _one_key_in_two_files(folder)
    options = dict(partition_by="year", key_attributes=KEYS)
    with pytest.raises(DuplicateKey) as by_local:
        convert_export(folder, tmp_path / "lake" / "by_local", ConvertOptions(workers=1, **options))
    staging = tmp_path / "staging"
    runner = dataclasses.replace(SPARK, shards=4, staging=str(staging))  # one data file a shard
    root = tmp_path / "lake" / "t"
    with pytest.raises(DuplicateKey) as by_spark:
        convert_export(folder, root, ConvertOptions(runner=runner, **options))
    # the driver names where the two items are: the first line of each of the first two data files
    first, second = (doctor.data_path(folder, entry) for entry in doctor.manifest_lines(folder)[:2])
    assert str(by_spark.value) == str(by_local.value) == (
        f"{folder}: 2 items have the primary key product_id={key['product_id']['S']!r}, "
        f"review_id={key['review_id']['S']!r}: {first} line 1 and {second} line 1; a DynamoDB table holds one "
        f"item per key (a damaged or assembled export?)")
    target = lake_target(root, ConvertOptions())
    assert load_table(target.catalog, *target.identifier) is None  # nothing committed
    assert list(root.rglob("*.parquet")) == []  # and no shard's files left behind
    assert list(staging.iterdir()) == []  # nor the run's folder of specs, results and key round


def _key_columns_of(folder: Path) -> list[str]:
    _, profile = profile_export(folder, ConvertOptions(workers=1))
    plan = plan_table(profile)
    return [next(c.name for c in plan.columns if c.path == (name,) and c.encoding == "scalar") for name in KEYS]


@needs_spark
def test_the_key_round_keeps_string_decimal_int_and_binary_keys_as_duckdb_sees_them(tmp_path: Path) -> None:
    """Each key column type through Arrow, Spark and the results document, and back: the same
    duplicate as the local check finds; a file that cannot be read fails the check naming it."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ddb_assets.lake.shards.spark import SparkEngine
    from ddb_assets.lake.shards.spec import ShardFailed
    from ddb_assets.lake.unique_keys import duplicate_in_duckdb

    schema = pa.schema([("pk", pa.string()), ("amount", pa.decimal128(38, 2)), ("n", pa.int64()),
                        ("blob", pa.binary()), ("note", pa.string())])
    files = []
    for number in range(12):
        rows = range(50)
        table = pa.table({"pk": [f"p{number}-{i}" for i in rows], "amount": [Decimal(i) / 4 for i in rows],
                          "n": [number * 1000 + i for i in rows], "blob": [bytes([number, i, 0]) for i in rows],
                          "note": ["x"] * 50}, schema=schema)
        files.append(str(tmp_path / f"part-{number:02d}.parquet"))
        pq.write_table(table, files[-1])
    twice = pa.table({"pk": ["p7-3"], "amount": [Decimal("0.75")], "n": [7003], "blob": [bytes([7, 3, 0])],
                      "note": ["y"]}, schema=schema)
    pq.write_table(twice, tmp_path / "twice.parquet")
    columns = ["pk", "amount", "n", "blob"]
    expected = (["p7-3", Decimal("0.75"), 7003, bytes([7, 3, 0])], 2)
    assert duplicate_in_duckdb(files + [str(tmp_path / "twice.parquet")], columns) == expected
    with SparkEngine(ConvertOptions(runner=SPARK), "keys") as engine:
        assert engine.find_duplicate_key(files, columns) is None
        found = engine.find_duplicate_key(files + [str(tmp_path / "twice.parquet")], columns)
        assert found == expected and [type(v) for v in found[0]] == [str, Decimal, int, bytes]
        assert str(found[0][1]) == "0.75"  # the scale kept, as DuckDB gives it (the message shows it)
        gone = str(tmp_path / "gone.parquet")
        with pytest.raises(ShardFailed) as raised:
            engine.find_duplicate_key(files + [gone], columns)
    assert str(raised.value).startswith(f"the key check of {gone} failed after Spark's retries: ")
    assert "\n" not in str(raised.value)


@pytest.mark.fast
def test_a_key_round_and_its_answer_survive_json(tmp_path: Path) -> None:
    from decimal import Decimal

    from ddb_assets.exports.storage import S3Options
    from ddb_assets.lake.shards.key_round import decoded, duplicate_found, encoded, key_round
    from ddb_assets.lake.shards.rounds import RESULTS_FORMAT, failed_document
    from ddb_assets.lake.shards.spec import ShardFailed

    s3 = S3Options(endpoint_url="http://127.0.0.1:5000", region="eu-west-1", access_key="k", secret_key="s",
                   max_attempts=4)
    request = json.loads(json.dumps(key_round(["s3://b/t/data/a.parquet"], ["pk", "sk"], s3)))
    assert request == {"keys": {"files": ["s3://b/t/data/a.parquet"], "columns": ["pk", "sk"], "s3": {
        "endpoint_url": "http://127.0.0.1:5000", "region": "eu-west-1", "max_attempts": 4}}}  # never the keys
    values = ["a", Decimal("1.50"), -7, b"\x00\xff", None]
    pairs = json.loads(json.dumps([encoded(v) for v in values]))
    assert pairs == [["string", "a"], ["decimal", "1.50"], ["int", -7], ["binary", "AP8="], ["null", None]]
    assert [decoded(p) for p in pairs] == values and str(decoded(pairs[1])) == "1.50"
    answer = {"format": RESULTS_FORMAT, "keys": {"files": 3, "duplicate": {"values": pairs[:2], "count": 3}}}
    assert duplicate_found(json.dumps(answer).encode(), "r.json") == (["a", Decimal("1.50")], 3)
    answer["keys"]["duplicate"] = None
    assert duplicate_found(json.dumps(answer).encode(), "r.json") is None
    failed = failed_document({"where": "the key check of s3://b/a.parquet", "kind": "OSError", "message": "gone"})
    with pytest.raises(ShardFailed) as raised:
        duplicate_found(json.dumps(failed).encode(), "r.json", "its log: /tmp/x.log")
    assert str(raised.value) == ("the key check of s3://b/a.parquet failed after Spark's retries: OSError: gone "
                                 "(its log: /tmp/x.log)")
    old = {"format": "ddb_assets.shard-results/2", "results": []}  # a job script of the previous version
    with pytest.raises(ShardFailed) as raised:
        duplicate_found(json.dumps(old).encode(), "r.json")
    assert "format ddb_assets.shard-results/2, this ddb-assets reads ddb_assets.shard-results/3" in str(raised.value)


@pytest.mark.fast
def test_the_drivers_requests_run_side_by_side_in_order_and_the_first_error_is_raised() -> None:
    import threading
    import time

    from ddb_assets.lake.shards.io_pool import in_parallel

    running, most = [0], [0]
    lock = threading.Lock()

    def slow(n: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05 if n % 2 else 0.01)  # later items may end first: the order is the items'
        with lock:
            running[0] -= 1
        return n * n

    assert in_parallel(slow, range(40), threads=8) == [n * n for n in range(40)]
    assert 1 < most[0] <= 8

    def fails(n: int) -> int:
        if n in (5, 9):
            raise OSError(f"item {n}")
        return n

    with pytest.raises(OSError, match="item 5"):
        in_parallel(fails, range(20), threads=4)


@needs_spark
@pytest.mark.parametrize("point", [("ddb_assets.lake.shards.spark", "SparkEngine.__exit__", "before"),
                                   ("ddb_assets.lake.shards.driver", "read_in_shards", "after")],
                         ids=["as-the-engine-stops", "as-the-files-come-back"])
def test_ctrl_c_between_the_write_pass_and_the_commit_leaves_nothing_and_the_table_as_it_was(
        tmp_path: Path, point: tuple[str, str, str]) -> None:
    """The shards wrote every file and no commit has begun: a real `ddb-assets convert --runner
    spark` sent SIGINT there removes the run's files; the table keeps its snapshot and files."""
    import subprocess
    import sys

    from ddb_assets_tests.test_cli_errors import _SIGNALLED_AT

    lake = tmp_path / "lake"
    first = doctor.make_export(tmp_path / "first", items=200, files=2, seed=1)
    assert run_cli("convert", str(first), str(lake / "t"), "--workers", "1").returncode == 0
    before = run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout
    files = sorted(p for p in (lake / "t" / "data").rglob("*") if p.is_file())
    second = doctor.make_export(tmp_path / "second", items=300, files=3, seed=2)
    result = subprocess.run([sys.executable, "-c", _SIGNALLED_AT, *point, "SIGINT", "convert", str(second),
                             str(lake / "t"), "--runner", "spark", "--spark-master", "local[2]", "--shards", "2"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines()[-1] == "interrupted: nothing was committed"
    assert sorted(p for p in (lake / "t" / "data").rglob("*") if p.is_file()) == files  # none of the run's
    assert run_cli("history", "t", "--lake", str(lake), "--format", "json").stdout == before
