"""Benchmark: merging an incremental export against converting a fresh full export.

    .venv/bin/python bench/incremental_benchmark.py                       # 1,000,000 items, 1% changed
    .venv/bin/python bench/incremental_benchmark.py --items 100000 --rounds 1   # quick look
    .venv/bin/python bench/incremental_benchmark.py --merge-mode merge-on-read  # position deletes

A reviews-shaped table of ``--items`` items is exported in full at T0 (16 files). Then ``--changed``
of its items change in one hour's window: half are updated (rating and body), a quarter deleted, a
sixth move partition (their ``year`` changes), and new items are inserted (a tenth of the changes).
Three exports are written straight to folders (cached under ``bench/data/``): the full export at T0,
the window's incremental export (NEW_AND_OLD_IMAGES) and a fresh full export at the window's end.

Contenders, each its own process, measured from outside like ``run_benchmark.py`` (wall, CPU of the
whole process tree, peak PSS):

- ``full conversion``: ``ddb-assets convert`` of the fresh full export into a new table (what a
  daily full export costs every day);
- ``merge``: ``ddb-assets convert`` of the incremental export into the table converted from the
  full export at T0, one snapshot: ``--merge-mode copy-on-write`` (the default) rewrites the files
  holding touched keys; ``--merge-mode merge-on-read`` writes position-delete files instead.

Rounds are interleaved (merge, full, merge, full, ...); before each merge the base table is rolled
back to its T0 snapshot, so every merge does the same work. At the end the merged table is
reconciled with the fresh full export's table (they must be equal). Results go to
``bench/results/incremental-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_benchmark import PYTHON, measure  # noqa: E402

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
WINDOW = timedelta(hours=1)


def _requests(items: int, files: int) -> dict[str, Any]:
    from ddb_assets.local.export_writer import ExportRequest, IncrementalWindow
    from ddb_assets.local.sample_data import PARTITION_KEY, SORT_KEY, TABLE_NAME
    from ddb_assets.local.world import ACCOUNT_ID, DEFAULT_REGION

    table_arn = f"arn:aws:dynamodb:{DEFAULT_REGION}:{ACCOUNT_ID}:table/{TABLE_NAME}"

    def request(name: str, export_time: datetime, incremental: Any = None) -> ExportRequest:
        export_id = f"{int(export_time.timestamp() * 1000):014d}-{name}"
        return ExportRequest(export_arn=f"{table_arn}/export/{export_id}", table_arn=table_arn,
                             table_id="00000000-0000-0000-0000-000000000000", bucket="local-bucket",
                             prefix=name, output_format="DYNAMODB_JSON", start_time=export_time,
                             export_time=export_time, key_attributes=(PARTITION_KEY, SORT_KEY),
                             data_files=files, incremental=incremental)

    return {
        "full": request("full", T0),
        "incremental": request("incremental", T0 + WINDOW, IncrementalWindow(T0, T0 + WINDOW)),
        "after": request("after", T0 + WINDOW),
    }


def ensure_exports(items: int, files: int, changed: float, data_dir: Path) -> dict[str, Path]:
    """The three exports' folders (each holding ``manifest-summary.json``), generated once."""
    from ddb_assets.local.export_writer import FolderSink, write_export, write_incremental_export
    from ddb_assets.local.history import Change
    from ddb_assets.local.sample_data import PARTITION_KEY, SORT_KEY, SHAPE_VERSION, ReviewGenerator

    root = data_dir / f"incremental-v{SHAPE_VERSION}-{items}-{files}-{changed:g}"
    requests = _requests(items, files)
    folders = {name: root / request.folder for name, request in requests.items()}
    if all((folder / "manifest-summary.json").exists() for folder in folders.values()):
        return folders
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(11)
    touched = sorted(rng.sample(range(items), int(items * changed)))
    kinds = {}
    for number in touched:
        roll = rng.random()
        kinds[number] = "update" if roll < 0.55 else "delete" if roll < 0.83 else "move"
    inserts = max(1, len(touched) // 10)
    generator = ReviewGenerator(items + inserts, seed=7)
    print(f"generating {items:,} items, {len(touched):,} changed and {inserts:,} inserted, under {root} ...",
          flush=True)
    changes: list[Change] = []
    when = T0.timestamp()

    def changed_item(item: dict[str, Any], kind: str, number: int) -> dict[str, Any]:
        new = dict(item)
        local = random.Random(number)
        if kind == "move":
            year = int(item["year"]["N"]) + local.choice([-2, -1, 1, 2])
            new["year"] = {"N": str(year)}
            new["review_date"] = {"S": f"{year}{item['review_date']['S'][4:]}"}
        new["star_rating"] = {"N": str(local.randint(1, 5))}
        new["review_body"] = {"S": item["review_body"]["S"][::-1]}
        return new

    def key(item: dict[str, Any]) -> str:
        return f"{item[PARTITION_KEY]['S']}|{item[SORT_KEY]['S']}"

    def before() -> Iterator[dict[str, Any]]:
        for number, item in enumerate(generator):
            if number >= items:
                return
            yield item

    def after() -> Iterator[dict[str, Any]]:
        for number, item in enumerate(generator):
            kind = kinds.get(number)
            if number >= items:
                changes.append(Change(key(item), None, item, when + 60 + number % 3000))
                yield item
            elif kind is None:
                yield item
            elif kind == "delete":
                changes.append(Change(key(item), item, None, when + 60 + number % 3000))
            else:
                new = changed_item(item, kind, number)
                changes.append(Change(key(item), item, new, when + 60 + number % 3000))
                yield new

    write_export(requests["full"], before(), FolderSink(root), end_time=lambda: T0 + timedelta(minutes=5))
    write_export(requests["after"], after(), FolderSink(root), end_time=lambda: T0 + WINDOW + timedelta(minutes=5))
    write_incremental_export(requests["incremental"], changes, FolderSink(root),
                             end_time=lambda: T0 + WINDOW + timedelta(minutes=5))
    return folders


def _table(lake: Path, name: str) -> Any:
    from ddb_assets.lake.catalog import DEFAULT_NAMESPACE, CatalogConfig, load_table, open_catalog

    from ddb_assets.exports.storage import resolve

    return load_table(open_catalog(CatalogConfig(), resolve(str(lake))), DEFAULT_NAMESPACE, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of the items changed (default 0.01)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--merge-mode", choices=["copy-on-write", "merge-on-read"], default="copy-on-write",
                        help="how the merge applies the window (default copy-on-write)")
    parser.add_argument("--workers", type=int, default=0, help="converter workers (0: one per core)")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    args = parser.parse_args()

    from ddb_assets.lake.reconcile import reconcile
    from ddb_assets.lake.tables import rollback
    from ddb_assets.local.sample_data import PARTITION_KEY, SORT_KEY

    exports = ensure_exports(args.items, args.files, args.changed, args.data_dir)
    incremental = json.loads((exports["incremental"] / "manifest-summary.json").read_text())
    print(f"exports: full {exports['full']}, incremental {exports['incremental']} "
          f"({incremental['itemCount']:,} changes), after {exports['after']}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    lake = HERE / "out" / "incremental"
    shutil.rmtree(lake, ignore_errors=True)
    lake.mkdir(parents=True)

    def convert(source: Path, table: str, *extra: str) -> list[str]:
        return [PYTHON, "-m", "ddb_assets.cli", "convert", str(source), str(lake / table), "--workers",
                str(args.workers), "--partition-by", "year", *extra]

    base = measure("base conversion", convert(exports["full"], "reviews"))
    base_snapshot = _table(lake, "reviews").current_snapshot().snapshot_id
    results: dict[str, list[dict[str, Any]]] = {"merge": [], "full conversion": []}
    for round_number in range(args.rounds):
        if round_number:
            rollback(_table(lake, "reviews"), base_snapshot)
        results["merge"].append(measure("merge", convert(exports["incremental"], "reviews", "--merge-mode",
                                                         args.merge_mode)))
        results["full conversion"].append(measure("full conversion", convert(exports["after"], "reviews_after",
                                                                             "--rebuild")))

    found = reconcile(_table(lake, "reviews"), _table(lake, "reviews_after"), [PARTITION_KEY, SORT_KEY])
    print(("reconciliation: EQUAL" if found.equal else "reconciliation: NOT EQUAL") + f" ({found.describe()})")
    if not found.equal:
        raise SystemExit("the merged table differs from the fresh full export's table")

    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    ratio_wall = median("merge", "wall") / median("full conversion", "wall")
    ratio_cpu = median("merge", "cpu") / median("full conversion", "cpu")
    print(f"merge ({args.merge_mode}) / full conversion (medians of {args.rounds} rounds): wall {ratio_wall:.3f}, cpu {ratio_cpu:.3f}; "
          f"peak {median('merge', 'peak_rss') / 2**20:,.0f} MiB vs "
          f"{median('full conversion', 'peak_rss') / 2**20:,.0f} MiB")
    out = HERE / "results" / f"incremental-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(), "items": args.items, "files": args.files,
        "merge_mode": args.merge_mode,
        "changes": incremental["itemCount"], "cores": os.cpu_count(), "python": platform.python_version(),
        "base": {k: v for k, v in base.items() if k != "stdout"},
        "rounds": {name: [{k: v for k, v in r.items() if k != "stdout"} for r in runs] for name, runs in results.items()},
        "ratio_wall": ratio_wall, "ratio_cpu": ratio_cpu, "reconciliation": found.as_dict(),
    }, indent=1))
    print(f"figures: {out}")


if __name__ == "__main__":
    main()
