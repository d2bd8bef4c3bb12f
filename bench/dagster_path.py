"""The Dagster path's two steps as the benchmark measures them: what `raw_export` and `parquet` call.

    python bench/dagster_path.py stage EXPORT TABLE     # raw_export: validate + profile + write, staged
    python bench/dagster_path.py commit EXPORT TABLE    # parquet: commit the staged files

Each step runs in its own process, as the two Dagster steps do; run_benchmark.py adds their wall
and CPU times and takes the larger peak. Dagster's own run bookkeeping (event log, a second or two
per run) is not included. Each step prints how much of the export's bytes it read
(``export_bytes_read=``, 1.00 = once): the path's promise is one read from export to snapshot.
"""

from __future__ import annotations

import argparse
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["stage", "commit"])
    parser.add_argument("export")
    parser.add_argument("table")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    from ddb_assets.exports.reader import DataFile
    from ddb_assets.lake.convert import ConvertOptions
    from ddb_assets.lake.staging import commit_staged, load_staged, stage_export
    from ddb_assets.exports.storage import resolve

    reads = []
    original = DataFile.stream_verified

    def counted(self, *a):  # type: ignore[no-untyped-def]
        reads.append(self.name)
        return original(self, *a)

    DataFile.stream_verified = counted  # type: ignore[method-assign]
    options = ConvertOptions(partition_by="year", workers=args.workers)
    if args.step == "stage":
        staged = stage_export(args.export, args.table, options)
        if staged.record is None:
            sys.exit(f"not staged: {staged.note}")
        size = sum(f.location.size() for f in staged.export.files)  # type: ignore[union-attr]
        print(f"staged {staged.rows:,} rows in {len(staged.written)} files ({staged.path})")
        # What the read consumed, counted by the reader itself (in every worker): 1.00 = each
        # data file's bytes read once.
        print(f"export_bytes_read={staged.compressed / size:.2f}")
    else:
        from ddb_assets.exports.reader import open_export

        export_id = open_export(args.export).export_id
        staged = load_staged(resolve(args.table), export_id)
        if staged is None:
            sys.exit(f"no staged conversion of {export_id} beside {args.table}")
        result = commit_staged(staged, args.table, options)
        print(f"committed snapshot {result.commit.snapshot_id}: {result.commit.rows:,} rows")
        # The commit runs in this process: any data file it opened would be counted here.
        print(f"export_bytes_read={0.0 if not reads else float('nan'):.2f} (data files opened: {len(reads)})")


if __name__ == "__main__":
    from ddb_assets.exports.errors import ExportFormatError

    try:
        main()
    except (ExportFormatError, OSError) as exc:  # bad input: one line, as the CLI says it
        sys.exit(f"error: {exc}")
