"""Configuration and lake errors on the command line: one line naming the file and key, exit 1,
for every command that reads the configuration; and read commands never create a lake or catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddb_assets.settings import ConfigError, load_settings
from ddb_assets_tests.cli_helpers import run_cli

VALID = "lake_root: {lake}\ntables:\n  - table: reviews\n    export_bucket: ddb-exports\n"

# Every command that reads the configuration (query, tables, history, rollback, maintain).
COMMANDS = [("query", "SELECT 1"), ("tables",), ("history", "t"), ("rollback", "t", "1"), ("maintain", "t", "--dry-run")]

# (case, file text or None for a missing file, the error after "error: <file>: ")
PROBLEMS = [
    ("unknown key", VALID + "bogus: 1\n",
     "bogus: Extra inputs are not permitted (known keys here: profile, lake_root, aws, catalog, query_engine, "
     "maintenance, tables, sensor_interval_seconds, convert_workers, convert_json_reader, convert_work_dir, runner, "
     "spark, glue, emr_serverless, report_dirs)"),
    ("unknown nested key", VALID + "    partition_bye: year\n",
     "tables.0.partition_bye: Extra inputs are not permitted (known keys here: table, name, export_bucket, "
     "export_prefix, export_format, partition_by, naming, max_depth, dictionary_keys, compression, key_attributes, "
     "wait_for_export, enable_pitr, owners, incremental, history)"),
    ("wrong value", VALID + "    max_depth: lots\n",
     "tables.0.max_depth: Input should be a valid integer, unable to parse string as an integer (got 'lots')"),
    ("wrong choice", VALID + "    naming: camel\n", "tables.0.naming: Input should be 'snake' or 'glue' (got 'camel')"),
    ("validator message", VALID.replace("table: reviews", "table: r"),
     "tables.0.table: a table name has 3-255 characters of a-z, A-Z, 0-9, '_', '-', '.' (got 'r')"),
    ("invalid YAML", "lake_root: [\n",
     "not valid YAML at line 2, column 1: expected the node content, but found '<stream end>'"),
    ("not a mapping", "- a\n- b\n", "the configuration is a mapping of keys (lake_root, tables, ...), not a list"),
    ("a key given twice", VALID + "catalog:\n  namespace: ddb_lake\n  namespace: other\n",
     "not valid YAML at line 7, column 3: the key 'namespace' is given twice in one mapping"),
    ("unset variable", VALID.replace("{lake}", "${{DDB_ASSETS_UNSET_FOR_TEST}}"),
     "lake_root: the environment variable DDB_ASSETS_UNSET_FOR_TEST is not set (in ${DDB_ASSETS_UNSET_FOR_TEST}; set "
     "it, or give a default: ${DDB_ASSETS_UNSET_FOR_TEST:-DEFAULT})"),
    ("missing file", None, "cannot read the configuration (named by DDB_ASSETS_CONFIG) (No such file or directory)"),
]


# Every problem through `tables`; every other command with one problem of each kind (a key, the
# YAML, the file): they share the loading, so the whole matrix would only repeat itself slowly.
MATRIX = [(c, *p) for c in COMMANDS for p in PROBLEMS
          if c[0] == "tables" or p[0] in ("unknown nested key", "invalid YAML", "missing file")]


@pytest.mark.parametrize("command, case, text, error", MATRIX, ids=[f"{m[0][0]}-{m[1]}" for m in MATRIX])
def test_a_bad_configuration_is_one_line_naming_file_and_key(tmp_path: Path, command: tuple[str, ...], case: str,
                                                             text: str | None, error: str) -> None:
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text.format(lake=tmp_path / "lake"))
    result = run_cli(*command, env={"DDB_ASSETS_CONFIG": str(path)})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: {path}: {error}\n"


@pytest.mark.fast
@pytest.mark.parametrize("case, text, error", [p for p in PROBLEMS if p[1] is not None], ids=[p[0] for p in PROBLEMS
                                                                                               if p[1] is not None])
def test_dagster_gets_the_same_message(tmp_path: Path, case: str, text: str, error: str) -> None:
    # definitions.py loads the configuration with load_settings: the message Dagster shows is this one.
    path = tmp_path / "config.yaml"
    path.write_text(text.format(lake=tmp_path / "lake"))
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value) == f"{path}: {error}"


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_lake_that_does_not_exist_is_an_error_and_nothing_is_created(tmp_path: Path,
                                                                       command: tuple[str, ...]) -> None:
    missing = tmp_path / "no-lake"
    result = run_cli(*command, "--lake", str(missing))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"error: --lake {missing} does not exist (convert an export into it first: "
                             f"ddb-assets convert SOURCE {missing}/TABLE)\n")
    a_file = tmp_path / "afile"
    a_file.write_text("not a lake")
    result = run_cli(*command, "--lake", str(a_file))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: --lake {a_file} is a file, not a lake folder: give the folder that holds the lake's catalog.db\n"

    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    result = run_cli(*command, "--lake", str(empty))
    assert result.stderr == (f"error: the lake {empty} has no catalog (catalog.db): convert an export into it "
                             f"first, or give the catalog (--catalog)\n")

    catalog = f"sqlite:///{tmp_path / 'none.db'}"
    result = run_cli(*command, "--lake", str(empty), "--catalog", catalog)
    assert result.stderr == f"error: the catalog {catalog} does not exist (convert an export with this --catalog first)\n"
    assert not missing.exists() and list(empty.iterdir()) == [] and not (tmp_path / "none.db").exists()


def test_a_configured_catalog_that_does_not_exist_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "cat.yaml"
    lake = tmp_path / "lake"
    lake.mkdir()
    path.write_text(VALID.format(lake=lake) + "catalog: {kind: sql, uri: 'sqlite:////x/nowhere/catalog.db'}\n")
    for command in (("tables",), ("query", "SELECT 1")):
        result = run_cli(*command, env={"DDB_ASSETS_CONFIG": str(path)})
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (f"error: {path}: catalog.uri: the catalog sqlite:////x/nowhere/catalog.db does not "
                                 f"exist (correct the uri, or make the catalog: convert an export with --catalog "
                                 f"sqlite:////x/nowhere/catalog.db)\n")
    assert list(lake.iterdir()) == []


def test_the_configured_lake_root_that_does_not_exist_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(VALID.format(lake=tmp_path / "lake"))
    result = run_cli("tables", env={"DDB_ASSETS_CONFIG": str(path)})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"error: the lake {tmp_path / 'lake'} (lake_root of {path}) does not exist: "
                             f"give --lake, or convert an export into it first\n")


def test_the_configured_lake_root_without_a_catalog_is_named_with_its_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    (tmp_path / "lake").mkdir()
    path.write_text(VALID.format(lake=tmp_path / "lake"))
    result = run_cli("tables", env={"DDB_ASSETS_CONFIG": str(path)})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"error: the lake {tmp_path / 'lake'} (lake_root of {path}) has no catalog (catalog.db): "
                             f"convert an export into it first, or give --lake, or --catalog\n")
    assert list((tmp_path / "lake").iterdir()) == []  # no empty catalog made


@pytest.mark.parametrize("command", [("tables",), ("query", "SELECT 42 AS answer", "--format", "json")],
                         ids=["tables", "query"])
def test_with_lake_the_configuration_file_is_not_read(tmp_path: Path, command: tuple[str, ...]) -> None:
    """--lake names the whole lake (its folder and the catalog in it), as convert's DEST does: the
    configuration, even a broken one, is not read (README, "Usage errors and exit codes")."""
    from pyiceberg.catalog.sql import SqlCatalog

    lake = tmp_path / "lake"
    lake.mkdir()
    SqlCatalog("ddb_assets", uri=f"sqlite:///{lake / 'catalog.db'}", warehouse=f"file://{lake}")  # an empty lake
    broken = tmp_path / "config.yaml"
    broken.write_text("lake_root: [\n")
    result = run_cli(*command, "--lake", str(lake), env={"DDB_ASSETS_CONFIG": str(broken)})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == {"tables": f"no tables in sql catalog namespace ddb_lake (lake {lake})\n",
                             "query": "{\"answer\": 42}\n"}[command[0]]
    without = run_cli(*command, env={"DDB_ASSETS_CONFIG": str(broken)})  # and without --lake, it is read
    assert without.returncode == 1 and without.stderr.startswith(f"error: {broken}: not valid YAML")


def test_maintain_takes_the_configurations_maintenance_settings(tmp_path: Path) -> None:
    """`maintain` without --lake runs as the Dagster maintenance job does: the configuration's
    maintenance: block is its defaults (an option given still wins)."""
    from ddb_assets_tests import doctor

    lake = tmp_path / "lake"
    for number in range(3):
        folder = doctor.make_export(tmp_path / f"export{number}", items=40, seed=number)
        assert run_cli("convert", str(folder), str(lake / "reviews")).returncode == 0
    path = tmp_path / "config.yaml"
    path.write_text(VALID.format(lake=lake) + "maintenance:\n  expire_after_days: 0\n  keep_snapshots: 2\n"
                                              "  orphan_grace_hours: 0\n")
    env = {"DDB_ASSETS_CONFIG": str(path)}
    dry = run_cli("maintain", "reviews", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "1 snapshot would be expired" in dry.stdout  # 3 snapshots, 2 kept
    given = run_cli("maintain", "reviews", "--dry-run", "--keep-snapshots", "1", env=env)
    assert "2 snapshots would be expired" in given.stdout
    builtin = run_cli("maintain", "reviews", "--dry-run", "--lake", str(lake), env=env)  # not read with --lake
    assert "0 snapshots would be expired" in builtin.stdout  # 7 days


@pytest.mark.fast
def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    """A ``<<: *anchor`` merge then one of its keys written out is YAML's override, not a key given twice."""
    config = tmp_path / "c.yaml"
    config.write_text(f"lake_root: {tmp_path / 'lake'}\n"
                      "tables:\n  - &first {table: orders, export_bucket: shared, partition_by: year}\n"
                      "  - <<: *first\n    table: reviews\n    partition_by: month(created_at)\n")
    tables = load_settings(config).tables
    assert [(t.table, t.export_bucket, t.partition_by) for t in tables] == [
        ("orders", "shared", "year"), ("reviews", "shared", "month(created_at)")]


def test_a_namespace_without_tables_names_the_catalogs_others(tmp_path: Path) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    lake = tmp_path / "lake"
    lake.mkdir()
    catalog = SqlCatalog("ddb_assets", uri=f"sqlite:///{lake / 'catalog.db'}", warehouse=f"file://{lake}")
    catalog.create_namespace("ddb_lake")
    catalog.create_namespace("reports")
    result = run_cli("tables", "--lake", str(lake), "--namespace", "ddb_lak")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"no tables in sql catalog namespace ddb_lak (lake {lake}); the catalog's other "
                             f"namespaces: ddb_lake, reports (--namespace)\n")
