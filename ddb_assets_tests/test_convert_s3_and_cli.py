"""The converter over S3 (the local world's, through AWS_ENDPOINT_URL) and from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typing import Any

from ddb_assets.lake.catalog import CatalogConfig, CatalogError
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.local.loader import batch_write
from ddb_assets.local.sample_data import ReviewGenerator
from ddb_assets.local.tables import create_reviews_table
from ddb_assets_tests import doctor
from ddb_assets_tests.lake_reader import read_rows, read_table_metadata
from ddb_assets_tests.cli_helpers import free_port, run_cli
from ddb_assets_tests.conftest import unique, wait_done


def test_s3_export_to_s3_lake(aws_env: dict[str, str], ddb: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    name = unique("reviews")
    arn = create_reviews_table(ddb, name)
    batch_write(ddb, name, ReviewGenerator(500, seed=4))
    started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="exports/reviews")
    done = wait_done(ddb, started["ExportDescription"]["ExportArn"])
    lake = unique("lake")
    s3.create_bucket(Bucket=lake)

    catalog = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}")
    result = convert_export(f"s3://{bucket}/{done['ExportManifest']}", f"s3://{lake}/reviews",
                            ConvertOptions(workers=2, partition_by="year", catalog=catalog))
    assert result.commit.rows == 500
    assert result.commit.metadata_location.startswith(f"s3://{lake}/reviews/metadata/")

    # Read it back independently: pyiceberg from the metadata file, its own S3 client at the endpoint.
    from pyiceberg.table import StaticTable

    table = StaticTable.from_metadata(result.commit.metadata_location, properties={
        "s3.endpoint": aws_env["AWS_ENDPOINT_URL"], "s3.region": "us-east-1", "s3.access-key-id": "testing",
        "s3.secret-access-key": "testing"})
    rows = table.scan().to_arrow()
    assert rows.num_rows == 500
    summary = table.current_snapshot().summary.additional_properties
    assert summary["ddb-assets.export-arn"] == done["ExportArn"]
    assert set(result.partitions) == {item["year"]["N"] for item in ReviewGenerator(500, seed=4)}
    assert all(task.file.file_path.startswith(f"s3://{lake}/reviews/data/year=") for task in table.scan().plan_files())
    assert sorted(rows.column("review_id").to_pylist()) == sorted(
        item["review_id"]["S"] for item in ReviewGenerator(500, seed=4))


def test_an_s3_lake_needs_a_catalog_it_can_live_in(aws_env: dict[str, str], tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=50)
    result = run_cli("convert", str(folder), "s3://some-bucket/lake/reviews")
    assert result.returncode == 1 and "no SQLite catalog can live" in result.stderr and "--catalog" in result.stderr


def test_cli_convert_prints_a_summary_and_inspect_prints_the_schema(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=400)
    result = run_cli("convert", str(folder), str(tmp_path / "lake" / "reviews"), "--workers", "2",
                     "--partition-by", "year")
    assert result.returncode == 0, result.stderr
    for text in ("items", "400", "partitions", "by year", "files", "MB/s", "mixed types", "scratch", "snapshot",
                 str(tmp_path / "lake" / "reviews" / "metadata")):
        assert text in result.stdout, result.stdout
    assert read_table_metadata(str(tmp_path / "lake" / "reviews"))["partition_spec"] == [("year", "identity")]

    inspected = run_cli("inspect", str(folder / "manifest-summary.json"), "--partition-by", "year")
    assert inspected.returncode == 0, inspected.stderr
    for text in ("exportArn", "itemCount", "400", "price", "N ", "S ", "yes", "reviewer.location.country",
                 "price__s: string", "partitioned by year"):
        assert text in inspected.stdout, text


def test_cli_glue_naming_and_no_partitioning(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=120)
    result = run_cli("convert", str(folder), str(tmp_path / "flat"), "--naming", "glue", "--partition-by", "")
    assert result.returncode == 0, result.stderr
    meta = read_table_metadata(str(tmp_path / "flat"))
    assert meta["partition_spec"] == []
    assert "item.product_title.s" in [c["name"] for c in meta["columns"]]


def test_cli_errors_stay_on_one_line_however_long(tmp_path: Path) -> None:
    long_path = tmp_path / ("a-very-long-folder-name-" * 6) / "export"
    result = run_cli("convert", str(long_path), str(tmp_path / "out"), env={"COLUMNS": "60"})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(long_path) in lines[0]
    # Bad option values are usage errors (exit 2), caught while the command line is parsed.
    bad_naming = run_cli("convert", str(long_path), str(tmp_path / "out"), "--naming", "camel")
    assert bad_naming.returncode == 2
    assert "error: invalid value for '--naming': 'camel' is not one of snake, glue" in bad_naming.stderr
    bad_codec = run_cli("convert", str(long_path), str(tmp_path / "out"), "--compression", "brotli")
    assert bad_codec.returncode == 2
    assert "error: invalid value for '--compression': 'brotli' is not one of zstd, snappy, lz4" in bad_codec.stderr


@pytest.mark.parametrize("codec, recorded", [("lz4", "LZ4"), ("snappy", "SNAPPY"), ("none", "UNCOMPRESSED")])
def test_cli_compression_picks_the_parquet_codec_and_keeps_the_rows(tmp_path: Path, codec: str, recorded: str) -> None:
    import pyarrow.parquet as pq

    folder = doctor.make_export(tmp_path / "export", items=300)
    tables = {}
    for name in ("zstd", codec):
        result = run_cli("convert", str(folder), str(tmp_path / name), "--compression", name)
        assert result.returncode == 0, result.stderr
        meta, rows = read_rows(str(tmp_path / name))
        files = [task.file.file_path for task in meta["table"].scan().plan_files()]
        codecs = {pq.ParquetFile(f).metadata.row_group(0).column(i).compression
                  for f in files for i in range(pq.ParquetFile(f).metadata.num_columns)}
        tables[name] = (codecs, sorted(rows, key=lambda r: r["review_id"]))  # pyarrow says LZ4 for LZ4_RAW
    assert tables["zstd"][0] == {"ZSTD"} and tables[codec][0] == {recorded}
    assert tables[codec][1] == tables["zstd"][1] and len(tables[codec][1]) == 300


def test_cli_a_work_folder_that_cannot_take_the_parsed_items_is_named_and_nothing_is_published(
        tmp_path: Path) -> None:
    """The real failure, not a stand-in: the process may write no file bigger than 256 KiB (the
    limit a full disk or a quota also imposes, as an OS error on write), and one parsed piece is
    bigger."""
    import os
    import resource
    import signal
    import subprocess

    from ddb_assets_tests.cli_helpers import ddb_assets_command

    folder = doctor.make_export(tmp_path / "export", items=3000, files=1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def small_files() -> None:  # in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    result = subprocess.run([*ddb_assets_command(), "convert", str(folder), str(tmp_path / "lake"), "--workers", "1",
                             "--work-dir", str(scratch)], capture_output=True, text=True, timeout=180,
                            preexec_fn=small_files, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 1, result.stderr
    assert "work folder" in result.stderr and str(scratch) in result.stderr and "--work-dir" in result.stderr, \
        result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "lake" / "metadata").exists()  # no table was created
    assert list(scratch.iterdir()) == []  # the run's scratch is removed


def test_cli_inspect_saves_a_profile_that_convert_uses_for_one_pass(tmp_path: Path) -> None:
    folder = doctor.make_export(tmp_path / "export", items=400)
    other = doctor.make_export(tmp_path / "other", items=400, seed=3)
    profile = tmp_path / "profile.json"
    inspected = run_cli("inspect", str(folder), "--save-profile", str(profile))
    assert inspected.returncode == 0, inspected.stderr
    assert "profile saved" in inspected.stdout and profile.exists()

    result = run_cli("convert", str(folder), str(tmp_path / "lake" / "reviews"), "--profile", str(profile),
                     "--work-dir", str(tmp_path / "scratch"))
    assert result.returncode == 0, result.stderr
    assert "one pass" in result.stdout and not (tmp_path / "scratch").exists()
    assert len(read_rows(str(tmp_path / "lake" / "reviews"))[1]) == 400

    wrong = run_cli("convert", str(other), str(tmp_path / "lake" / "other"), "--profile", str(profile))
    assert wrong.returncode == 1 and "is the profile of export" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "lake" / "other").exists()


def test_an_unreachable_destination_or_catalog_is_refused_before_the_export_is_read(
        aws_env: dict[str, str], s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = doctor.make_export(tmp_path / "export", items=50)
    catalog = tmp_path / "catalog.db"
    port = free_port()  # nothing listens there: a wrong endpoint
    # The user's retries (AWS_MAX_ATTEMPTS unset: ten) are not the probe's: it gives up after two.
    unreachable = run_cli("convert", str(folder), f"s3://{bucket}/lake/reviews", "--catalog", f"sqlite:///{catalog}",
                          env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}, unset=("AWS_MAX_ATTEMPTS",))
    assert unreachable.returncode == 1 and not catalog.exists()
    assert unreachable.stderr.splitlines() == [
        f"error: destination 's3://{bucket}/lake/reviews' cannot be written: S3 does not answer: check "
        f"AWS_ENDPOINT_URL (a local world must be running) and the network (no answer from http://127.0.0.1:{port} "
        f"during PutObject)"]

    # The catalog: a SQLite file in a folder that does not exist, a Glue endpoint that does not answer.
    nowhere = run_cli("convert", str(folder), f"s3://{bucket}/lake/reviews",
                      "--catalog", f"sqlite:///{tmp_path / 'nowhere' / 'catalog.db'}")
    assert nowhere.returncode == 1
    assert nowhere.stderr.splitlines() == [f"error: the catalog's folder {tmp_path / 'nowhere'} does not exist: "
                                           f"create it"]
    # Three slashes then a path: relative, as SQLAlchemy reads it; the line says how to write an absolute one.
    relative = run_cli("convert", str(folder), f"s3://{bucket}/lake/reviews", "--catalog",
                       f"sqlite://{tmp_path / 'nowhere' / 'catalog.db'}", cwd=tmp_path)
    shown = str(tmp_path / "nowhere").lstrip("/")
    assert relative.stderr.splitlines() == [
        f"error: the catalog's folder {shown} does not exist: create it (sqlite:///{shown}/catalog.db is relative "
        f"to the current folder, as SQLAlchemy reads it; an absolute path takes four slashes: "
        f"sqlite:///{tmp_path / shown / 'catalog.db'} is this one)"]
    glue = CatalogConfig("glue", properties={"glue.endpoint": f"http://127.0.0.1:{port}"})
    with pytest.raises(CatalogError) as caught:
        convert_export(folder, f"s3://{bucket}/lake/reviews", ConvertOptions(catalog=glue))
    refused = (f"the Glue catalog at http://127.0.0.1:{port} refused or did not answer (Could not connect to the "
               f"endpoint URL: \"http://127.0.0.1:{port}/\"): check AWS_ENDPOINT_URL_GLUE (else AWS_ENDPOINT_URL), "
               f"AWS_REGION and the credentials, or give another --catalog")
    assert str(caught.value) == refused
    # Glue's own endpoint variable is Glue's, even with S3's endpoint (the bucket's world) set.
    glue_only = run_cli("convert", str(folder), f"s3://{bucket}/lake/reviews", "--catalog", "glue",
                        env={"AWS_ENDPOINT_URL_GLUE": f"http://127.0.0.1:{port}"}, unset=("AWS_MAX_ATTEMPTS",))
    assert glue_only.stderr.splitlines() == [f"error: {refused}"]
    # Nothing was written: the probes were deleted, no data or metadata file is left.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == []
