"""What every command prints, piped or captured in a narrow COLUMNS: ARNs, export ids, S3 keys and
paths stay on one line, progress counters are running totals, no log decorations (times,
``file.py:123``), no repeated lines, and an error is one line that starts with ``error:``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.cli_helpers import run_cli
from ddb_assets_tests.conftest import make_table

NARROW = {"COLUMNS": "60"}
ITEMS = 3000


def _narrow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={**NARROW, **(env or {})})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("lines")
    generated = _narrow("generate-export", str(tmp / "bucket"), "--items", str(ITEMS), "--files", "4")
    assert generated.returncode == 0, generated.stderr
    [summary] = (tmp / "bucket").glob("bench/AWSDynamoDB/*/manifest-summary.json")
    export = summary.parent
    converted = _narrow("convert", str(export), str(tmp / "lake" / "reviews"), "--workers", "2")
    assert converted.returncode == 0, converted.stderr
    history = run_cli("history", "reviews", "--lake", str(tmp / "lake"), "--format", "json")
    return {"tmp": tmp, "export": export, "summary": summary, "lake": tmp / "lake", "generated": generated,
            "converted": converted, "snapshot": __import__("json").loads(history.stdout)[0]["snapshot_id"]}


def _whole(text: str, value: str) -> None:
    """``value`` (an ARN, a path) is on one line of ``text``, unbroken."""
    assert any(value in line for line in text.splitlines()), (value, text)


BOX = tuple("┏┃┡│├└┌┢╇")


def _clean(result: subprocess.CompletedProcess[str]) -> None:
    out = result.stdout + result.stderr
    assert not re.search(r"\w+\.py:\d+", out), out  # rich's console.log source locations
    assert not re.search(r"^\[\d\d:\d\d:\d\d\]", out, re.M), out  # console.log times
    text = [line for line in out.splitlines() if line.strip() and not line.startswith(BOX)]
    assert len(text) == len(set(text)), text  # no line printed twice
    lines = result.stdout.splitlines()
    for first in [i for i, line in enumerate(lines) if line.startswith(("┏", "┌"))]:
        block = [line for line in lines[first:first + next((n for n, line in enumerate(lines[first:])
                                                            if not line.startswith(BOX)), len(lines))]]
        assert len({cell_len(line) for line in block}) == 1, block  # one block, one width: nothing wrapped


def _commands(setup: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
    lake, export = str(setup["lake"]), str(setup["export"])
    metadata = next((setup["lake"] / "reviews" / "metadata").glob("*.metadata.json"))
    arn_tail = export.rsplit("/", 1)[-1]
    return [
        ("inspect", ["inspect", export], [f"export/{arn_tail}", f"{ITEMS:,} items"]),
        ("tables", ["tables", "--lake", lake], [str(metadata), "ddb_lake.reviews: 3,000 rows"]),
        ("history", ["history", "reviews", "--lake", lake], [str(setup["snapshot"]), arn_tail]),
        ("maintain", ["maintain", "reviews", "--lake", lake, "--dry-run"], ["would be"]),
        ("rollback", ["rollback", "reviews", str(setup["snapshot"]), "--lake", lake], [str(metadata.parent)]),
        ("query", ["query", "SELECT * FROM reviews ORDER BY review_id LIMIT 2", "--lake", lake], ["review_body"]),
    ]


COMMAND_NAMES = ["inspect", "tables", "history", "maintain", "rollback", "query"]


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_captured_output_never_wraps_at_60_columns(setup: dict[str, Any], name: str) -> None:
    [(_, args, whole)] = [c for c in _commands(setup) if c[0] == name]
    result = _narrow(*args)
    assert result.returncode == 0, result.stderr
    for value in whole:
        _whole(result.stdout + result.stderr, value)
    _clean(result)
    assert any(cell_len(line) > 60 for line in result.stdout.splitlines()), result.stdout


def test_generate_export_and_convert_print_paths_whole_and_running_totals(setup: dict[str, Any]) -> None:
    generated, converted = setup["generated"], setup["converted"]
    _whole(generated.stdout, f"export written: {setup['tmp'] / 'bucket'}/bench/AWSDynamoDB/"
                             f"{setup['export'].name}/manifest-summary.json")
    for result in (generated, converted):
        _clean(result)
    parse = [line for line in converted.stderr.splitlines() if line.startswith("parse + verify")]
    write = [line for line in converted.stderr.splitlines() if line.startswith("write parquet")]
    assert len(parse) == 1 and re.search(rf" 4/4 {ITEMS:,} items ", parse[0]), converted.stderr
    assert len(write) == 1, converted.stderr
    progress = re.search(rf" (\d+)/\1 {ITEMS:,} rows in (\d+) files? ", write[0])
    # The files the snapshot holds, as the summary counts them (two workers' small files were
    # merged into one before the commit: the progress line said 2 before).
    summary = re.search(r"^files +(\d+) added, ", converted.stdout, re.M)
    assert progress and summary and progress[2] == summary[1] == "1", (write[0], converted.stdout)
    metadata = next((setup["lake"] / "reviews" / "metadata").glob("00000-*.metadata.json"))
    # Keys padded to the longest, "high-water mark".
    assert f"metadata         {metadata}" in converted.stdout.splitlines()


def test_inspect_counts_every_file_not_the_last(setup: dict[str, Any]) -> None:
    result = _narrow("inspect", str(setup["export"]))
    [parse] = [line for line in result.stderr.splitlines() if line.startswith("parse + verify")]
    assert re.search(rf" 4/4 {ITEMS:,} items ", parse), parse
    assert f"schema inferred from all {ITEMS:,} items" in result.stdout.splitlines()


def test_export_prints_its_arn_whole_and_each_status_once(world: LocalWorld, ddb: Any, s3: Any) -> None:
    name, arn = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    s3.create_bucket(Bucket="lines-exports")
    result = _narrow("export", name, "--bucket", "lines-exports", env=world.env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"export started: {re.escape(arn)}/export/\d{{14}}-[0-9a-f]{{8}}", lines[0]), lines
    export_id = lines[0].rsplit("/", 1)[-1]
    assert re.fullmatch(rf"COMPLETED after \d+s: 1 item, manifest s3://lines-exports/exports/{name}/AWSDynamoDB/"
                        rf"{export_id}/manifest-summary.json", lines[-1]), lines
    assert all(re.fullmatch(r"IN_PROGRESS after \d+s \(waiting for COMPLETED\)", line) for line in lines[1:-1])
    assert len(lines) <= 3
    _clean(result)


# Errors: one line, starting with "error:", the message as text (never rich markup), whatever it holds.
ERRORS = [
    ("markup-like text is printed as it is", ["query", "SELECT 1", "--lake", "{lake}", "--table", "[red]x"],
     "error: no table '[red]x' in the lake at {lake} (found: reviews)"),
    ("bracketed paths", ["inspect", "/no/[bold]such"],
     "error: /no/[bold]such/manifest-summary.json: missing: the export's manifest-summary.json was expected here"),
    ("an unknown table", ["history", "nope", "--lake", "{lake}"],
     "error: no table 'nope' in the lake at {lake} (found: reviews)"),
    ("several statements", ["query", "SELECT 1; SELECT 2", "--lake", "{lake}"],
     "error: the SQL holds 2 statements; query runs one at a time: run each with its own ddb-assets query"),
]


@pytest.mark.parametrize("case, args, expected", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_one_line(setup: dict[str, Any], case: str, args: list[str], expected: str) -> None:
    lake = str(setup["lake"])
    result = _narrow(*[a.format(lake=lake) for a in args])
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == expected.format(lake=lake) + "\n"


# Usage errors: the usage line, then one error line naming the option; exit code 2. Checked while
# the command line is parsed, before anything is read or written.
USAGE_ERRORS = [
    ("a bad --format", ["tables", "--lake", "{lake}", "--format", "xml"], "Usage: ddb-assets tables [OPTIONS]",
     "error: invalid value for '--format': 'xml' is not one of table, json (see ddb-assets tables --help)"),
    ("a bad query --format", ["query", "SELECT 1", "--lake", "{lake}", "--format", "xml"],
     "Usage: ddb-assets query [OPTIONS] {{SQL}}",
     "error: invalid value for '--format': 'xml' is not one of table, vertical, csv, json (see ddb-assets query "
     "--help)"),
    ("a bad history --format", ["history", "reviews", "--lake", "{lake}", "--format", "xml"],
     "Usage: ddb-assets history [OPTIONS] {{TABLE}}",
     "error: invalid value for '--format': 'xml' is not one of table, json (see ddb-assets history --help)"),
    ("a --limit of 0", ["query", "SELECT 1", "--lake", "{lake}", "--limit", "0"],
     "Usage: ddb-assets query [OPTIONS] {{SQL}}",
     "error: invalid value for '--limit': input should be greater than or equal to 1 (see ddb-assets query --help)"),
    ("an unknown option after the SQL", ["query", "SELECT 1", "--lake", "{lake}", "--bogus"],
     "Usage: ddb-assets query [OPTIONS] {{SQL}}", "error: no such option: --bogus (see ddb-assets query --help)"),
    ("SQL in two arguments", ["query", "SELECT", "1", "--lake", "{lake}"], "Usage: ddb-assets query [OPTIONS] {{SQL}}",
     'error: the SQL is 2 arguments; quote it as one (ddb-assets query "SELECT ...") (see ddb-assets query --help)'),
    # Values only the command can judge are usage errors too, found before anything is read.
    ("an --as-of that is no time", ["query", "SELECT 1", "--lake", "{lake}", "--as-of", "yesterday"],
     "Usage: ddb-assets query [OPTIONS] {{SQL}}",
     "error: invalid value for '--as-of': 'yesterday' is neither a snapshot id nor an ISO-8601 time "
     "(2026-11-30T12:00:00Z, 2026-11-30) (see ddb-assets query --help)"),
    ("a --raw without NAME=", ["query", "SELECT 1", "--lake", "{lake}", "--raw", "s3://b/[red]x/"],
     "Usage: ddb-assets query [OPTIONS] {{SQL}}",
     "error: invalid value for '--raw': 's3://b/[red]x/' is not NAME=SOURCE (a view name, then an export folder or "
     "manifest) (see ddb-assets query --help)"),
    ("a --catalog that is none", ["tables", "--lake", "{lake}", "--catalog", "bogus"], "Usage: ddb-assets tables [OPTIONS]",
     "error: invalid value for '--catalog': 'bogus' is not a catalog: use sql, sqlite:///relative/catalog.db, "
     "sqlite:////absolute/catalog.db, glue or rest:https://... (see ddb-assets tables --help)"),
    ("a --partition-by that is none", ["convert", "/no/export", "{lake}/t", "--partition-by", "month(a"],
     "Usage: ddb-assets convert [OPTIONS] {{SOURCE}} {{DEST}}",
     "error: invalid value for '--partition-by': 'month(a': write ATTR, year|month|day|hour(ATTR[, UNIT]) or "
     "bucket(N, ATTR) (see ddb-assets convert --help)"),
    ("an inspect --partition-by out of range", ["inspect", "/no/export", "--partition-by", "bucket(0, a)"],
     "Usage: ddb-assets inspect [OPTIONS] {{SOURCE}}",
     "error: invalid value for '--partition-by': 'bucket(0, a)': N must be between 1 and 100000 (see ddb-assets "
     "inspect --help)"),
]


@pytest.mark.parametrize("case, args, usage, expected", USAGE_ERRORS, ids=[e[0] for e in USAGE_ERRORS])
def test_usage_errors_are_the_usage_line_and_one_error_line(setup: dict[str, Any], case: str, args: list[str],
                                                            usage: str, expected: str) -> None:
    lake = str(setup["lake"])
    result = _narrow(*[a.format(lake=lake) for a in args])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == usage.format() + "\n" + expected.format(lake=lake) + "\n"
