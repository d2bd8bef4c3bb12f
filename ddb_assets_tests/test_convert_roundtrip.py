"""Random items through the local world's JSON and ION exports, converted, read back exactly."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings

from ddb_assets.exports.decode import detect_dictionary_maps
from ddb_assets.lake.convert import ConvertOptions, convert_export, profile_export
from ddb_assets.lake.profile import profile_from_json, profile_to_json
from ddb_assets.local import emulator
from ddb_assets.local.loader import batch_write
from ddb_assets_tests import doctor
from ddb_assets_tests.conftest import make_table, wait_done
from ddb_assets_tests.lake_reader import expected_item, read_rows, rebuild_items
from ddb_assets_tests.strategies import item_batches


def _download_export(s3: Any, bucket: str, manifest_key: str, target: Path) -> Path:
    folder = manifest_key.rsplit("/", 1)[0]
    for entry in s3.list_objects_v2(Bucket=bucket, Prefix=folder + "/").get("Contents", []):
        path = target / entry["Key"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())
    return target / folder


def export_items(ddb: Any, s3: Any, bucket: str, batch: list[dict[str, Any]], tmp: Path) -> dict[str, Path]:
    name, arn = make_table(ddb)
    batch_write(ddb, name, batch)
    folders = {}
    for export_format in ("DYNAMODB_JSON", "ION"):
        started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, ExportFormat=export_format,
                                                    S3Prefix=f"{name}/{export_format}")["ExportDescription"]
        done = wait_done(ddb, started["ExportArn"])
        assert done["ExportStatus"] == "COMPLETED", done
        folders[export_format] = _download_export(s3, bucket, done["ExportManifest"], tmp / export_format)
    return folders


def _key(item: dict[str, Any]) -> str:
    return repr(item.get("pk"))


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(batch=item_batches())
# Found by the thorough profile: 29 significant digits were rounded to 28 by Decimal's default context.
@example(batch=[{"pk": {"S": "item-0"}, "sk": {"N": "1"}, "a": {"N": "1.0000000000000000000000000001"}}])
def test_random_items_round_trip_exactly(batch: list[dict[str, Any]], ddb: Any, s3: Any, bucket: str,
                                          tmp_path_factory: Any) -> None:
    emulator.settings["export_delay_seconds"] = 0.0
    tmp = tmp_path_factory.mktemp("roundtrip")
    folders = export_items(ddb, s3, bucket, batch, tmp)
    # Partitioned by year when the items' years are numbers or strings (an absent attribute, or one
    # mostly of another type, is refused: test_schema_evolution).
    kinds = [next(iter(item["year"])) for item in batch if "year" in item]
    partition_by = "year" if kinds and set(kinds) - {"NULL"} and set(kinds) <= {"N", "S", "NULL"} else None
    for export_format, folder in folders.items():
        for naming, one_pass in (("snake", False), ("glue", False), ("snake", True)):
            root = tmp / f"lake-{export_format}-{naming}-{one_pass}"
            options = ConvertOptions(workers=1, naming=naming, max_depth=2, dictionary_keys=4, partition_by=partition_by)
            known = None
            if one_pass:  # planned from a saved profile (as Dagster's raw_export leaves it), one pass
                export, profile = profile_export(folder, options)
                _, known = profile_from_json(profile_to_json(profile, export.export_id), obj="saved")
            convert_export(folder, root, options, known=known)
            meta, rows = read_rows(str(root))
            assert len(rows) == len(batch)
            got = sorted(rebuild_items(meta, rows), key=_key)
            want = sorted((expected_item(item, meta) for item in batch), key=_key)
            assert got == want, (export_format, naming, one_pass)


def test_reading_files_in_small_pieces_gives_the_same_table(tmp_path: Path) -> None:
    """Memory follows the piece size; the table must not depend on it (schemas widen across
    pieces, dictionary maps are detected in the first piece, columns keep their order)."""
    folder = doctor.make_export(tmp_path / "export", items=3000, files=3)
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    convert_export(folder, whole, ConvertOptions(workers=2))
    convert_export(folder, pieces, ConvertOptions(workers=2, piece_bytes=8 << 10))
    (meta_whole, rows_whole), (meta_pieces, rows_pieces) = read_rows(str(whole)), read_rows(str(pieces))
    assert meta_pieces["columns"] == meta_whole["columns"]  # names, field ids, types, mapping, in order
    key = lambda row: row["review_id"]  # noqa: E731
    assert sorted(rows_pieces, key=key) == sorted(rows_whole, key=key) and len(rows_whole) == 3000


def test_a_partition_goes_on_in_new_files_after_a_few_row_groups(tmp_path: Path) -> None:
    """An open Parquet writer holds every row group's metadata; files are closed after
    ROW_GROUPS_PER_FILE so memory does not grow with the export. Readers see the same rows."""
    import pyarrow.parquet as pq

    from ddb_assets.lake.writer import ROW_GROUPS_PER_FILE

    folder = doctor.make_export(tmp_path / "export", items=3000, files=2)
    small, default = tmp_path / "small", tmp_path / "default"
    convert_export(folder, small, ConvertOptions(workers=2, buffer_bytes=16 << 10, piece_bytes=8 << 10,
                                                 partition_by=None, small_partition_bytes=0))
    convert_export(folder, default, ConvertOptions(workers=2, partition_by=None))
    (meta, rows), (_, expected) = read_rows(str(small)), read_rows(str(default))
    files = [task.file for task in meta["table"].scan().plan_files()]
    assert len(files) > 2  # more than one file per worker
    groups = [pq.ParquetFile(f.file_path).metadata.num_row_groups for f in files]
    assert max(groups) <= ROW_GROUPS_PER_FILE and sum(f.record_count for f in files) == 3000
    key = lambda row: row["review_id"]  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key)


def test_one_pass_from_a_saved_profile_gives_the_same_table_without_a_work_folder(tmp_path: Path) -> None:
    """The profile says what the schema is before the first row is read: the table is the two
    stages' table (columns, their order, types, rows), with no spill at all."""
    folder = doctor.make_export(tmp_path / "export", items=3000, files=5)
    options = ConvertOptions(workers=2, piece_bytes=64 << 10, work_dir=str(tmp_path / "scratch"), partition_by="year")
    export, profile = profile_export(folder, options)
    _, saved = profile_from_json(profile_to_json(profile, export.export_id), obj="saved")
    two = convert_export(folder, tmp_path / "two", options)
    one = convert_export(folder, tmp_path / "one", options, known=saved)
    assert two.scratch_bytes > 0 and not two.one_pass
    assert one.scratch_bytes == 0 and one.one_pass and list((tmp_path / "scratch").iterdir()) == []
    (meta_two, rows_two), (meta_one, rows_one) = read_rows(str(tmp_path / "two")), read_rows(str(tmp_path / "one"))
    assert meta_one["columns"] == meta_two["columns"]
    assert set(one.partitions) == set(two.partitions) and len(one.partitions) > 10
    key = lambda row: row["review_id"]  # noqa: E731
    assert sorted(rows_one, key=key) == sorted(rows_two, key=key) and len(rows_one) == 3000


def test_a_nested_dictionary_map_round_trips_as_one_json_column(ddb: Any, s3: Any, bucket: str,
                                                                 tmp_path: Path) -> None:
    """Lifted out of the text before the parse (a map of maps keyed by dates), through both formats."""
    emulator.settings["export_delay_seconds"] = 0.0
    batch = [{"pk": {"S": f"item-{i}"}, "sk": {"N": str(i)}, "year": {"N": str(2020 + i % 3)},
              "stats": {"M": {"daily": {"M": {f"2024-02-{d:02d}": {"N": str(i * d)} for d in range(1 + i % 9)}
                                        | ({"note": {"M": {"deep": {"SS": ["a", "b"]}}}} if i % 5 == 0 else {})},
                              "total": {"N": str(i)}}}}
             for i in range(60)]
    for export_format, folder in export_items(ddb, s3, bucket, batch, tmp_path).items():
        root = tmp_path / f"lake-{export_format}"
        result = convert_export(folder, root, ConvertOptions(workers=2, dictionary_keys=4))
        names = [c.name for c in result.plan.columns]
        assert "stats__daily" in names and "stats__total" in names
        assert not any(name.startswith("stats__daily__") for name in names)  # not a column per date
        meta, rows = read_rows(str(root))
        got = sorted(rebuild_items(meta, rows), key=_key)
        want = sorted((expected_item(item, meta) for item in batch), key=_key)
        assert got == want, export_format
        if export_format == "DYNAMODB_JSON":  # and it went the lifted way
            data = b"".join(gzip.decompress(p.read_bytes()) for p in (folder / "data").glob("*.json.gz"))
            assert detect_dictionary_maps(data, 4) == frozenset({("stats", "daily")})
