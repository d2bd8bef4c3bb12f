"""Report definitions: one SQL file each in ``query/reports/``; add a file, get a report asset.

The SQL is the portable subset DuckDB and Athena both run; ``{table}`` stands for the quoted
name of the lake table the report reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    sql_template: str

    def sql(self, table: str) -> str:
        return self.sql_template.replace("{table}", table)


def load_reports() -> list[Report]:
    reports = []
    folder = resources.files("ddb_assets") / "query" / "reports"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        comments = [line[2:].strip() for line in text.splitlines() if line.startswith("--")]
        reports.append(Report(entry.name[:-4], " ".join(comments) or entry.name, text))
    return reports
