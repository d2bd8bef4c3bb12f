"""The one committer of a sharded conversion: plan, hand the shard tasks to an engine, collect their
results, commit them in one Iceberg snapshot.

Without the export's profile, a first pass of read-only shards profiles every item (reading twice
costs less than shipping parsed items between machines); the schema is planned from the merged
profiles, then the writing shards convert the export in one pass each. The write pass profiles
every item again and a profile that differs (the export changed in between) fails the run.

Any shard failure (bad input, or a task the engine gave up on after its retries) fails the run
with that shard's error, and nothing is committed: the files the run wrote are removed (every
attempt's: they are found by the run id in their names); what cannot be removed is an orphan that
maintenance deletes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

import pyarrow.fs as pafs

from ddb_assets.exports.json_reader import ReaderCounts
from ddb_assets.exports.reader import Export
from ddb_assets.exports.storage import Location, resolve
from ddb_assets.lake.commit import NOT_COMMITTED, commit_export
from ddb_assets.lake.convert import (ConvertOptions, ConvertResult, LakeTarget, _plan, _remove_files, _write_job,
                                     export_record, keep_profile)
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.plan_checks import check_profile
from ddb_assets.lake.profile import Profile
from ddb_assets.lake.shards.plan import plan_shards, shard_count
from ddb_assets.lake.shards.spec import FileRead, ShardFile, ShardResult, ShardSpec
from ddb_assets.lake.writer import merge_small_files
from ddb_assets.lake.unique_keys import check_unique_keys

ProgressCallback = Callable[[str, dict[str, Any]], None]
Engine = Any  # a context manager whose run(specs) returns their ShardResults (lake/shards/spark.py)


def convert_in_shards(export: Export, target: LakeTarget, table: Any, stored: TableSchema | None,
                      options: ConvertOptions, notify: ProgressCallback, known: Profile | None = None,
                      started: float | None = None) -> ConvertResult:
    """``convert_export`` for a full export, its data files converted by shard tasks on the engine
    ``options.runner`` names, after ``convert_export``'s preflight (``target``, the ``table`` or
    None, its ``stored`` schema; ``options`` completed from it): an export refused is refused
    before an engine starts. Raises what ``convert_export`` raises; a shard's bad input as the same
    ExportFormatError (object and line), other shard failures as ShardFailed."""
    started = time.monotonic() if started is None else started
    run = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    # One engine (a Spark application takes seconds to minutes to come up) serves both passes.
    with open_engine(options, run) as engine:
        base = shard_specs(export, options, run)
        notify("sharded", {"runner": options.runner.kind, "shards": len(base), "run": run})
        reads: list[FileRead] | None = None  # the profile pass's, when there is one
        if known is None:
            profiled = _run(engine, base, options, notify, None, run)
            known = Profile.merged(r.profile for r in profiled)
            reads = [read for r in profiled for read in r.reads]
        plan = _plan(known, options, stored)
        notify("planned", {"columns": len(plan.columns), "variants": plan.variants})
        job = _write_job(plan, target, run, options, export, known, table)
        writing = [replace(spec, schema=plan.schema, active=plan.active, target=job.target) for spec in base]
        data = resolve(job.target.data, options.s3)
        results = _run(engine, writing, options, notify, data, run, report_reads=reads is None)
    written = [w for r in results for w in r.written]
    seen = Profile.merged(r.profile for r in results)
    try:
        check_profile(_plan(seen, options, stored), plan, export.export_id)
        written = merge_small_files(written, data, plan.arrow_schema, job.target, options.small_partition_bytes)
        check_unique_keys(written, plan, options.key_attributes, export=export.folder.uri, s3=options.s3,
                          work_dir=options.work_dir)
    except BaseException:
        _remove_files(written, options.s3)
        remove_run_files(data, run)
        raise
    try:
        commit = commit_export(target.catalog, target.identifier, target.location.uri, plan, written,
                               export_record(export), only_partitions=options.only_partitions,
                               rebuild=options.rebuild, stored_at_plan=stored)
    except NOT_COMMITTED:
        _remove_files(written, options.s3)
        remove_run_files(data, run)
        raise
    # Any other failure leaves the files: the commit may have landed (an answer lost on the way).
    notify("committed", {"snapshot_id": commit.snapshot_id, "rows": commit.rows, "files": commit.added})
    # The next export of the table is planned from this profile (one pass): as convert_export does.
    saved = keep_profile(target.location.uri, export.export_id, seen, options.s3)
    if reads is None:
        reads = [read for r in results for read in r.reads]
    return ConvertResult(commit, f"{target.namespace}.{target.name}", target.location.uri, seen, plan, export,
                         written, sum(r.compressed for r in reads), sum(r.uncompressed for r in reads),
                         time.monotonic() - started, 0, one_pass=True, shards=len(base),
                         json_reader=options.json_reader, readers=ReaderCounts.total(read.readers for read in reads),
                         warnings=[saved] if saved else [])


def open_engine(options: ConvertOptions, run: str) -> Engine:
    """The engine ``options.runner`` names, for one run (a context manager with ``run(specs)``)."""
    if options.runner.kind == "spark":
        from ddb_assets.lake.shards.spark import SparkEngine

        return SparkEngine(options, run)
    if options.runner.kind == "glue":
        from ddb_assets.lake.shards.glue import GlueEngine

        return GlueEngine(options, run)
    if options.runner.kind == "emr_serverless":
        from ddb_assets.lake.shards.emr_serverless import EmrServerlessEngine

        return EmrServerlessEngine(options, run)
    raise ValueError(f"runner {options.runner.kind!r} does not run shard tasks")


def shard_files(export: Export, options: ConvertOptions) -> list[ShardFile]:
    """The export's data files as shard files, with their sizes from one listing per folder (None
    where a listing fails: then shards are balanced by item counts)."""
    sizes: dict[str, int] = {}
    for folder in {f.location.parent().uri: f.location.parent() for f in export.files}.values():
        try:
            for entry in folder.fs.get_file_info(pafs.FileSelector(folder.path)):
                sizes[entry.path.rstrip("/")] = entry.size
        except OSError:
            continue
    return [ShardFile.of(index, f, sizes.get(f.location.path.rstrip("/"))) for index, f in enumerate(export.files)]


def shard_specs(export: Export, options: ConvertOptions, run: str) -> list[ShardSpec]:
    """The read-only shard specs of ``export`` for ``run`` (``options.runner.shards`` of them, or
    the automatic count), balanced by size; a plan turns them into writing specs
    (``dataclasses.replace`` with ``schema``, ``active`` and ``target``)."""
    files = shard_files(export, options)
    groups = plan_shards(files, shard_count(files, options.runner.shards))
    return [_spec(export, options, run, number, len(groups), group) for number, group in enumerate(groups)]


def _spec(export: Export, options: ConvertOptions, run: str, number: int, total: int,
          files: list[ShardFile]) -> ShardSpec:
    s3 = options.s3
    return ShardSpec(shard=number, shards=total, run=run, export_id=export.export_id,
                     export_type=export.summary.export_type, output_format=export.summary.output_format,
                     source=export.folder.uri, files=tuple(files), partition_by=options.partition_by,
                     dictionary_keys=options.dictionary_keys, piece_bytes=options.piece_bytes,
                     json_reader=options.json_reader, key_attributes=options.key_attributes,
                     buffer_bytes=options.buffer_bytes, only_partitions=options.only_partitions,
                     s3_endpoint_url=s3.endpoint_url if s3 else None, s3_region=s3.region if s3 else None,
                     s3_max_attempts=s3.max_attempts if s3 else None)


def _run(engine: Engine, specs: list[ShardSpec], options: ConvertOptions, notify: ProgressCallback,
         data: Location | None, run: str, report_reads: bool = True) -> list[ShardResult]:
    """Run ``specs`` on ``engine``; any failed shard raises its error after every file of this
    run is removed (``data``: the table's data folder, for writing shards)."""
    results: list[ShardResult] = []
    try:
        results = sorted(engine.run(specs), key=lambda r: r.shard)
        failed = [r for r in results if r.error is not None]
        if failed:
            first = failed[0]
            assert first.error is not None
            raise first.error.exception(f"shard {first.shard + 1} of {len(specs)} (attempt {first.attempt})")
    except BaseException:
        if data is not None:
            _remove_files([w for r in results for w in r.written], options.s3)
            remove_run_files(data, run)
        raise
    for result in results:
        if report_reads:
            for read in result.reads:
                notify("parsed", {"index": read.index, "rows": read.items, "bytes": read.uncompressed,
                                  "compressed": read.compressed, "readers": read.readers})
        if data is not None:
            notify("written", {"files": len(result.written), "rows": sum(w.rows for w in result.written)})
    return results


def remove_run_files(data: Location, run: str) -> int:
    """Best effort: delete every data file of ``run`` (any shard, any attempt: their names begin
    with the run id) under ``data``. Returns how many were deleted."""
    try:
        entries = data.fs.get_file_info(pafs.FileSelector(data.path, recursive=True, allow_not_found=True))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        if entry.type == pafs.FileType.File and entry.base_name.startswith(f"{run}-"):
            try:
                data.fs.delete_file(entry.path)
                removed += 1
            except OSError:
                pass  # an orphan for maintenance
    return removed


__all__ = ["convert_in_shards", "open_engine", "remove_run_files", "shard_files", "shard_specs"]

