"""Report definitions: one SQL file each in ``query/reports/``; add a file, get a report asset.

The SQL is the portable subset DuckDB and Athena both run; ``{table}`` stands for the quoted
name of the lake table the report reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    sql_template: str

    def sql(self, table: str) -> str:
        return self.sql_template.replace("{table}", table)


def load_reports(extra_dirs: list[str] | tuple[str, ...] = ()) -> list[Report]:
    """The packaged reports plus every ``*.sql`` in ``extra_dirs`` (a file there overrides a
    packaged report of the same name)."""
    folders: list[Any] = [resources.files("ddb_assets") / "query" / "reports", *(Path(d) for d in extra_dirs)]
    by_name: dict[str, Report] = {}
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"report folder {folder} does not exist")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            name = entry.name[:-4]
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"report file {entry}: name it like top_customers.sql (lowercase, digits, _)")
            text = entry.read_text(encoding="utf-8")
            comments = [line[2:].strip() for line in text.splitlines() if line.startswith("--")]
            by_name[name] = Report(name, " ".join(comments) or entry.name, text)
    return [by_name[name] for name in sorted(by_name)]
