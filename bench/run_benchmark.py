"""Benchmark: our converter against DuckDB, the naive Python path and the parse and write floors.

    make bench                                   # 1,000,000 items, 16 files (about 1 GB of JSON)
    .venv/bin/python bench/run_benchmark.py --items 200000 --skip naive
    .venv/bin/python bench/run_benchmark.py --scale-check   # also 2,000,000 items: peak RSS must not grow

Each contender runs as a separate process; wall time, CPU time (user + sys, workers included) and
peak RSS of the whole process tree are measured from outside. Outputs are cross-checked (rows per
partition, spot values) before any figure is printed. Results go to bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
PAGE = os.sysconf("SC_PAGE_SIZE")


TICKS = os.sysconf("SC_CLK_TCK")


def _proportional_rss(pid: str) -> int:
    """PSS: pages shared by several processes (forked workers) are split between them, so the
    tree's total is the memory really used, not a double count of copy-on-write pages."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        pass
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def tree_usage(root_pid: int) -> tuple[int, dict[int, float]]:
    """(proportional resident bytes of a process and all its descendants, CPU seconds per process).

    Only the tree's own processes are read (their children lists, stat and smaps_rollup): reading
    every process's smaps_rollup 20 times a second took a good part of a core from the contenders.
    """
    total, stack, tree = 0, [root_pid], {}
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += _proportional_rss(str(pid))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        tree[pid] = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        stack.extend(_children(pid))
    return total, tree


def measure(name: str, command: list[str]) -> dict:
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    cpu_by_pid: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        # Workers may be grandchildren (a forkserver's), which wait4 does not account for:
        # CPU time is summed over every process of the tree as last seen.
        nonlocal peak
        while not done.is_set():
            rss, cpu = tree_usage(process.pid)
            peak = max(peak, rss)
            for pid, seconds in cpu.items():
                cpu_by_pid[pid] = max(cpu_by_pid.get(pid, 0.0), seconds)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{name} failed ({process.returncode}):\n{stderr[-3000:]}")
    descendants = sum(seconds for pid, seconds in cpu_by_pid.items() if pid != process.pid)
    cpu = max(usage.ru_utime + usage.ru_stime, cpu_by_pid.get(process.pid, 0.0) + descendants)
    print(f"  {name:<17} wall {wall:7.2f}s  cpu {cpu:7.2f}s  peak rss {peak / 2**20:7.0f} MiB", flush=True)
    return {"name": name, "wall": wall, "cpu": cpu, "peak_rss": peak, "stdout": stdout[-2000:]}


def ensure_export(items: int, files: int, data_dir: Path) -> Path:
    from ddb_assets.local.sample_data import SHAPE_VERSION

    target = data_dir / f"reviews-v{SHAPE_VERSION}-{items}-{files}"
    summaries = glob.glob(str(target / "**" / "manifest-summary.json"), recursive=True)
    if summaries:
        return Path(summaries[0]).parent
    shutil.rmtree(target, ignore_errors=True)
    print(f"generating a {items:,}-item export in {files} files under {target} ...", flush=True)
    subprocess.run([PYTHON, "-m", "ddb_assets.cli", "generate-export", str(target), "--items", str(items),
                    "--files", str(files)], check=True)
    return Path(glob.glob(str(target / "**" / "manifest-summary.json"), recursive=True)[0]).parent


def doubled_export(export: Path, data_dir: Path) -> Path:
    """The same export with every data file twice (new names): twice the items, the same files.

    A freshly generated bigger export is not a fair memory test: its hottest product (Zipf)
    makes its largest file larger, and peak memory follows the largest file by design.
    """
    import base64
    import hashlib

    summary = json.loads((export / "manifest-summary.json").read_bytes())
    target_root = data_dir / f"{export.name}-doubled"
    folder = target_root / export.relative_to(export.parents[2])
    if (folder / "manifest-summary.json").exists():
        return folder
    shutil.rmtree(target_root, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    lines = [json.loads(l) for l in (export / "manifest-files.json").read_text().splitlines() if l]
    doubled = []
    for copy in ("a", "b"):
        for line in lines:
            name = line["dataFileS3Key"].rsplit("/", 1)[1]
            new_name = copy + name[1:]
            shutil.copyfile(export / "data" / name, folder / "data" / new_name)
            doubled.append({**line, "dataFileS3Key": line["dataFileS3Key"].rsplit("/", 1)[0] + "/" + new_name})
    files = "".join(json.dumps(l, separators=(",", ":")) + "\n" for l in doubled).encode()
    (folder / "manifest-files.json").write_bytes(files)
    summary["itemCount"] *= 2
    (folder / "manifest-summary.json").write_bytes(json.dumps(summary, separators=(",", ":")).encode())
    for stem in ("manifest-files", "manifest-summary"):
        digest = hashlib.md5((folder / f"{stem}.json").read_bytes()).digest()
        (folder / f"{stem}.md5").write_text(base64.b64encode(digest).decode())
    return folder


def uncompressed_bytes(export: Path) -> int:
    from isal import igzip

    return sum(len(igzip.decompress(Path(p).read_bytes())) for p in glob.glob(str(export / "data" / "*.json.gz")))


def rows_per_partition(root: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for path in root.rglob("*.parquet"):
        partition = next((p.split("=", 1)[1] for p in path.relative_to(root).parts if p.startswith("year=")), "")
        counts[partition] = counts.get(partition, 0) + pq.ParquetFile(path).metadata.num_rows
    return dict(sorted(counts.items()))


def our_table(root: Path):  # type: ignore[no-untyped-def]
    """Our Iceberg table at ``root`` (its catalog is the SQLite file in the folder above)."""
    from ddb_assets.exports.storage import resolve
    from ddb_assets.lake.catalog import CatalogConfig, load_table, open_catalog
    from ddb_assets.lake.destination import table_name_for

    catalog = open_catalog(CatalogConfig(), resolve(root.parent))
    return load_table(catalog, "ddb_lake", table_name_for(root.name))


def ours_rows_per_partition(root: Path) -> dict[str, int]:
    from ddb_assets.lake.tables import partition_rows

    return partition_rows(our_table(root))


def spot_check(ours: Path, duckdb_out: Path, samples: int = 25) -> None:
    """The same reviews, read from our table and DuckDB's, hold the same values."""
    import duckdb

    our_files = [task.file.file_path for task in our_table(ours).scan().plan_files()]
    con = duckdb.connect()
    picked = con.execute(f"SELECT review_id, star_rating, product_title, price::VARCHAR, year FROM "
                         f"read_parquet({our_files!r}) USING SAMPLE {samples} ROWS").fetchall()
    for review_id, stars, title, price, year in picked:
        theirs = con.execute(f"SELECT star_rating, product_title, price::VARCHAR, year FROM read_parquet("
                             f"'{duckdb_out}/*/*.parquet', hive_partitioning = true) WHERE review_id = ?",
                             [review_id]).fetchone()
        assert theirs == (stars, title, price, year), (review_id, theirs, (stars, title, price, year))


def scan_bytes(export: Path, out: Path) -> None:
    """The AWS walkthrough's point (322 MB vs 42 MB): a year filter on partitioned Parquet reads a
    sliver of what the same question costs over the raw export."""
    from ddb_assets.query.duckdb_engine import DuckDBEngine

    subprocess.run([PYTHON, "-m", "ddb_assets.cli", "convert", str(export), str(out / "flat")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = DuckDBEngine()
    files = sorted(glob.glob(str(export / "data" / "*.json.gz")))
    raw = engine.query(f"SELECT count(*) AS n, sum(length(Item.review_body.S)) AS body FROM read_json({files!r}, "
                       "format = 'newline_delimited') WHERE Item.year.N = '2015'", measure=True)
    engine.register_table("flat", our_table(out / "flat"))
    engine.register_table("partitioned", our_table(out / "ours"))
    question = "SELECT count(*) AS n, sum(length(review_body)) AS body FROM {} WHERE year = 2015"
    flat = engine.query(question.format("flat"), measure=True)
    partitioned = engine.query(question.format("partitioned"), measure=True)
    counts = {tuple(r.table.to_pylist()[0].values()) for r in (raw, flat, partitioned)}
    assert len(counts) == 1, f"the three answers differ: {counts}"
    print("bytes read by SELECT count(*), sum(length(review_body)) ... WHERE year = 2015 (DuckDB's I/O counter):")
    for name, result in (("raw gzip JSON", raw), ("unpartitioned Parquet", flat), ("partitioned Parquet", partitioned)):
        print(f"  {name:<22} {result.bytes_scanned / 1e6:10.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000, help="items in the generated export (default 1,000,000)")
    parser.add_argument("--files", type=int, default=16, help="its data files (default 16)")
    parser.add_argument("--workers", type=int, default=0, help="our converter's workers (0: one per core)")
    parser.add_argument("--skip", action="append", default=[], choices=["duckdb", "naive", "floor", "floor-explicit",
                                                                           "floor-write", "snappy", "one-pass",
                                                                           "dagster"])
    parser.add_argument("--scale-check", action="store_true", help="also convert 2x the items; compare peak RSS")
    parser.add_argument("--bytes-scanned", action="store_true",
                        help="also compare bytes read by a year-filtered query: raw gzip JSON vs unpartitioned "
                             "Parquet vs partitioned Parquet")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data",
                        help="where generated exports are cached (default bench/data)")
    parser.add_argument("--out-dir", type=Path, default=HERE / "out", help="where the contenders write, emptied first (default bench/out)")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results", help="where the JSON record goes (default bench/results)")
    args = parser.parse_args()

    export = ensure_export(args.items, args.files, args.data_dir)
    out = args.out_dir
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    size = uncompressed_bytes(export)
    print(f"export: {export} ({size / 1e6:,.0f} MB of DynamoDB JSON, {args.items:,} items, {args.files} files)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")

    results = []

    def ours_cmd(dest: str, *extra: str) -> list[str]:
        return [PYTHON, "-m", "ddb_assets.cli", "convert", str(export), str(out / dest), "--workers",
                str(args.workers), "--partition-by", "year", *extra]
    results.append(measure("ours", ours_cmd("ours")))
    if "one-pass" not in args.skip:
        # The Dagster path: raw_export profiles the export (inspect), parquet converts it in one pass.
        profile = out / "profile.json"
        results.append(measure("inspect", [PYTHON, "-m", "ddb_assets.cli", "inspect", str(export), "--workers",
                                           str(args.workers), "--partition-by", "year", "--save-profile",
                                           str(profile)]))
        results.append(measure("ours one pass", ours_cmd("ours-one-pass", "--profile", str(profile))))
    if "dagster" not in args.skip:
        # The Dagster path from export COMPLETED to snapshot: raw_export stages (validates, profiles
        # and writes the data files: the one read), parquet commits; one process each, as in Dagster.
        stage = measure("dagster stage", [PYTHON, str(HERE / "dagster_path.py"), "stage", str(export),
                                          str(out / "dagster"), "--workers", str(args.workers)])
        commit = measure("dagster commit", [PYTHON, str(HERE / "dagster_path.py"), "commit", str(export),
                                            str(out / "dagster"), "--workers", str(args.workers)])
        read = [line.split("=", 1)[1].split()[0] for r in (stage, commit) for line in r.get("stdout", "").splitlines()
                if line.startswith("export_bytes_read=")]
        results.append({"name": "dagster path", "wall": stage["wall"] + commit["wall"],
                        "cpu": stage["cpu"] + commit["cpu"], "peak_rss": max(stage["peak_rss"], commit["peak_rss"]),
                        "export_reads": sum(float(x) for x in read) if len(read) == 2 else None,
                        "steps": [stage, commit]})
    if "floor" not in args.skip:
        results.append(measure("floor", [PYTHON, str(HERE / "peers.py"), "floor", str(export)]))
    if "floor-explicit" not in args.skip:
        results.append(measure("floor-explicit", [PYTHON, str(HERE / "peers.py"), "floor-explicit", str(export)]))
    if "floor-write" not in args.skip:
        results.append(measure("floor-write", [PYTHON, str(HERE / "peers.py"), "floor-write", str(export),
                                               str(out / "floor-write")]))
    if "snappy" not in args.skip:
        # DuckDB writes snappy: the like-for-like codec (zstd files are about a third smaller).
        results.append(measure("ours snappy", ours_cmd("ours-snappy", "--compression", "snappy")))
    if "duckdb" not in args.skip:
        results.append(measure("duckdb", [PYTHON, str(HERE / "peers.py"), "duckdb", str(export), str(out / "duckdb")]))
    if "naive" not in args.skip:
        results.append(measure("naive", [PYTHON, str(HERE / "peers.py"), "naive", str(export), str(out / "naive")]))

    print("checking that the outputs agree ...", flush=True)
    expected = ours_rows_per_partition(out / "ours")
    assert sum(expected.values()) == args.items, "our table does not hold every item"
    if "duckdb" not in args.skip:
        assert rows_per_partition(out / "duckdb") == expected, "DuckDB's rows per partition differ from ours"
        spot_check(out / "ours", out / "duckdb")
    if "naive" not in args.skip:
        assert rows_per_partition(out / "naive") == expected, "the naive path's rows per partition differ from ours"
    if "snappy" not in args.skip:
        assert ours_rows_per_partition(out / "ours-snappy") == expected, "the snappy table's rows differ"
    if "one-pass" not in args.skip:
        assert ours_rows_per_partition(out / "ours-one-pass") == expected, "the one-pass table's rows differ"
    if "dagster" not in args.skip:
        assert ours_rows_per_partition(out / "dagster") == expected, "the Dagster path's rows differ"
    if "floor-write" not in args.skip:
        assert sum(rows_per_partition(out / "floor-write").values()) == args.items, "the write floor lost rows"
    print("  rows per partition agree; spot values agree")

    scale = scale_one_pass = None
    if args.scale_check:
        bigger = doubled_export(export, args.data_dir)
        scale = measure("ours x2", [PYTHON, "-m", "ddb_assets.cli", "convert", str(bigger), str(out / "ours2"),
                                    "--workers", str(args.workers), "--partition-by", "year"])
        if "one-pass" not in args.skip:
            subprocess.run([PYTHON, "-m", "ddb_assets.cli", "inspect", str(bigger), "--partition-by", "year",
                            "--save-profile", str(out / "profile2.json")], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            scale_one_pass = measure("ours one pass x2", [
                PYTHON, "-m", "ddb_assets.cli", "convert", str(bigger), str(out / "ours2-one-pass"), "--workers",
                str(args.workers), "--partition-by", "year", "--profile", str(out / "profile2.json")])

    ours = results[0]
    print()
    print(f"{'':<17} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} {'MB/s':>8} {'wall / ours':>12}")
    scaled = [r for r in (scale, scale_one_pass) if r]
    for r in results + scaled:
        print(f"{r['name']:<17} {r['wall']:8.2f} {r['cpu']:8.2f} {r['peak_rss'] / 2**20:9.0f} "
              f"{size / 1e6 / r['wall']:8.1f} {r['wall'] / ours['wall']:12.2f}")
    by_name = {r["name"]: r for r in results}
    print()
    if "duckdb" in by_name:
        print(f"ours / duckdb wall      {ours['wall'] / by_name['duckdb']['wall']:.2f}  (target <= 0.67)")
    if "naive" in by_name:
        print(f"naive / ours wall       {by_name['naive']['wall'] / ours['wall']:.1f}x  (target >= 10x)")
    if "floor" in by_name:
        print(f"ours / parse floor      {ours['wall'] / by_name['floor']['wall']:.2f}  (target <= 1.3)")
    if "floor-explicit" in by_name:
        print(f"ours / explicit floor   {ours['wall'] / by_name['floor-explicit']['wall']:.2f}  "
              f"(gunzip + read_json with an explicit schema, dictionary maps skipped)")
    if "floor-write" in by_name:
        print(f"ours / write floor      {ours['wall'] / by_name['floor-write']['wall']:.2f}  "
              f"(+ unwrapped columns written as zstd Parquet: no checks, no profile, numbers as text)")
        if "duckdb" in by_name:
            print(f"write floor / duckdb    {by_name['floor-write']['wall'] / by_name['duckdb']['wall']:.2f}  "
                  f"(gunzip + parse + write alone, against the 0.67 target)")
    if "ours one pass" in by_name and "duckdb" in by_name:
        print(f"ours one pass / duckdb  {by_name['ours one pass']['wall'] / by_name['duckdb']['wall']:.2f}  "
              f"(profile known: Dagster's parquet step after raw_export, or convert --profile)")
    if "dagster path" in by_name and "duckdb" in by_name:
        dagster = by_name["dagster path"]
        print(f"dagster path / duckdb   {dagster['wall'] / by_name['duckdb']['wall']:.2f}  (target <= 1.0; "
              f"raw_export's stage + parquet's commit; the export's bytes read {dagster['export_reads']}x)")
    if "ours snappy" in by_name and "duckdb" in by_name:
        print(f"ours snappy / duckdb    {by_name['ours snappy']['wall'] / by_name['duckdb']['wall']:.2f}  "
              f"(the same codec as DuckDB's)")
    print(f"ours peak RSS           {ours['peak_rss'] / 2**20:.0f} MiB  (target <= 800)")
    if scale:
        print(f"peak RSS at 2x items    {scale['peak_rss'] / 2**20:.0f} MiB vs {ours['peak_rss'] / 2**20:.0f} MiB")
    if scale_one_pass and "ours one pass" in by_name:
        print(f"one pass at 2x items    {scale_one_pass['peak_rss'] / 2**20:.0f} MiB vs "
              f"{by_name['ours one pass']['peak_rss'] / 2**20:.0f} MiB")

    if args.bytes_scanned:
        print()
        scan_bytes(export, out)

    record = {"when": datetime.now(timezone.utc).isoformat(), "items": args.items, "files": args.files,
              "uncompressed_bytes": size, "cores": os.cpu_count(), "python": platform.python_version(),
              "results": [{k: v for k, v in r.items() if k != "stdout"} for r in results + scaled]}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
