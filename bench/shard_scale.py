"""Scale measurements for the shard runners (issue 13, item 5), and the projection built on them.

    .venv/bin/python bench/shard_scale.py                         # all three parts, 1,000 shards
    .venv/bin/python bench/shard_scale.py --shards 200 --skip commit
    .venv/bin/python bench/shard_scale.py --only throughput --export bench/data/reviews-v2-1000000-16

Three parts, each printing its figures; all of them go to ``bench/results/shards-<timestamp>.json``:

``shards``      per-shard overhead: an export of many tiny data files (a few items each) converted
                with ``--runner spark`` on pyspark ``local[N]``, once cut into ``--shards`` shards and
                once into ``--few-shards``; overhead per shard = wall difference / shard difference.
                Each conversion runs as its own process (wall and CPU seconds of the whole tree: the
                JVM and Spark's Python workers included), instrumented from inside: the driver's
                planning, each round's spec writing, Spark's time and the reading of the results,
                the commit.
``commit``      the one commit of N data files in one snapshot (``commit_export``, the driver's own
                call): the files are real Parquet files of a planned table (a small conversion's,
                hard-linked N times under new names), committed to a new table, then replaced by N
                others (the next full export); time, and the sizes of metadata.json, the manifest
                list and the manifests.
``throughput``  one shard worker (``run_shard``, in this process) on a slice of a bigger export:
                the profile pass and the write pass, MB of JSON and items per CPU-second.

Then the projection (wall time and cost for 0.1-50 TB exports on 10-500 executors) is printed as
the Markdown table of bench/README.md, from the figures measured (or from ``--from-results FILE``).
No figure here is asserted anywhere: the machine is shared, so CPU seconds stand beside wall ones.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_benchmark import PYTHON, ensure_export, measure  # noqa: E402

PARTS = ("throughput", "commit", "shards")  # the long one last
PROBE = "_probe"  # argv[1] of the child process that runs one instrumented sharded conversion

# --- the projection's assumptions (bench/README.md states them with their date) -------------------
PRICES_AS_OF = "2025 list prices, us-east-1 (not re-checked from this machine: verify before budgeting)"
EMR_SERVERLESS_VCPU_HOUR = 0.052624  # USD per vCPU-hour
EMR_SERVERLESS_GB_HOUR = 0.0057785  # USD per GB-hour of memory
GB_PER_EXECUTOR = 4  # one core, 4 GB (a shard worker peaks near 300 MiB; Spark's JVM and overhead take the rest)
GLUE_DPU_HOUR = 0.44  # USD per DPU-hour (1 DPU = 4 vCPU, 16 GB: G.1X), per second, 1 minute minimum
S3_GET_PER_1000, S3_PUT_PER_1000 = 0.0004, 0.005
DYNAMODB_EXPORT_PER_GB = 0.10  # the full export itself (the table's size), for scale
SIZES_TB = (0.1, 1.0, 10.0, 50.0)  # TB (10^12 bytes) of DynamoDB JSON as exported (decompressed)
EXECUTORS = (10, 100, 500)
DATA_FILE_GZIP_MB = 100  # assumed size of one gzip data file of the export (AWS does not document it)
PARTITIONS_PER_SHARD = 20  # files a writing shard opens: one per partition it meets (20 years here)
APP_START_SECONDS = 60  # an EMR Serverless / Glue application's start (local Spark: measured below)


def now() -> float:
    return time.monotonic()


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- part 1: per-shard overhead ---------------------------------------------------------------------

class _TimedEngine:
    """The runner's engine, with each round timed from the driver's side (spec writing, waiting
    for Spark, reading the results) and its start and stop."""

    def __init__(self, engine: Any, spans: list[dict], origin: float):
        self.engine, self.spans, self.origin, self.rounds = engine, spans, origin, 0

    def __enter__(self) -> "_TimedEngine":
        started = now()
        self.engine.__enter__()
        self.spans.append({"what": "engine start", "at": started - self.origin, "seconds": now() - started})
        return self

    def find_duplicate_key(self, files: list, columns: list) -> Any:
        started = now()
        found = self.engine.find_duplicate_key(files, columns)
        self.spans.append({"what": "key check", "at": started - self.origin, "files": len(files),
                           "seconds": now() - started})
        return found

    def run(self, specs: list, options: Any = None) -> list:
        self.rounds += 1
        engine, span = self.engine, {"what": f"round {self.rounds}", "tasks": len(specs)}
        started = now()
        span["at"] = started - self.origin
        publish, wait = engine._publish, engine._wait_for

        def timed_publish(location: Any, data: bytes) -> None:
            span["specs_written"] = now() - started
            publish(location, data)

        def timed_wait(location: Any) -> dict:
            document = wait(location)
            span["results_seen"] = now() - started
            return document

        engine._publish, engine._wait_for = timed_publish, timed_wait
        try:
            results = engine.run(specs)
        finally:
            del engine._publish, engine._wait_for  # the class's own again (the stop round uses it)
        span["seconds"] = now() - started
        span["results_read"] = span["seconds"] - span["results_seen"]
        span["spark"] = span["results_seen"] - span["specs_written"]
        span["task_seconds"] = sum(r.seconds for r in results)
        span["task_max"] = max((r.seconds for r in results), default=0.0)
        span["files_written"] = sum(len(r.written) for r in results)
        self.spans.append(span)
        return results

    def __exit__(self, *exc: Any) -> None:
        started = now()
        self.engine.__exit__(*exc)
        self.spans.append({"what": "engine stop", "at": started - self.origin, "seconds": now() - started})


def _timed(module: Any, name: str, spans: list[dict], origin: float) -> None:
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = now()
        try:
            return real(*args, **kwargs)
        finally:
            spans.append({"what": name, "at": started - origin, "seconds": now() - started})

    setattr(module, name, wrapper)


def probe(arguments: dict) -> None:
    """In the child process: one sharded conversion, instrumented; its timings to arguments['out']."""
    import ddb_assets.lake.shards.driver as driver
    from ddb_assets.lake.convert import ConvertOptions, convert_export
    from ddb_assets.lake.shards.options import RunnerOptions

    origin = now()
    spans: list[dict] = []
    events: dict[str, float] = {}
    real_open = driver.open_engine
    driver.open_engine = lambda options, run: _TimedEngine(real_open(options, run), spans, origin)
    # _finish_files: the small partitions' files merged, then the key check (lake/convert.py).
    for name in ("shard_specs", "_plan", "check_profile", "_finish_files", "commit_export"):
        _timed(driver, name, spans, origin)
    # A staging folder of this run's own: other programs on a shared machine tidy TMPDIR's
    # ddb-assets-* folders, the runner's default staging among them.
    runner = RunnerOptions(kind="spark", shards=arguments["shards"], spark_master=arguments["master"],
                           spark_conf=(("spark.ui.enabled", "false"),), staging=arguments["staging"])
    options = ConvertOptions(partition_by=arguments["partition_by"], runner=runner)

    def progress(kind: str, info: dict) -> None:
        events.setdefault(kind, now() - origin)  # the first of each kind

    result = convert_export(arguments["source"], arguments["dest"], options, progress=progress)
    Path(arguments["out"]).write_text(json.dumps({
        "shards": result.shards, "rows": result.commit.rows, "files_committed": len(result.written),
        "seconds": now() - origin, "events": events, "spans": spans}))


def shard_overhead(args: argparse.Namespace, work: Path) -> dict:
    # Items go to files by a hash of their product (Zipf-distributed, as hot keys are): with 10% more
    # files than shards and 50 items a file, every shard gets at least one file with items.
    files = math.ceil(args.shards * 1.1)
    items = files * args.items_per_file
    print(f"\n== shards: {items:,} items in {files:,} data files, spark {args.spark_master}; load {_load()}",
          flush=True)
    from ddb_assets.local.bulk_export import generate_folder_export

    source = generate_folder_export(work / "tiny-export", items=items, files=files, seed=5).parent
    runs = []
    for shards in (args.few_shards, args.shards):
        out = work / f"probe-{shards}.json"
        command = [PYTHON, str(Path(__file__).resolve()), PROBE, json.dumps({
            "source": str(source), "dest": str(work / "lake" / f"tiny_{shards}"), "shards": shards,
            "staging": str(work / f"staging-{shards}"),
            "master": args.spark_master, "partition_by": args.partition_by, "out": str(out)})]
        load = _load()
        outside = measure(f"{shards} shards", command)
        inside = json.loads(out.read_text())
        rounds = [s for s in inside["spans"] if s["what"].startswith("round")]
        named = {s["what"]: s for s in inside["spans"] if not s["what"].startswith("round")}
        run = {"shards_asked": shards, "shards": inside["shards"], "load_before": load, "wall": outside["wall"],
               "cpu": outside["cpu"], "peak_rss": outside["peak_rss"], "rows": inside["rows"],
               "files_committed": inside["files_committed"], "inside": inside}
        runs.append(run)
        for r in rounds:
            print(f"    {r['what']}: {r['tasks']:,} tasks {r['seconds']:.2f}s = specs written {r['specs_written']:.2f}s"
                  f" + Spark {r['spark']:.2f}s + results read {r['results_read']:.2f}s; the tasks' own"
                  f" {r['task_seconds']:.2f}s (longest {r['task_max']:.2f}s), {r['files_written']:,} files",
                  flush=True)
        print("    " + ", ".join(f"{k} {named[k]['seconds']:.2f}s" for k in
                                 ("engine start", "shard_specs", "_plan", "engine stop", "check_profile",
                                  "_finish_files", "commit_export") if k in named),
              flush=True)
        if inside["rows"] != items:
            raise SystemExit(f"the {shards}-shard conversion committed {inside['rows']:,} rows, not {items:,}")
    few, many = runs
    d_shards = many["shards"] - few["shards"]
    per_shard = (many["wall"] - few["wall"]) / d_shards
    per_shard_cpu = (many["cpu"] - few["cpu"]) / d_shards
    slots = _slots(args.spark_master)
    rounds_many = [s for s in many["inside"]["spans"] if s["what"].startswith("round")]
    # Slot-seconds each task cost outside the shard's own code, in the write round (the application
    # is up by then), and on the driver's side (specs written, results read) per task.
    write = rounds_many[-1]
    outside_code = (write["spark"] * slots - write["task_seconds"]) / write["tasks"]
    driver_side = sum(r["specs_written"] + r["results_read"] for r in rounds_many) / \
        sum(r["tasks"] for r in rounds_many)
    summary = {"per_shard_wall": per_shard, "per_shard_cpu": per_shard_cpu, "slots": slots,
               "per_task_slot_seconds_outside_shard_code": outside_code, "per_task_driver_seconds": driver_side,
               "passes": len(rounds_many)}
    print(f"  overhead per shard ({len(rounds_many)} passes): {per_shard:.3f} s wall, {per_shard_cpu:.3f} CPU-s; "
          f"per task outside the shard's code {outside_code:.3f} slot-s, on the driver {driver_side * 1000:.1f} ms",
          flush=True)
    return {"items": items, "data_files": files, "runs": runs, "summary": summary}


def _slots(master: str) -> int:
    inside = master[master.find("[") + 1:master.find("]")] if "[" in master else "1"
    first = inside.split(",")[0]
    return (os.cpu_count() or 1) if first == "*" else int(first)


# --- part 2: one commit of N files ------------------------------------------------------------------

def commit_scale(args: argparse.Namespace, work: Path) -> dict:
    import ddb_assets.lake.convert as convert
    from ddb_assets.lake.convert import ConvertOptions, convert_export, lake_target
    from ddb_assets.local.bulk_export import generate_folder_export

    print(f"\n== commit: {', '.join(f'{n:,}' for n in args.commit_files)} data files in one snapshot; load {_load()}",
          flush=True)
    source = generate_folder_export(work / "seed-export", items=args.seed_items, files=4, seed=9).parent
    captured: dict[str, Any] = {}
    real = convert.commit_export

    def capturing(catalog: Any, identifier: Any, location: str, plan: Any, written: list, export: Any,
                  **kwargs: Any) -> Any:
        captured.update(plan=plan, written=list(written), export=export)
        return real(catalog, identifier, location, plan, written, export, **kwargs)

    convert.commit_export = capturing
    options = ConvertOptions(partition_by="year", workers=1)
    try:
        convert_export(source, work / "lake" / "seed", options)
    finally:
        convert.commit_export = real
    seed, plan, record = captured["written"], captured["plan"], captured["export"]
    print(f"  seed: {len(seed)} files ({len(seed)} year partitions) of {sum(w.rows for w in seed):,} rows, "
          f"{sum(w.bytes for w in seed) / len(seed) / 1024:.0f} KiB each on average", flush=True)
    out = []
    for count in args.commit_files:
        target = lake_target(work / "lake" / f"commit_{count}", options)
        first = _copies(seed, count, Path(target.location.path) / "data", "a")
        created = _commit(target, plan, first, record, f"{count:,} files, new table")
        later = replace(record, export_arn=record.export_arn + "-next", export_id=record.export_id + "-next",
                        export_time=_later(record.export_time))
        second = _copies(seed, count, Path(target.location.path) / "data", "b")
        replaced = _commit(target, plan, second, later, f"{count:,} files replacing {count:,}")
        out.append({"files": count, "create": created, "replace": replaced})
    return {"seed_files": len(seed), "seed_rows": sum(w.rows for w in seed), "commits": out}


def _copies(seed: list, count: int, data: Path, tag: str) -> list:
    """``count`` data files: the seed's, hard-linked under new names in their partition folders."""
    copies = []
    for number in range(count):
        w = seed[number % len(seed)]
        path = data / Path(w.path).parent.name / f"copy-{tag}-{number:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(w.path, path)
        copies.append(replace(w, path=str(path)))
    return copies


def _later(export_time: str | None) -> str:
    moment = datetime.fromisoformat((export_time or "2026-01-01T00:00:00Z").replace("Z", "+00:00"))
    return (moment.replace(microsecond=0) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _commit(target: Any, plan: Any, written: list, record: Any, label: str) -> dict:
    from ddb_assets.lake.commit import commit_export

    started, cpu = now(), cpu_self()
    commit = commit_export(target.catalog, target.identifier, target.location.uri, plan, written, record)
    seconds, cpu_seconds = now() - started, cpu_self() - cpu
    table = commit.table
    snapshot = table.current_snapshot()
    manifests = snapshot.manifests(table.io)
    sizes = {"metadata_json": _size(table.metadata_location), "manifest_list": _size(snapshot.manifest_list),
             "manifests": sum(m.manifest_length for m in manifests), "manifest_count": len(manifests)}
    expected = sum(w.rows for w in written)
    listed = len(table.inspect.files())
    if commit.rows != expected or listed != len(written) or commit.added != len(written):
        raise SystemExit(f"{label}: the snapshot holds {commit.rows:,} rows in {listed:,} files, "
                         f"not {expected:,} in {len(written):,}")
    print(f"  {label:<30} {seconds:6.2f}s wall {cpu_seconds:6.2f} CPU-s; "
          f"metadata.json {sizes['metadata_json'] / 1024:,.0f}"
          f" KiB, manifest list {sizes['manifest_list'] / 1024:,.1f} KiB, {sizes['manifest_count']} manifest(s) "
          f"{sizes['manifests'] / 1024:,.0f} KiB ({sizes['manifests'] / len(written):,.0f} B a file)", flush=True)
    return {"seconds": seconds, "cpu": cpu_seconds, "removed": commit.removed, **sizes}


def _size(uri: str) -> int:
    return os.path.getsize(uri.removeprefix("file://"))


# --- part 3: one worker's rate ------------------------------------------------------------------------

def throughput(args: argparse.Namespace, work: Path) -> dict:
    from ddb_assets.exports.reader import open_export
    from ddb_assets.lake.convert import ConvertOptions, _plan
    from ddb_assets.lake.shards import driver
    from ddb_assets.lake.shards.spec import written_to_json
    from ddb_assets.lake.shards.worker import run_shard
    from ddb_assets.lake.writer import FileTarget

    folder = Path(args.export) if args.export else ensure_export(args.throughput_items, args.throughput_files,
                                                                 Path(args.data_dir))
    export = open_export(str(folder))
    options = ConvertOptions(partition_by="year", workers=1)
    files = driver.shard_files(export, options)[:args.slice]
    print(f"\n== throughput: one shard worker on {len(files)} data files of {folder}; load {_load()}", flush=True)
    rounds = []
    for number in range(args.rounds):
        run = f"throughput-{number}"
        spec = driver._spec(export, options, run, 0, 1, files)
        profiled, profile_wall, profile_cpu = _timed_shard(run_shard, spec)
        plan = _plan(profiled.profile, options, None, export)
        source = plan.schema.partition_source()
        data = work / f"throughput-lake-{number}" / "data"
        data.mkdir(parents=True)
        target = FileTarget(data=str(data), run=run, partition=plan.schema.partition if source else None,
                            source_column=source.name if source else None, compression=options.compression)
        writing = replace(spec, schema=plan.schema, active=plan.active, target=target)
        written, write_wall, write_cpu = _timed_shard(run_shard, writing)
        json_mb = sum(r.uncompressed for r in written.reads) / 1e6
        gzip_mb = sum(r.compressed for r in written.reads) / 1e6
        items = sum(r.items for r in written.reads)
        parquet_mb = sum(w.bytes for w in written.written) / 1e6
        entry = {"json_mb": json_mb, "gzip_mb": gzip_mb, "items": items, "parquet_mb": parquet_mb,
                 "files_written": len(written.written), "profile_wall": profile_wall, "profile_cpu": profile_cpu,
                 "write_wall": write_wall, "write_cpu": write_cpu, "load_after": _load(),
                 # what passes through the staging folder and Spark's collect per shard
                 "spec_bytes": len(writing.to_json()), "result_bytes": len(written.to_json()),
                 # of which the files written (their statistics): per file
                 "result_bytes_per_file": sum(len(json.dumps(written_to_json(w), separators=(",", ":")))
                                              for w in written.written) / max(1, len(written.written))}
        rounds.append(entry)
        print(f"  round {number + 1}: {json_mb:,.0f} MB of JSON ({gzip_mb:,.0f} MB gzip, {items:,} items): "
              f"profile pass {profile_wall:.2f}s wall {profile_cpu:.2f} CPU-s ({json_mb / profile_cpu:.1f} MB/CPU-s); "
              f"write pass {write_wall:.2f}s wall {write_cpu:.2f} CPU-s ({json_mb / write_cpu:.1f} MB/CPU-s); "
              f"{len(written.written)} Parquet files, {parquet_mb:,.0f} MB; "
              f"spec {entry['spec_bytes'] / 1024:,.0f} KiB, "
              f"result {entry['result_bytes'] / 1024:,.0f} KiB ({entry['result_bytes_per_file']:,.0f} B a file written)",
              flush=True)
        shutil.rmtree(data.parent, ignore_errors=True)
    # the least CPU of the rounds: a shared machine only adds to it (and the first round warms imports up)
    best = lambda key: min(r[key] for r in rounds)  # noqa: E731
    first = rounds[0]
    summary = {"json_mb": first["json_mb"], "gzip_mb": first["gzip_mb"], "items": first["items"],
               "parquet_mb": first["parquet_mb"], "files_written": first["files_written"],
               "data_files": len(files), "spec_bytes": first["spec_bytes"], "result_bytes": first["result_bytes"],
               "result_bytes_per_file": first["result_bytes_per_file"],
               "profile_mb_per_cpu_s": first["json_mb"] / best("profile_cpu"),
               "write_mb_per_cpu_s": first["json_mb"] / best("write_cpu"),
               "both_mb_per_cpu_s": first["json_mb"] / (best("profile_cpu") + best("write_cpu")),
               "write_items_per_cpu_s": first["items"] / best("write_cpu")}
    print(f"  per CPU-second: write pass {summary['write_mb_per_cpu_s']:.1f} MB of JSON "
          f"({summary['write_items_per_cpu_s']:,.0f} items); profile + write {summary['both_mb_per_cpu_s']:.1f} MB",
          flush=True)
    return {"export": str(folder), "rounds": rounds, "summary": summary}


def _timed_shard(run: Callable, spec: Any) -> tuple[Any, float, float]:
    started, cpu = now(), cpu_self()
    result = run(spec)
    return result, now() - started, cpu_self() - cpu


# --- the projection -----------------------------------------------------------------------------------

def project(figures: dict) -> list[dict]:
    """Wall time and cost of a two-pass sharded conversion for each size and executor count.

    work per pass = size / per-core rate of that pass; shards = one per 256 MiB of gzip (the
    automatic count) rounded up to whole waves of the executors, never more than the export's
    data files (``--shards`` sets it so);
    wall = application start + both passes (waves of equal shards: ceil(shards / executors)
    times one shard's work plus the per-shard overhead) + the driver's per-task share of every
    task + the commit of the files written (per file, as measured at the largest count)."""
    from ddb_assets.lake.shards.plan import SHARD_BYTES

    rate = figures["throughput"]
    overhead = figures["shards"]
    commit = figures["commit"]
    gzip_ratio = rate["gzip_mb"] / rate["json_mb"]
    profile_rate, write_rate = rate["profile_mb_per_cpu_s"], rate["write_mb_per_cpu_s"]
    task_overhead = max(overhead["per_task_slot_seconds_outside_shard_code"], 0.0)
    driver_per_task = overhead["per_task_driver_seconds"]
    largest = max(commit["commits"], key=lambda c: c["files"])
    commit_per_file = max(largest["create"]["seconds"], largest["replace"]["seconds"]) / largest["files"]
    rows = []
    for size_tb in SIZES_TB:
        json_mb = size_tb * 1e6
        gzip_bytes = json_mb * 1e6 * gzip_ratio
        data_files = max(1, math.ceil(gzip_bytes / (DATA_FILE_GZIP_MB * 1e6)))
        automatic = max(2, math.ceil(gzip_bytes / SHARD_BYTES))
        items = json_mb / rate["json_mb"] * rate["items"]
        for executors in EXECUTORS:
            # whole waves: the automatic count rounded up to a multiple of the executors
            shards = min(data_files, executors * math.ceil(automatic / executors))
            busy = min(executors, shards)
            waves = math.ceil(shards / executors)
            per_shard_mb = json_mb / shards
            passes = waves * (per_shard_mb / profile_rate + task_overhead) + \
                waves * (per_shard_mb / write_rate + task_overhead)
            # each shard writes one file per partition it meets, and one more per 16 row groups
            files = shards * max(PARTITIONS_PER_SHARD, math.ceil(items / shards / (16 * 262_144)))
            commit_seconds = files * commit_per_file
            wall = APP_START_SECONDS + passes + 2 * shards * driver_per_task + commit_seconds
            executor_hours = executors * (wall - commit_seconds) / 3600  # held until the last task ends
            emr = executor_hours * (EMR_SERVERLESS_VCPU_HOUR + GB_PER_EXECUTOR * EMR_SERVERLESS_GB_HOUR)
            glue = executor_hours / 4 * GLUE_DPU_HOUR
            rows.append({"tb": size_tb, "executors": executors, "busy": busy, "data_files": data_files,
                         "shards": shards, "files_written": files, "wall_seconds": wall,
                         "commit_seconds": commit_seconds, "core_hours": executor_hours,
                         "busy_core_hours": json_mb * (1 / profile_rate + 1 / write_rate) / 3600,
                         "emr_serverless_usd": emr, "glue_usd": glue,
                         "export_usd": size_tb * 1000 * DYNAMODB_EXPORT_PER_GB})
    return rows


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value < 10 else f"${value:,.0f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| export (JSON) | executors | shards (busy) | files committed | wall | of which the commit | "
             "executor-hours | EMR Serverless | Glue |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tb']:g} TB | {r['executors']} | {r['shards']:,} ({r['busy']}) | {r['files_written']:,} | "
                     f"{_duration(r['wall_seconds'])} | {_duration(r['commit_seconds'])} | {r['core_hours']:,.1f} | "
                     f"{_usd(r['emr_serverless_usd'])} | {_usd(r['glue_usd'])} |")
    return "\n".join(lines)


# --- the command --------------------------------------------------------------------------------------

def _counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts separated by commas, not {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"counts must be at least 1: {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Per-shard overhead on local Spark, the one commit of many files, and "
                                            "one worker's rate; then the scale projection of bench/README.md.")
    add = p.add_argument
    add("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    add("--skip", action="append", choices=PARTS, default=[], help="skip this part (repeatable)")
    add("--shards", type=int, metavar="N", default=1000,
        help="shards of the many-shard run; the tiny export has 10%% more data files "
             "(default 1000: not finished on 2 loaded cores; 200 took 6 minutes)")
    add("--few-shards", type=int, metavar="N", default=4, help="shards of the run it is compared with (default 4)")
    add("--items-per-file", type=int, metavar="N", default=50, help="items per tiny data file (default 50)")
    add("--spark-master", default="local[2]", metavar="MASTER", help="spark-submit's --master (default local[2])")
    add("--partition-by", default=None, metavar="SPEC", help="partitioning of the shards part's table (default none)")
    add("--commit-files", type=_counts, metavar="N,N", default=[1000, 10000],
        help="data files per commit, comma-separated (default 1000,10000)")
    add("--seed-items", type=int, metavar="N", default=3000,
        help="items of the small conversion whose files are copied for the commit part (default 3000)")
    add("--export", default=None, metavar="FOLDER",
        help="export folder for the throughput part (default: the benchmark's cached one under --data-dir, "
             "generated if missing)")
    add("--throughput-items", type=int, metavar="N", default=1_000_000, help="items of that export (default 1000000)")
    add("--throughput-files", type=int, metavar="N", default=16, help="its data files (default 16)")
    add("--slice", type=int, metavar="N", default=3, help="data files one worker converts (default 3)")
    add("--rounds", type=int, metavar="N", default=2, help="throughput rounds, the least CPU reported (default 2)")
    add("--data-dir", default=str(HERE / "data"), metavar="FOLDER",
        help="cache of generated exports (default bench/data)")
    add("--results", default=str(HERE / "results"), metavar="FOLDER",
        help="folder of the JSON results (default bench/results)")
    add("--from-results", default=None, metavar="FILE", help="print the projection from this results file, run nothing")
    add("--reuse", default=None, metavar="FILE", help="take the parts not run now from this earlier results file")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [PROBE]:
        probe(json.loads(argv[1]))
        return 0
    args = parser().parse_args(argv)
    if args.from_results:
        figures = json.loads(Path(args.from_results).read_text())
        print(markdown(project({k: v["summary"] if k != "commit" else v for k, v in figures["parts"].items()})))
        return 0
    parts = [p for p in (args.only or PARTS) if p not in args.skip]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    machine = {"cores": os.cpu_count(), "python": platform.python_version()}
    document: dict[str, Any] = {"started": stamp, "machine": {**machine,
                                                             "load_at_start": _load()},
                                "arguments": {k: v for k, v in vars(args).items()}, "parts": {}}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"shards-{stamp}.json"
    if args.reuse:
        earlier = json.loads(Path(args.reuse).read_text())
        document["reused"] = {part: args.reuse for part in earlier["parts"] if part not in parts}
        document["parts"].update({part: earlier["parts"][part] for part in document["reused"]})
    work = Path(tempfile.mkdtemp(prefix="shard-scale-"))
    try:
        for part in parts:
            started, cpu = now(), cpu_self()
            found = {"shards": shard_overhead, "commit": commit_scale, "throughput": throughput}[part](args, work)
            found["part_seconds"], found["part_cpu_in_this_process"] = now() - started, cpu_self() - cpu
            document["parts"][part] = found
            document["load_at_end"] = _load()
            path.write_text(json.dumps(document, indent=1))  # after each part: a long run cut short keeps what it found
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if set(PARTS) <= set(document["parts"]):
        figures = {k: v["summary"] if k != "commit" else v for k, v in document["parts"].items()}
        document["projection"] = project(figures)
        print("\n" + markdown(document["projection"]))
        path.write_text(json.dumps(document, indent=1))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
