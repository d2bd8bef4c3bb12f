"""Configuration errors name the key; the code location validates with no warnings of ours."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddb_assets.settings import ConfigError, default_config_path, load_settings

VALID = """
profile: local
lake_root: ./lake
tables:
  - table: reviews
    export_bucket: ddb-exports
"""


@pytest.mark.fast
def test_the_packaged_local_profile_loads() -> None:
    settings = load_settings(default_config_path())
    assert settings.profile == "local" and settings.tables[0].partition_by == "year"
    assert settings.wait_for_export(settings.tables[0]) is True


@pytest.mark.fast
def test_a_second_table_is_one_more_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(VALID + "  - table: orders\n    export_bucket: ddb-exports\n    partition_by: month\n")
    settings = load_settings(path)
    from ddb_assets.definitions import build_definitions

    keys = {k.to_user_string() for k in build_definitions(settings).resolve_asset_graph().get_all_asset_keys()}
    assert {"reviews/parquet", "orders/parquet", "orders/pitr_export"} <= keys


@pytest.mark.parametrize("text,fragments", [
    (VALID.replace("export_bucket: ddb-exports", "export_bucket: ddb-exports\n    naming: camel"),
     ["tables.0.naming", "snake", "glue"]),
    (VALID.replace("table: reviews", "table: r"), ["tables.0.table", "3-255 characters"]),
    (VALID + "    compression: brotli\n", ["tables.0.compression", "zstd", "lz4"]),
    (VALID + "convert_json_reader: simd\n", ["convert_json_reader", "'arrow-rs'", "'pyarrow'"]),
    (VALID + "    partition_bye: year\n", ["tables.0.partition_bye", "Extra inputs"]),
    ("profile: local\ntables: []\n", ["lake_root", "tables"]),
    ("profile: [\n", ["not valid YAML"]),
])
@pytest.mark.fast
def test_invalid_configuration_names_the_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value).startswith(str(path))
    for fragment in fragments:
        assert fragment in str(raised.value)


@pytest.mark.fast
def test_the_json_reader_setting_reaches_the_conversion(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(VALID)
    table = load_settings(path).tables[0]
    assert load_settings(path).convert_options(table).json_reader == "arrow-rs"  # the default
    path.write_text(VALID + "convert_json_reader: pyarrow\n")
    assert load_settings(path).convert_options(table).json_reader == "pyarrow"


@pytest.mark.fast
def test_environment_variables_expand_in_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(VALID.replace("./lake", "${MY_LAKE:-/default}"))
    assert load_settings(path).lake_root == "/default"
    monkeypatch.setenv("MY_LAKE", "s3://bucket/lake")
    assert load_settings(path).lake_root == "s3://bucket/lake"
    monkeypatch.setenv("MY_LAKE", "")  # as the shell's :-, an empty variable takes the default too
    assert load_settings(path).lake_root == "/default"
    monkeypatch.setenv("MY_BUCKET", "b-1")
    path.write_text(VALID.replace("ddb-exports", "${MY_BUCKET}-x"))
    assert load_settings(path).tables[0].export_bucket == "b-1-x"


@pytest.mark.fast
def test_an_unset_variable_without_a_default_is_an_error_naming_file_key_and_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It used to expand to "": an empty lake_root, which is the current folder.
    for name in ("NOPE", "NOPE_ENDPOINT", "NOPE_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(VALID.replace("./lake", "${NOPE}").replace("ddb-exports", "${NOPE_BUCKET:-fine}")
                    + "aws:\n  endpoint_url: http://${NOPE_ENDPOINT}:4566\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value) == (
        f"{path}: lake_root: the environment variable NOPE is not set (in ${{NOPE}}; set it, or give a default: "
        f"${{NOPE:-DEFAULT}}); aws.endpoint_url: the environment variable NOPE_ENDPOINT is not set (in "
        f"${{NOPE_ENDPOINT}}; set it, or give a default: ${{NOPE_ENDPOINT:-DEFAULT}})")
    path.write_text(VALID.replace("ddb-exports", "${NOPE_BUCKET}"))
    with pytest.raises(ConfigError, match=r": tables\.0\.export_bucket: the environment variable NOPE_BUCKET is "
                                          r"not set"):
        load_settings(path)
    path.write_text(VALID.replace("./lake", '""'))  # an empty lake_root written out is refused too
    with pytest.raises(ConfigError, match=r"c\.yaml: lake_root: String should have at least 1 character"):
        load_settings(path)


def test_dagster_definitions_validate_passes_without_warnings_from_our_code(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("")
    dagster = Path(sys.executable).parent / "dagster"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if "Warning" in line]
    assert not [line for line in warnings if "ddb_assets" in line], warnings


@pytest.mark.fast
def test_the_aws_example_profile_builds_definitions_without_touching_aws() -> None:
    from ddb_assets.definitions import build_definitions

    example = default_config_path().parent / "aws.example.yaml"
    settings = load_settings(example)
    assert settings.profile == "aws" and settings.aws.endpoint_url is None
    assert settings.wait_for_export(settings.tables[0]) is False  # on AWS, the sensor waits instead
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("reviews_export_completion_sensor")
    import dagster as dg
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


@pytest.mark.fast
def test_a_report_is_added_by_adding_a_sql_file(tmp_path: Path) -> None:
    from ddb_assets.definitions import build_definitions

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "vine_share.sql").write_text("-- Share of Vine reviews.\nSELECT vine, COUNT(*) AS n FROM {table} GROUP BY vine\n")
    path = tmp_path / "c.yaml"
    path.write_text(VALID + f"report_dirs: [{reports}]\n")
    graph = build_definitions(load_settings(path)).resolve_asset_graph()
    import dagster as dg
    node = graph.get(dg.AssetKey(["reviews", "vine_share"]))
    assert node.description == "Share of Vine reviews." and dg.AssetKey(["reviews", "parquet"]) in node.parent_keys
