"""The Parquet write alone, under different writer options, in CPU seconds (issue 12, item 3).

    python bench/parquet_write.py                              # 200,000 items: converted once, cached
    python bench/parquet_write.py --source bench/out/ours      # the files of a table already converted
    python bench/parquet_write.py --rows 100000 --rounds 5 --only baseline --only dict-low

The batches are what the converter's writer hands to Parquet: the flattened, typed columns of the
benchmark's reviews, read back from a table ``ddb-assets convert`` wrote (by default the cached
``--items`` export of run_benchmark.py, converted once into
``bench/out/parquet-write-<items>/reviews``), one row group at a time as the writer flushed them
(same rows, same order, same sizes). Each variant then writes those batches with
``pq.ParquetWriter`` in this one process, one output file per source file, as the writer does:
``write_table`` per row group. In interleaved rounds (the variants' order
rotating) the CPU seconds of each write (``time.process_time``: user + sys of the process) are
measured and the median round reported, with the output's size. Every variant's output is read back
once and checked equal to its input before anything is timed.

Figures: CPU seconds, CPU seconds per 100 MB of Parquet (the baseline's bytes for the same rows, so
variants compare on the same work) and the bytes written (Athena bills bytes scanned: a bigger file
costs too). Results go to bench/results/parquet-write-<stamp>.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ddb_assets.lake.writer import parquet_options  # noqa: E402

Batches = list[list[pa.Table]]  # per source file, its row groups in order


def column_paths(schema: pa.Schema) -> list[str]:
    """Parquet's paths of ``schema``'s leaf columns, as writer options name them: ``tags.list.element``
    for a list's items, ``a.b`` for a struct's field."""
    def leaves(path: str, type_: pa.DataType) -> list[str]:
        if pa.types.is_list(type_) or pa.types.is_large_list(type_):
            return leaves(f"{path}.list.element", type_.value_type)
        if pa.types.is_struct(type_):
            return [p for f in type_ for p in leaves(f"{path}.{f.name}", f.type)]
        return [path]

    return [p for f in schema for p in leaves(f.name, f.type)]


def _leaf_arrays(path: str, array: pa.Array) -> list[tuple[str, pa.Array]]:
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        return _leaf_arrays(f"{path}.list.element", array.flatten())
    if pa.types.is_struct(array.type):
        return [pair for f, child in zip(array.type, array.flatten())
                for pair in _leaf_arrays(f"{path}.{f.name}", child)]
    return [(path, array)]


def dictionary_columns(batch: pa.Table, max_distinct_ratio: float) -> list[str]:
    """The leaf column paths of ``batch`` worth dictionary-encoding: those whose distinct values are
    at most ``max_distinct_ratio`` of their non-null values in ``batch`` (a column with no value in
    it is included: a dictionary of nothing costs nothing)."""
    chosen = []
    for name, column in zip(batch.column_names, batch.columns):
        for path, leaf in _leaf_arrays(name, column.combine_chunks()):
            values = len(leaf) - leaf.null_count
            if values == 0 or pc.count_distinct(leaf).as_py() <= max_distinct_ratio * values:
                chosen.append(path)
    return chosen


@dataclass
class Variant:
    name: str
    what: str
    options: Callable[[pa.Table], dict]  # the first batch of a file -> ParquetWriter keywords
    merge_row_groups: bool = False  # write each file's batches as one row group (a bigger buffer)
    seconds: list[float] = field(default_factory=list)
    bytes: int = 0


def variants(pruning_columns: list[str]) -> list[Variant]:
    base = parquet_options("zstd")

    def fixed(**changes: object) -> Callable[[pa.Table], dict]:
        return lambda first: dict(base, **changes)

    def stats_subset(first: pa.Table) -> dict:
        return dict(base, write_statistics=[c for c in column_paths(first.schema) if c in pruning_columns])

    def stats_but_long_text(first: pa.Table) -> dict:
        return dict(base, write_statistics=[c for c in column_paths(first.schema) if c != "review_body"])

    def dict_low(threshold: float) -> Callable[[pa.Table], dict]:
        # Measured on the first batch's first rows: counting the distinct values of a whole batch
        # (hashing every review body) cost about 40% of the write itself.
        return lambda first: dict(base, use_dictionary=dictionary_columns(first.slice(0, 2048), threshold))

    def delta_body(first: pa.Table) -> dict:
        return dict(base, use_dictionary=[c for c in column_paths(first.schema) if c != "review_body"],
                    column_encoding={"review_body": "DELTA_LENGTH_BYTE_ARRAY"})

    return [
        Variant("baseline", "writer.py today: dictionary everywhere, 128 KiB dict pages, 1 MiB data pages, zstd 1",
                fixed()),
        Variant("dict-low", "dictionary only where distinct/values < 10% in the first 2,048 rows of a file",
                dict_low(0.10)),
        Variant("dict-low-50", "the same at < 50%", dict_low(0.50)),
        Variant("dict-none", "no dictionary at all", fixed(use_dictionary=False)),
        Variant("delta-body", "review_body as DELTA_LENGTH_BYTE_ARRAY, no dictionary (the rest as baseline)",
                delta_body),
        Variant("dictpage-1m", "dictionary_pagesize_limit 1 MiB (pyarrow's default)",
                fixed(dictionary_pagesize_limit=1 << 20)),
        Variant("dictpage-32k", "dictionary_pagesize_limit 32 KiB", fixed(dictionary_pagesize_limit=32 << 10)),
        Variant("page-256k", "data_page_size 256 KiB", fixed(data_page_size=256 << 10)),
        Variant("page-8m", "data_page_size 8 MiB", fixed(data_page_size=8 << 20)),
        Variant("stats-none", "no statistics (reference: pruning needs some)", fixed(write_statistics=False)),
        Variant("stats-pruning", f"statistics on {', '.join(pruning_columns)} only", stats_subset),
        Variant("stats-no-body", "statistics on every column but review_body", stats_but_long_text),
        Variant("lz4", "LZ4_RAW instead of zstd 1", fixed(compression="lz4", compression_level=None)),
        Variant("snappy", "snappy instead of zstd 1", fixed(compression="snappy", compression_level=None)),
        Variant("zstd-3", "zstd level 3", fixed(compression_level=3)),
        Variant("zstd-fast", "zstd level -1 (a fast level)", fixed(compression_level=-1)),
        Variant("uncompressed", "no codec (reference)", fixed(compression="none", compression_level=None)),
        Variant("combined", "dict-low-50, stats-no-body and one-row-group together (an upper bound of the "
                "options short of the codec)",
                lambda first: dict(dict_low(0.50)(first),
                                   write_statistics=stats_but_long_text(first)["write_statistics"]),
                merge_row_groups=True),
        Variant("one-row-group", "baseline options, each file's batches as one row group (more buffer memory)",
                fixed(), merge_row_groups=True),
    ]


def ensure_source(args: argparse.Namespace) -> Path:
    """A converted table's folder: --source, or the cached --items export converted once."""
    if args.source:
        return args.source
    from run_benchmark import ensure_export

    # A lake folder of its own: the table and its catalog (catalog.db beside it) go together, so a
    # removed folder never leaves a catalog entry pointing at it.
    lake = HERE / "out" / f"parquet-write-{args.items}"
    out = lake / "reviews"
    if glob.glob(str(out / "**" / "*.parquet"), recursive=True):
        return out
    export = ensure_export(args.items, args.files, args.data_dir)
    shutil.rmtree(lake, ignore_errors=True)
    lake.mkdir(parents=True)
    print(f"converting {export} into {out} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "ddb_assets.cli", "convert", str(export), str(out), "--partition-by",
                    "year"], check=True, stdout=subprocess.DEVNULL)
    return out


def load_batches(source: Path, rows: int) -> Batches:
    """The source table's row groups, file by file (sorted by path), until ``rows`` rows are held."""
    paths = sorted(glob.glob(str(source / "**" / "*.parquet"), recursive=True))
    if not paths:
        raise SystemExit(f"no Parquet files under {source}")
    batches: Batches = []
    held = 0
    for path in paths:
        reader = pq.ParquetFile(path)
        groups = []
        for index in range(reader.num_row_groups):
            groups.append(reader.read_row_group(index))
            held += groups[-1].num_rows
            if held >= rows:
                break
        batches.append(groups)
        if held >= rows:
            break
    return batches


def write(variant: Variant, batches: Batches, folder: str) -> tuple[float, int]:
    """(CPU seconds, bytes written) of ``variant`` writing every file of ``batches`` into ``folder``."""
    size = 0
    cpu = 0.0
    for index, groups in enumerate(batches):
        path = os.path.join(folder, f"{index:04d}.parquet")
        started = time.process_time()
        options = variant.options(groups[0])
        with pq.ParquetWriter(path, groups[0].schema, **options) as writer:
            if variant.merge_row_groups:
                table = pa.concat_tables(groups)
                writer.write_table(table, row_group_size=table.num_rows)
            else:
                for table in groups:
                    writer.write_table(table, row_group_size=max(1, table.num_rows))
        cpu += time.process_time() - started
        size += os.path.getsize(path)
        os.remove(path)
    return cpu, size


def check(variant: Variant, batches: Batches, folder: str, pruning_columns: list[str]) -> None:
    """Each output file reads back equal to its input; the pruning columns carry min/max."""
    for index, groups in enumerate(batches):
        path = os.path.join(folder, f"{index:04d}.parquet")
        with pq.ParquetWriter(path, groups[0].schema, **variant.options(groups[0])) as writer:
            for table in groups:
                writer.write_table(table, row_group_size=max(1, table.num_rows))
        back = pq.read_table(path)
        if not back.equals(pa.concat_tables(groups)):
            raise SystemExit(f"{variant.name}: {path} does not read back as written")
        meta = pq.ParquetFile(path).metadata
        for r in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                column = meta.row_group(r).column(c)
                if column.path_in_schema in pruning_columns and not (
                        column.is_stats_set and column.statistics.has_min_max) and variant.name != "stats-none":
                    raise SystemExit(f"{variant.name}: no min/max for {column.path_in_schema}")
        os.remove(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, metavar="TABLE_DIR",
                        help="a converted table's folder (its data/**/*.parquet are the batches); default: the "
                             "--items export converted once into bench/out/parquet-write-<items>/reviews")
    parser.add_argument("--items", type=int, default=200_000, metavar="N", help="the export to convert (default "
                        "200,000 items, as run_benchmark.py generates and caches it)")
    parser.add_argument("--files", type=int, default=16, metavar="N", help="the export's data files (default 16)")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data", metavar="DIR",
                        help="run_benchmark.py's export cache (default bench/data)")
    parser.add_argument("--rows", type=int, default=200_000, metavar="N", help="rows written per variant: "
                        "whole row groups of the source until N are held (default 200,000)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N", help="interleaved rounds (default 3)")
    parser.add_argument("--only", action="append", default=[], metavar="VARIANT", help="run only these variants "
                        "(repeatable; baseline is always run)")
    parser.add_argument("--pruning-columns", default="product_id,review_id,year,review_date", metavar="A,B",
                        help="the columns whose statistics a reader prunes by: the keys and the partition source "
                             "(default product_id,review_id,year,review_date)")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results", metavar="DIR",
                        help="where the JSON results go (default bench/results)")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    args = parser.parse_args(argv)

    pruning = [c for c in args.pruning_columns.split(",") if c]
    chosen = variants(pruning)
    if args.list:
        for v in chosen:
            print(f"{v.name:<14} {v.what}")
        return
    if args.only:
        unknown = set(args.only) - {v.name for v in chosen}
        if unknown:
            raise SystemExit(f"unknown variants: {', '.join(sorted(unknown))} (see --list)")
        chosen = [v for v in chosen if v.name == "baseline" or v.name in args.only]

    source = ensure_source(args)
    batches = load_batches(source, args.rows)
    rows = sum(t.num_rows for groups in batches for t in groups)
    arrow_bytes = sum(t.nbytes for groups in batches for t in groups)
    groups_count = sum(len(groups) for groups in batches)
    print(f"source: {source}: {rows:,} rows in {len(batches)} files, {groups_count} row groups "
          f"({rows // groups_count:,} rows each on average), {arrow_bytes / 1e6:,.0f} MB of Arrow data")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; pyarrow {pa.__version__}")

    folder = tempfile.mkdtemp(prefix="parquet-write-", dir=HERE / "out" if (HERE / "out").is_dir() else None)
    try:
        for v in chosen:
            check(v, batches, folder, pruning)
        load = [os.getloadavg()[0]]
        for round_ in range(args.rounds):
            order = chosen[round_ % len(chosen):] + chosen[:round_ % len(chosen)]
            for v in order:
                seconds, size = write(v, batches, folder)
                v.seconds.append(seconds)
                v.bytes = size
            load.append(os.getloadavg()[0])
            print(f"  round {round_ + 1}/{args.rounds} done (load average {load[-1]:.1f})", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    base = chosen[0]
    base_cpu = statistics.median(base.seconds)
    rows_out = []
    print(f"\n{'variant':<14} {'CPU s':>7} {'CPU s/100MB':>11} {'vs base':>8} {'MB':>7} {'vs base':>8}  what")
    for v in chosen:
        cpu = statistics.median(v.seconds)
        per_100mb = cpu * 1e8 / base.bytes
        print(f"{v.name:<14} {cpu:7.2f} {per_100mb:11.2f} {cpu / base_cpu - 1:+8.1%} {v.bytes / 1e6:7.1f} "
              f"{v.bytes / base.bytes - 1:+8.1%}  {v.what}")
        rows_out.append({"name": v.name, "what": v.what, "cpu_seconds": v.seconds, "cpu_median": cpu,
                         "cpu_per_100mb_parquet": per_100mb, "bytes": v.bytes})
    print("\nCPU s/100MB: per 100 MB of the baseline's Parquet for the same rows. The machine is shared: "
          "wall times would mean nothing, CPU seconds are steadier; compare within a run.")

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = args.results_dir
    results.mkdir(parents=True, exist_ok=True)
    target = results / f"parquet-write-{stamp}.json"
    target.write_text(json.dumps({
        "stamp": stamp, "source": str(source), "rows": rows, "files": len(batches), "row_groups": groups_count,
        "arrow_bytes": arrow_bytes, "rounds": args.rounds, "load_average": load, "pyarrow": pa.__version__,
        "python": platform.python_version(), "pruning_columns": pruning, "variants": rows_out}, indent=1))
    print(f"results: {target}")


if __name__ == "__main__":
    main()
