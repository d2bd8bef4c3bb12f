"""The one committer of a sharded conversion: plan, hand the shard tasks to an engine, collect their
results, commit them in one Iceberg snapshot.

The read (``read_in_shards``) and the commit (``commit_shards``) are apart: the CLI runs both at
once (``convert_in_shards``); in Dagster, ``raw_export`` runs the read (lake/staging.py) and the
lake table's run commits what it wrote.

A table with a stored schema and a saved profile of an earlier export is planned from both before
a file is read: the writing shards then read each data file once, and the items must fit the plan
(else the run's files are removed and the export is read again as below, the path saying why).
Without such a plan, a first pass of read-only shards profiles every item (reading twice costs
less than shipping parsed items between machines); the schema is planned from the merged
profiles, then the writing shards convert the export in one pass each. That write pass profiles
every item again and a profile that differs (the export changed in between) fails the run.

Any shard failure (bad input, or a task the engine gave up on after its retries) fails the run
with that shard's error, and nothing is committed: the files the run wrote are removed (every
attempt's: they are found by the run id in their names); what cannot be removed is an orphan that
maintenance deletes. So are they when the run is interrupted before its commit begins, also after
the write pass (while the engine stops, or just before the commit): lake/leftovers.py ``RunFiles``.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable

import pyarrow.fs as pafs

from ddb_assets.exports.json_reader import ReaderCounts
from ddb_assets.exports.reader import Export, open_export
from ddb_assets.exports.storage import Location, S3Options, resolve
from ddb_assets.lake.commit import NOT_COMMITTED, check_written, commit_export
from ddb_assets.lake.convert import (ConvertOptions, ConvertResult, LakeTarget, _finish_files, _Misfit, _plan,
                                     _remove_files, _write_job, export_record, keep_profile)
from ddb_assets.lake.evolution import TablePlan
from ddb_assets.lake.leftovers import RunFiles, remove_run_files
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.plan_checks import ProfileMismatch, check_profile, plan_misfits
from ddb_assets.lake.profile import Profile
from ddb_assets.lake.shards.plan import plan_shards, shard_count
from ddb_assets.lake.shards.spec import FileRead, ShardFile, ShardResult, ShardSpec
from ddb_assets.lake.writer import WrittenFile

ProgressCallback = Callable[[str, dict[str, Any]], None]
# A context manager whose run(specs) returns their ShardResults and whose find_duplicate_key is
# the key check on the engine (lake/shards/spark.py, staged.py).
Engine = Any
MISMATCH = ProfileMismatch.__name__  # a writing shard's items the plan cannot hold (ShardError.kind)


@dataclass
class ShardConversion:
    """A full export read, checked, profiled and written by shard tasks, not committed yet: what
    ``convert_in_shards`` commits at once and ``stage_export`` records for a later commit."""

    run: str  # the run id: every file the shards wrote begins with it
    plan: TablePlan  # the plan the files were written with (vanished and variants: this export's)
    written: list[WrittenFile]  # small partitions' files merged, each key checked to be there once
    profile: Profile  # every item, as the writing shards saw them
    reads: list[FileRead]  # one read of each data file (the first pass's)
    shards: int
    passes: int  # rounds of shard tasks that read the export: 1 (one pass), 2 or 3 (a misfit)
    path: str  # how the export was read and why, in words (ConvertResult.path)
    data: Location  # the table's data folder


def convert_in_shards(export: Export, target: LakeTarget, table: Any, stored: TableSchema | None,
                      options: ConvertOptions, notify: ProgressCallback, known: Profile | None = None,
                      started: float | None = None, guess: tuple[str, Profile] | None = None) -> ConvertResult:
    """``convert_export`` for a full export, its data files converted by shard tasks on the engine
    ``options.runner`` names, after ``convert_export``'s preflight (``target``, the ``table`` or
    None, its ``stored`` schema; ``options`` completed from it): an export refused is refused
    before an engine starts. ``known`` and ``guess`` as for ``read_in_shards``. Raises what
    ``convert_export`` raises; a shard's bad input as the same ExportFormatError (object and
    line), other shard failures as ShardFailed."""
    started = time.monotonic() if started is None else started
    files = RunFiles(resolve(target.location.join("data").uri, options.s3))
    converted: ShardConversion | None = None
    try:
        converted = read_in_shards(export, target, table, stored, options, notify, known, guess, files=files)
        notify("committing", {"files": len(converted.written)})  # the CLI holds Ctrl-C back from here (cli_interrupts.py)
    except BaseException:
        # Failed or interrupted before the commit (also once the files came back: as the engine
        # stopped, or just before the commit): no snapshot will refer to them. A clean-up done
        # already inside is not repeated (one listing of data/ at most).
        files.remove(converted.written if converted is not None else [], options.s3)
        raise
    return commit_shards(converted, export, target, stored, options, notify, started)


def read_in_shards(export: Export, target: LakeTarget, table: Any, stored: TableSchema | None,
                   options: ConvertOptions, notify: ProgressCallback, known: Profile | None = None,
                   guess: tuple[str, Profile] | None = None,
                   profiled: Callable[[Profile], None] | None = None, files: RunFiles | None = None) -> ShardConversion:
    """The read-and-write half of a sharded conversion: every data file read by a shard task on
    the engine ``options.runner`` names, checked, profiled and written as the table's data files
    under its ``data/``, nothing committed. The schema is planned from ``known`` (this export's
    profile: one pass, whose items must need exactly that plan); else, for a table with a stored
    schema, from it and ``guess`` ((whose, profile) of an earlier export, ``saved_guess``): one
    pass whose items must fit the plan, else (a misfit) its files are removed and the export is
    read again as a new table's is; else from a profile pass of read-only shards, then the
    writing pass. ``profiled`` is told the merged profile of a profile pass before the plan is
    made (the caller keeps it if planning fails). On any failure nothing of the run is left
    behind (best effort: maintenance removes what is), also when interrupted as the engine stops.
    ``files``: where each run id is noted as it is taken (a caller that may yet be interrupted
    before its commit removes them: RunFiles). Raises ExportFormatError (bad input: object and
    line), ProfileMismatch, SchemaConflict, PartitionError, ShardFailed."""
    files = files if files is not None else RunFiles(resolve(target.location.join("data").uri, options.s3))
    try:
        return _read_in_shards(export, target, table, stored, options, notify, known, guess, profiled, files)
    except BaseException:
        # Stopping the engine takes a while (the files are written by then); the files of a pass
        # that failed inside are gone already (not listed again).
        files.remove([], options.s3)
        raise


def _read_in_shards(export: Export, target: LakeTarget, table: Any, stored: TableSchema | None,
                    options: ConvertOptions, notify: ProgressCallback, known: Profile | None,
                    guess: tuple[str, Profile] | None, profiled: Callable[[Profile], None] | None,
                    files: RunFiles) -> ShardConversion:
    run = files.take(_run_id())
    # One engine (a Spark application takes seconds to minutes to come up) serves every pass.
    with open_engine(options, run) as engine:
        base = shard_specs(export, options, run)
        notify("sharded", {"runner": options.runner.kind, "shards": len(base), "run": run})
        where = f"{len(base)} shard tasks on the {options.runner.kind} runner"
        if known is not None:
            return _write_pass(engine, base, export, target, table, stored, options, notify, known, files, run,
                               strict=True, passes=1, path=f"one pass in {where}: planned from this export's profile")
        why = "a new table (no stored schema to plan from)" if stored is None else \
            "the table is rebuilt" if options.rebuild else \
            "no readable profile of an earlier export of this table is saved beside it"
        passes = 2
        if guess is not None and stored is not None and not options.rebuild:
            source, profile = guess
            try:
                return _write_pass(engine, base, export, target, table, stored, options, notify, profile, files,
                                   run, strict=False, passes=1,
                                   path=f"one pass in {where}: planned from the table's schema and {source}")
            except _Misfit as misfit:
                notify("replanned", {"why": str(misfit)})
                run = files.take(_run_id())  # the misfit's files are gone; this run's own names never meet them
                base = [replace(spec, run=run) for spec in base]
                if isinstance(misfit, _Unfit):
                    # Every item was read and profiled on the way: no profile pass is needed.
                    if profiled is not None:
                        profiled(misfit.seen)
                    return _write_pass(engine, base, export, target, table, stored, options, notify, misfit.seen,
                                       files, run, strict=True, passes=2, report_reads=False,
                                       path=f"2 passes in {where}: {misfit}; the export was read again, planned "
                                            f"from the profile the first pass saw")
                # A shard stopped at an item the plan cannot hold: the profile is not whole.
                why, passes = f"{misfit}; the export was read twice more", 3
        results = _run(engine, base, options, notify, None, run)  # read-only: no files
        known = Profile.merged(r.profile for r in results)
        if profiled is not None:
            profiled(known)
        reads = [read for r in results for read in r.reads]
        converted = _write_pass(engine, base, export, target, table, stored, options, notify, known, files, run,
                                strict=True, passes=passes,
                                path=f"{passes} passes in {where} (a profile pass, then the writing pass): {why}",
                                report_reads=False)
        return replace(converted, reads=reads)


class _Unfit(_Misfit):
    """A speculative pass read every item, and they need columns its plan lacked: ``seen`` is the
    export's whole profile (the writing pass is planned from it; no profile pass)."""

    def __init__(self, message: str, seen: Profile):
        super().__init__(message)
        self.seen = seen


def _write_pass(engine: Engine, base: list[ShardSpec], export: Export, target: LakeTarget, table: Any,
                stored: TableSchema | None, options: ConvertOptions, notify: ProgressCallback, planned_from: Profile,
                files: RunFiles, run: str, *, strict: bool, passes: int, path: str,
                report_reads: bool = True) -> ShardConversion:
    """Plan from ``planned_from``, then one round of writing shards (``run``, taken in ``files``).
    ``strict``: the items must need exactly that plan (ProfileMismatch); else they must fit it
    (_Misfit, its files removed)."""
    plan = _plan(planned_from, options, stored, export)
    notify("planned", {"columns": len(plan.columns), "variants": plan.variants})
    job = _write_job(plan, target, run, options, export, planned_from, table)
    writing = [replace(spec, schema=plan.schema, active=plan.active, target=job.target) for spec in base]
    data = resolve(job.target.data, options.s3)
    results = _run(engine, writing, options, notify, files, run, report_reads=report_reads, speculative=not strict)
    written: list[WrittenFile] = []
    try:
        written = [w for r in results for w in r.written]
        seen = Profile.merged(r.profile for r in results)
        if strict:
            check_profile(_plan(seen, options, stored, export), plan, export.export_id)
        else:
            misfits = plan_misfits(_plan(seen, options, stored, export), plan)
            if misfits:
                raise _Unfit(f"its items need columns the plan lacked ({'; '.join(misfits)})", seen)
            # The files hold the planned columns; what vanished is this export's own account.
            view = _plan(seen, options, stored, export)
            plan.vanished, plan.variants = view.vanished, view.variants
        # The key check groups every written key: on the engine's executors, not through this process.
        written = _finish_files(written, plan, job, export, options, find=engine.find_duplicate_key)
    except BaseException:
        files.remove(written, options.s3)
        raise
    return ShardConversion(run, plan, written, seen, [read for r in results for read in r.reads], len(base), passes,
                           path, data)


def commit_shards(converted: ShardConversion, export: Export, target: LakeTarget, stored: TableSchema | None,
                  options: ConvertOptions, notify: ProgressCallback, started: float) -> ConvertResult:
    """The commit half of ``convert_in_shards``, from its catalog commit on (the caller has said
    ``committing``): the shards' files as one snapshot, then the profile saved beside the table
    (the next export plans its one pass from it). Raises what ``commit_export`` raises; files of
    a commit that did not land are removed."""
    written = converted.written
    try:
        check_written([w.path for w in written], options.s3, table=target.name)
        commit = commit_export(target.catalog, target.identifier, target.location.uri, converted.plan, written,
                               export_record(export), only_partitions=options.only_partitions,
                               rebuild=options.rebuild, stored_at_plan=stored)
    except NOT_COMMITTED:
        _remove_files(written, options.s3)
        remove_run_files(converted.data, converted.run)
        raise
    # Any other failure leaves the files: the commit may have landed (an answer lost on the way).
    notify("committed", {"snapshot_id": commit.snapshot_id, "rows": commit.rows, "files": commit.added,
                         "delete_files": commit.delete_files})
    # The next export of the table is planned from this profile (one pass): as convert_export does.
    saved = keep_profile(target.location.uri, export.export_id, converted.profile, options.s3)
    reads = converted.reads
    return ConvertResult(commit, f"{target.namespace}.{target.name}", target.location.uri, converted.profile,
                         converted.plan, export, written, sum(r.compressed for r in reads),
                         sum(r.uncompressed for r in reads), time.monotonic() - started, 0, one_pass=True,
                         shards=converted.shards, json_reader=options.json_reader,
                         readers=ReaderCounts.total(read.readers for read in reads), path=converted.path,
                         warnings=[saved] if saved else [])


def profile_in_shards(source: str | Export, options: ConvertOptions,
                      progress: ProgressCallback | None = None) -> tuple[Export, Profile]:
    """``profile_export`` on the engine ``options.runner`` names: every item read, checked and
    profiled by read-only shard tasks, nothing written; this process reads the manifests only.
    Raises ExportFormatError (a shard's bad input: object and line) or ShardFailed."""
    notify = progress or (lambda kind, info: None)
    options = replace(options, s3=(options.s3 or S3Options()).with_environment())
    export = source if isinstance(source, Export) else open_export(source, options.s3)
    notify("opened", {"files": len(export.files), "items": export.summary.item_count, "export_id": export.export_id})
    run = _run_id()
    with open_engine(options, run) as engine:
        specs = shard_specs(export, options, run)
        notify("sharded", {"runner": options.runner.kind, "shards": len(specs), "run": run})
        results = _run(engine, specs, options, notify, None, run)
    return export, Profile.merged(r.profile for r in results)


def _run_id() -> str:
    return f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


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
         files: RunFiles | None, run: str, report_reads: bool = True, speculative: bool = False) -> list[ShardResult]:
    """Run ``specs`` on ``engine``; any failed shard raises its error after every file of this
    run is removed (``files``: where writing shards' run is taken; None for read-only shards).
    ``speculative``: items that do not fit the specs' plan raise _Misfit (bad input in another
    shard comes first)."""
    results: list[ShardResult] = []
    try:
        results = sorted(engine.run(specs), key=lambda r: r.shard)
        # Bad input first: it fails the run whatever the plan; a misfit only asks for another plan.
        failed = sorted((r for r in results if r.error is not None), key=lambda r: r.error.kind == MISMATCH)  # type: ignore[union-attr]
        if failed:
            first = failed[0]
            assert first.error is not None
            if speculative and first.error.kind == MISMATCH:
                raise _Misfit(f"its items do not fit the planned columns ({first.error.message})")
            raise first.error.exception(f"shard {first.shard + 1} of {len(specs)} (attempt {first.attempt})")
    except BaseException:
        if files is not None:
            files.remove([w for r in results for w in r.written], options.s3)
        raise
    for result in results:
        if report_reads:
            for read in result.reads:
                notify("parsed", {"index": read.index, "rows": read.items, "bytes": read.uncompressed,
                                  "compressed": read.compressed, "readers": read.readers})
        if files is not None:
            notify("written", {"files": len(result.written), "rows": sum(w.rows for w in result.written)})
    return results


__all__ = ["ShardConversion", "commit_shards", "convert_in_shards", "open_engine", "profile_in_shards", "read_in_shards", "remove_run_files",
           "shard_files", "shard_specs"]

