"""Staged conversions: an export read once, its data files written, committed later.

In Dagster two steps see every export: validation (``raw_export``) and the lake table's commit
(``parquet``). Reading the export in both would fetch, decompress and parse every byte twice, so
validation *is* the conversion's read: ``stage_export`` fetches and decompresses each data file
once, checks everything (md5, item counts, every AttributeValue), profiles every item and writes
the table's data files under its ``data/``, without committing them. A record of what it wrote
(``<table location>/_staged/<export id>.json``) lets ``commit_staged`` commit them as one Iceberg
snapshot later: the manifests are read again (a few KB), the data files are not. With a shard
runner (spark, glue, emr_serverless) that read runs as shard tasks on the engine
(lake/shards/driver.py: ``read_in_shards``); this process reads the manifests only.

An incremental export is staged too: its upserts as data files and every change's keys (key
columns, op, write time) as ``_staged/<export id>.keys.parquet``; ``commit_staged`` merges them
(lake/merge.py checks the chain then, so a window may be staged before the ones ahead of it are
applied). The change history, when on, reads the export again (it needs the old images).

A staged conversion is a plan made against the table as it was at staging time. When the table
or the options have moved on in a way the staged files cannot follow (another run evolved the
schema, a rebuild asks for new field ids, maintenance removed the files; for an incremental
export, any change of the table's schema, or a high-water mark that now skips other changes of an
overlapping window), ``commit_staged`` raises StagingStale and the caller converts the export
again, saying why: the staged files are an optimisation, never the only way to the table.

Files staged and never committed (an export superseded before its commit, a run that died) are
removed by ``discard``/``discard_superseded`` and, failing that, by maintenance's orphan
removal, which leaves files named by a live record alone (``staged_paths``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ddb_assets.exports.json_reader import ReaderCounts
from ddb_assets.exports.reader import Export, open_export
from ddb_assets.exports.storage import Location, S3Options, absent, remove_quietly, resolve
from ddb_assets.lake.profile import Profile, profile_from_json, profile_to_json
from ddb_assets.lake.record import INCREMENTAL
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.writer import WrittenFile

FOLDER = "_staged"
# 2: an incremental export's record names its change keys (a reader of 1 must not take it for a
# full export's files: it reads such a record as none, and the export is converted again).
# 3: each file's column statistics instead of its footer. A record of 1 or 2 is still read (its
# files are found, and removed, by discard and maintenance), but commit_staged reports it stale:
# the export is converted again rather than its footers kept as a second way to the statistics.
RECORD_FORMAT = "ddb-assets-staged-3"
READABLE_FORMATS = ("ddb-assets-staged-1", "ddb-assets-staged-2", RECORD_FORMAT)
KEYS_SUFFIX = ".keys.parquet"
ProgressCallback = Callable[[str, dict[str, Any]], None]


class NotStaged(Exception):
    """This export is not staged (the message says why); raised before any data file is read, or
    after a profile pass of shard tasks whose profile could not be planned: then ``export`` and
    ``profile`` are that read's (the export need not be read again to be validated)."""

    def __init__(self, message: str, export: Export | None = None, profile: Profile | None = None):
        super().__init__(message)
        self.export, self.profile = export, profile


class StagingStale(RuntimeError):
    """The staged files cannot be committed as they are (the message says why): convert again."""


@dataclass
class StagedExport:
    """What ``stage_export`` wrote for one export, and what the commit needs besides. For an
    incremental export (``key_columns`` set): ``written`` holds its upserts' new images, and
    ``keys`` names the Parquet table of every change it merges (key columns, ``op``, ``write_micros``)."""

    export_id: str
    source: str  # what the export was opened from: its folder or manifest-summary.json URI
    stored_at_plan: TableSchema | None  # the table's schema the plan extended (None: a new table)
    options: dict[str, Any]  # the schema options and partitioning the plan was made with
    profile: Profile
    written: list[WrittenFile]
    compressed: int  # bytes of gzip read
    uncompressed: int  # bytes of JSON parsed
    scratch_bytes: int  # the most the work folder held (0: one pass)
    one_pass: bool
    json_reader: str
    readers: ReaderCounts = field(default_factory=ReaderCounts)
    seconds: float = 0.0
    path: str = ""  # how the export was read and why (ConvertResult.path)
    record: str | None = None  # URI of the saved record (None: it could not be saved)
    note: str = ""  # why the record could not be saved
    export: Export | None = None  # the export as opened by stage_export (not saved in the record)
    # An incremental export's merge, as planned against the table at staging (None: a full export):
    key_columns: tuple[str, ...] | None = None  # the table's columns of the DynamoDB key attributes
    keys: str | None = None  # URI of the change keys table (_staged/<export id>.keys.parquet)
    skip_before_micros: int | None = None  # allow_overlap: changes written before this (the mark) left out
    skipped: int = 0  # changes left out by skip_before_micros

    @property
    def incremental(self) -> bool:
        return self.key_columns is not None

    @property
    def rows(self) -> int:
        return sum(w.rows for w in self.written)

    def to_json(self) -> bytes:
        from ddb_assets.lake.shards.spec import schema_to_json, written_to_json

        return orjson.dumps({
            "format": RECORD_FORMAT, "export_id": self.export_id, "source": self.source,
            "stored_at_plan": None if self.stored_at_plan is None else schema_to_json(self.stored_at_plan),
            "options": self.options, "profile": orjson.loads(profile_to_json(self.profile, self.export_id)),
            "written": [written_to_json(w) for w in self.written],
            "compressed": self.compressed, "uncompressed": self.uncompressed, "scratch_bytes": self.scratch_bytes,
            "one_pass": self.one_pass, "json_reader": self.json_reader,
            "readers": {"arrow_rs": self.readers.arrow_rs, "pyarrow": self.readers.pyarrow}, "seconds": self.seconds,
            "path": self.path,
            "changes": None if self.key_columns is None else {
                "key_columns": list(self.key_columns), "keys": self.keys,
                "skip_before_micros": self.skip_before_micros, "skipped": self.skipped},
        })

    @classmethod
    def from_json(cls, data: bytes, *, obj: str) -> "StagedExport":
        from ddb_assets.lake.shards.spec import schema_from_json, written_from_json

        try:
            d = orjson.loads(data)
            if not isinstance(d, dict) or d.get("format") not in READABLE_FORMATS:
                raise ValueError(f"not a staged conversion (format {RECORD_FORMAT})")
            _, profile = profile_from_json(orjson.dumps(d["profile"]), obj=obj)
            changes = d.get("changes") or {}
            return cls(
                export_id=d["export_id"], source=d["source"],
                stored_at_plan=None if d["stored_at_plan"] is None else schema_from_json(d["stored_at_plan"]),
                options=d["options"], profile=profile,
                written=[written_from_json(w) for w in d["written"]],
                compressed=d["compressed"], uncompressed=d["uncompressed"], scratch_bytes=d["scratch_bytes"],
                one_pass=d["one_pass"], json_reader=d["json_reader"], readers=ReaderCounts(**d["readers"]),
                seconds=d["seconds"], path=d.get("path", ""), record=obj,
                key_columns=tuple(changes["key_columns"]) if changes else None, keys=changes.get("keys"),
                skip_before_micros=changes.get("skip_before_micros"), skipped=changes.get("skipped", 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{obj}: cannot read the staged conversion ({exc})") from None


def record_location(root: Location, export_id: str) -> Location:
    return root.join(FOLDER, f"{export_id}.json")


def keys_location(root: Location, export_id: str) -> Location:
    """Where an incremental export's change keys are staged, beside its record."""
    return root.join(FOLDER, f"{export_id}{KEYS_SUFFIX}")


def load_staged(root: Location, export_id: str) -> StagedExport | None:
    """The staged conversion of ``export_id`` beside the table at ``root``, or None (none staged,
    or a record this version cannot read: the export is then converted again)."""
    location = record_location(root, export_id)
    try:
        if not location.exists():
            return None
        staged = StagedExport.from_json(location.read_bytes(), obj=location.uri)
    except (OSError, ValueError):
        return None
    return staged if staged.export_id == export_id else None


def _options_of(options: Any) -> dict[str, Any]:
    schema = options.schema_options
    return {"naming": schema.naming, "max_depth": schema.max_depth, "dictionary_keys": schema.dictionary_keys,
            "partition_by": options.partition.text if options.partition else None}


def stage_export(source: str | os.PathLike[str], dest: str | os.PathLike[str], options: Any,
                 progress: ProgressCallback | None = None) -> StagedExport:
    """Read an export once (every check and the profile of ``convert_export``) and write its
    data files for the table at ``dest``, without committing: the record is saved beside the table.
    An incremental export is read in two stages (planned from its own profile), its upserts written
    as data files and every change's keys saved beside the record (``<export id>.keys.parquet``); it
    may be staged before the windows ahead of it are applied (the merge checks the chain at commit).

    ``options`` are ConvertOptions. With a shard runner (spark, glue, emr_serverless) a full export
    is read by shard tasks on that engine, never here (lake/shards/driver.py: ``read_in_shards``):
    in one pass when the table's stored schema and a saved profile plan it, else a profile pass
    and the writing pass (incremental exports are read here whatever the runner, as their merge
    is). Raises NotStaged before any data file is read when staging does not apply (a table that
    holds the export already or refuses it: the message says why), ExportFormatError for bad
    input (a shard's: the same object and line; nothing is left behind), what planning raises
    (SchemaConflict, PartitionError; after a shard profile pass, NotStaged carrying its profile
    instead), and ShardFailed (a shard task the engine gave up on). A record that cannot be saved
    leaves no files either; the result then says why in ``note`` (``record`` is None)."""
    from ddb_assets.lake.convert import _keys_or_empty, _read_and_write, _remove_files, preflight, saved_guess
    from ddb_assets.lake.evolution import SchemaConflict
    from ddb_assets.lake.guards import Refused

    notify = progress or (lambda kind, info: None)
    started = time.monotonic()
    options = replace(options, s3=(options.s3 or S3Options()).with_environment())
    export = open_export(source, options.s3)
    incremental = export.summary.export_type == INCREMENTAL
    try:
        # A window may be staged before the windows ahead of it are applied: a backlog is validated
        # window after window, then applied in one run (the merge checks the chain at commit).
        target, table, stored, options, verdict = preflight(dest, export, options, ahead=incremental)
    except (Refused, SchemaConflict) as exc:
        raise NotStaged(str(exc)) from None
    if verdict.unchanged:
        raise NotStaged(f"the table holds export {export.export_id} already")
    notify("opened", {"files": len(export.files), "items": export.summary.item_count,
                      "export_id": export.export_id})
    # An incremental export's lines are changes: planned from its own profile only.
    guess = None if incremental else saved_guess(dest, export.export_id, options.s3)
    converted = None
    if options.runner.kind != "local" and not incremental:  # incremental exports merge on the local runner
        staged = _stage_in_shards(export, str(source), target, table, stored, options, notify, guess, started)
    else:
        converted = _read_and_write(export, target, table, stored, options, notify, None, guess=guess)
        parsed = converted.parsed
        staged = StagedExport(
            export.export_id, str(source), stored, _options_of(options), converted.profile, converted.written,
            sum(p.compressed for p in parsed), sum(p.uncompressed for p in parsed), sum(p.spilled for p in parsed),
            converted.one_pass, options.json_reader, ReaderCounts.total(p.readers for p in parsed),
            time.monotonic() - started, path=converted.path, export=export)
    root = resolve(str(dest), options.s3)
    location = record_location(root, export.export_id)
    earlier = load_staged(root, export.export_id)  # this export staged before (validated again)
    try:
        if incremental:
            assert converted is not None  # incremental exports are read here, never in shards
            job = converted.job
            keys = _keys_or_empty(converted.keys, job)
            where = keys_location(root, export.export_id)
            where.write_bytes(_parquet_bytes(keys))
            staged = replace(staged, key_columns=job.key_columns, keys=where.uri,
                             skip_before_micros=job.skip_before_micros, skipped=converted.profile.items - keys.num_rows)
        location.write_bytes(staged.to_json())
    except OSError as exc:
        _remove_files(list(staged.written), options.s3)
        if incremental:
            remove_quietly([keys_location(root, export.export_id).uri], options.s3)
        return replace(staged, written=[], key_columns=None, keys=None,
                       note=f"the staged files' record could not be saved ({exc}): the export is converted again "
                            f"when the table is materialized")
    if earlier is not None:  # its record is replaced: its files belong to nothing now
        _remove_files([w for w in earlier.written if w.path not in {n.path for n in staged.written}], options.s3)
    return replace(staged, record=location.uri)


def _stage_in_shards(export: Export, source: str, target: Any, table: Any, stored: TableSchema | None, options: Any,
                     notify: ProgressCallback, guess: tuple[str, Profile] | None, started: float) -> StagedExport:
    """``stage_export``'s read on a shard runner: the shards read, check, profile and write; this
    process reads the manifests only."""
    from ddb_assets.lake.evolution import SchemaConflict
    from ddb_assets.lake.partitioning import PartitionError
    from ddb_assets.lake.shards.driver import read_in_shards

    profiled: list[Profile] = []
    try:
        converted = read_in_shards(export, target, table, stored, options, notify, guess=guess,
                                   profiled=profiled.append)
    except (SchemaConflict, PartitionError) as exc:
        if not profiled:
            raise
        # The shards' profile pass validated every item: the export is valid, only not staged.
        raise NotStaged(str(exc), export=export, profile=profiled[-1]) from None
    reads = converted.reads
    return StagedExport(
        export.export_id, source, stored, _options_of(options), converted.profile, converted.written,
        sum(r.compressed for r in reads), sum(r.uncompressed for r in reads), 0, converted.passes == 1,
        options.json_reader, ReaderCounts.total(r.readers for r in reads), time.monotonic() - started,
        path=converted.path, export=export)


def commit_staged(staged: StagedExport, dest: str | os.PathLike[str], options: Any,
                  progress: ProgressCallback | None = None) -> Any:
    """Commit a staged conversion as one snapshot of the table at ``dest`` (``options`` as for
    ``convert_export``, whose checks it repeats against the table as it is now), and remove its
    record. An incremental export is merged (``merge_export``, its chain checked then) and, with
    ``options.history``, appended to the change history (which reads the export again). Returns a
    ConvertResult (``staged`` true; ``merge`` set for an incremental export). Raises StagingStale
    when the files cannot be committed as they are (the caller converts the export again; the
    staged files are removed), and what ``convert_export``'s commit raises (Refused, ChainError,
    CommitConflict)."""
    from ddb_assets.lake.commit import NOT_COMMITTED, CommitConflict, commit_export, current_result
    from ddb_assets.lake.convert import (ConvertResult, _history, _plan, _remove_files, export_record,
                                         preflight)
    from ddb_assets.lake.evolution import TablePlan

    notify = progress or (lambda kind, info: None)
    started = time.monotonic()
    options = replace(options, s3=(options.s3 or S3Options()).with_environment())
    export = open_export(staged.source, options.s3)  # the manifests only: a few KB

    def stale(why: str) -> StagingStale:
        discard(staged, options.s3)
        return StagingStale(f"the files staged by the validation of export {staged.export_id} cannot be "
                            f"committed: {why}")

    if export.export_id != staged.export_id:
        raise stale(f"{staged.source} now holds export {export.export_id}")
    # An incremental export that does not follow the table now (a window before it missing) keeps
    # its staged files: the run that applies the window before commits them.
    target, table, stored, options, verdict = preflight(dest, export, options)
    if verdict.unchanged:
        _discard_unreferenced(staged, table, options.s3)  # committed by an earlier call, or converted
        history, history_error = _history(target, export, options, notify) if staged.incremental else (None, None)
        return ConvertResult(current_result(table), f"{target.namespace}.{target.name}", target.location.uri,
                             Profile(), TablePlan(stored or TableSchema([]), frozenset()), export, [], 0, 0,
                             time.monotonic() - started, history=history, history_error=history_error)
    if options.rebuild:
        raise stale("a rebuild plans every column anew (new field ids)")
    if any(w.statistics is None for w in staged.written):
        raise stale("they were recorded by an older version of ddb-assets (with Parquet footers, not the column "
                    "statistics the commit now takes)")
    if _options_of(options) != staged.options:
        raise stale(f"they were planned with {staged.options}, this run asks for {_options_of(options)}")
    missing = absent([w.path for w in staged.written], options.s3)  # one client, HEADs overlapped
    if missing:
        raise stale(f"{len(missing)} of its {len(staged.written)} data files are gone (e.g. {missing[0]})")
    if staged.incremental:
        return _merge_staged(staged, export, target, table, stored, options, notify, started, stale)
    plan = _plan(staged.profile, options, staged.stored_at_plan, export)
    only = options.only_partitions
    written = [w for w in staged.written if only is None or w.partition in only]
    others = [w for w in staged.written if only is not None and w.partition not in only]
    try:
        commit = commit_export(target.catalog, target.identifier, target.location.uri, plan, written,
                               export_record(export), only_partitions=only, rebuild=False,
                               stored_at_plan=staged.stored_at_plan)
    except CommitConflict as exc:
        raise stale(str(exc)) from None
    except NOT_COMMITTED:
        discard(staged, options.s3)
        raise
    _remove_files(others, options.s3)
    if commit.unchanged:  # a concurrent run committed the export (perhaps from these very files)
        _discard_unreferenced(staged, commit.table, options.s3)
    _remove_record(staged, options.s3)
    notify("committed", {"snapshot_id": commit.snapshot_id, "rows": commit.rows, "files": commit.added,
                         "delete_files": commit.delete_files})
    return ConvertResult(commit, f"{target.namespace}.{target.name}", target.location.uri, staged.profile, plan,
                         export, written, staged.compressed, staged.uncompressed,
                         staged.seconds + time.monotonic() - started, staged.scratch_bytes, one_pass=staged.one_pass,
                         json_reader=staged.json_reader, readers=staged.readers, staged=True, path=staged.path)


def _merge_staged(staged: StagedExport, export: Export, target: Any, table: Any, stored: TableSchema | None,
                  options: Any, notify: ProgressCallback, started: float,
                  stale: Callable[[str], StagingStale]) -> Any:
    """``commit_staged`` for an incremental export: what its merge depends on checked to be as it
    was at staging (the table's schema, the key columns, the changes skipped by the mark), then
    ``merge_export`` with the staged upserts and change keys, as ``convert_export`` calls it."""
    from datetime import datetime, timezone
    import uuid

    from ddb_assets.lake.catalog import load_table
    from ddb_assets.lake.commit import NOT_COMMITTED, CommitConflict, _schema_key, current_result
    from ddb_assets.lake.convert import ConvertResult, _history, _plan, _write_job, export_record
    from ddb_assets.lake.merge import merge_export

    # The upserts were flattened to the plan made against the schema then, and a copy-on-write
    # merge rewrites the touched files in the plan's columns: against a schema another export has
    # evolved since (a window applied before this one), they would lose its columns.
    then = staged.stored_at_plan
    if stored is None or then is None or _schema_key(stored) != _schema_key(then) or \
            stored.last_column_id != then.last_column_id:
        raise stale("the table's schema has changed since they were planned (an export applied meanwhile "
                    "evolved it)")
    plan = _plan(staged.profile, options, then, export)
    run = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    job = _write_job(plan, target, run, options, export, staged.profile, table)
    if job.key_columns != staged.key_columns:
        raise stale(f"the key columns are {job.key_columns} now, {staged.key_columns} when staged")
    try:
        keys = _read_keys(staged, options.s3)
    except (OSError, ValueError) as exc:
        raise stale(f"its change keys cannot be read ({exc})") from None
    why = _skip_changed(staged, job.skip_before_micros, keys)
    if why:
        raise stale(why)
    try:
        merged = merge_export(target.catalog, target.identifier, plan, staged.written, keys, export_record(export),
                              job.target, location=target.location.uri, allow_overlap=options.allow_overlap,
                              stored_at_plan=then, s3=options.s3, merge_mode=options.merge_mode,
                              progress=notify)
    except CommitConflict as exc:
        raise stale(str(exc)) from None
    except NOT_COMMITTED:
        discard(staged, options.s3)
        raise
    commit = merged.commit or current_result(load_table(target.catalog, *target.identifier))
    if commit.unchanged:  # a concurrent run applied the export (perhaps from these very files)
        _discard_unreferenced(staged, commit.table, options.s3)
    _remove_record(staged, options.s3)
    notify("committed", {"snapshot_id": commit.snapshot_id, "rows": commit.rows, "files": commit.added,
                         "delete_files": commit.delete_files})
    history, history_error = _history(target, export, options, notify)
    return ConvertResult(commit, f"{target.namespace}.{target.name}", target.location.uri, staged.profile, plan,
                         export, list(staged.written), staged.compressed, staged.uncompressed,
                         staged.seconds + time.monotonic() - started, staged.scratch_bytes, one_pass=staged.one_pass,
                         merge=merged, history=history, history_error=history_error,
                         json_reader=staged.json_reader, readers=staged.readers, staged=True, path=staged.path)


def _skip_changed(staged: StagedExport, skip_now: int | None, keys: pa.Table) -> str | None:
    """Why the staged changes are not those a conversion now would merge (allow_overlap skips the
    changes written before the table's mark, and the mark may have moved since), or None. The
    staged keys hold every change kept, with its write time: enough to tell."""
    import pyarrow.compute as pc

    def when(micros: int) -> str:
        from datetime import datetime, timezone

        return datetime.fromtimestamp(micros / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")

    if staged.skipped and (skip_now is None or skip_now < (staged.skip_before_micros or 0)):
        now = f"from {when(skip_now)}" if skip_now is not None else "all of them"
        return (f"{staged.skipped} changes written before {when(staged.skip_before_micros or 0)} (the table's mark "
                f"then) were left out, and this run merges {now}")
    if skip_now is not None:
        early = int(pc.sum(pc.less(keys.column("write_micros"), skip_now)).as_py() or 0)
        if early:
            return (f"{early} of its changes were written before the table's mark now ({when(skip_now)}): an "
                    f"overlapping window is merged by write time")
    return None


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _read_keys(staged: StagedExport, s3: S3Options | None) -> pa.Table:
    """An incremental export's staged change keys. Raises OSError or ValueError (unreadable)."""
    if staged.keys is None:
        raise ValueError("the record names no change keys")
    try:
        return pq.read_table(pa.BufferReader(resolve(staged.keys, s3).read_bytes()))
    except pa.ArrowInvalid as exc:
        raise ValueError(str(exc)) from None


def _discard_unreferenced(staged: StagedExport, table: Any, s3: S3Options | None) -> None:
    """Remove a staged conversion whose export the table holds already: its record, and the staged
    files no snapshot references (a run that committed these very files keeps them)."""
    from ddb_assets.lake.convert import _remove_files
    from ddb_assets.lake.maintenance import _normal, referenced_files

    held = referenced_files(table) if table is not None else set()
    _remove_files([w for w in staged.written if _normal(w.path) not in held], s3)
    _remove_record(staged, s3)


def _remove_record(staged: StagedExport, s3: S3Options | None) -> None:
    """The record and, first, the change keys it names (a record left without its keys goes stale)."""
    if staged.keys is not None:
        remove_quietly([staged.keys], s3)
    if staged.record is None:
        return
    try:
        location = resolve(staged.record, s3)
        location.fs.delete_file(location.path)
    except (OSError, ValueError):
        return  # an unreadable or stale record costs a conversion, never a wrong commit
    if location.scheme == "file":  # the last record gone: no empty _staged/ left in the table's folder
        try:
            os.rmdir(os.path.dirname(location.path))
        except OSError:
            pass  # other records are still there


def discard(staged: StagedExport, s3: S3Options | None) -> None:
    """Remove a staged conversion's files and record (best effort)."""
    from ddb_assets.lake.convert import _remove_files

    _remove_files(list(staged.written), s3)
    _remove_record(staged, s3)


def _records(root: Location, suffix: str = ".json") -> list[Location]:
    """The records (or, with ``suffix`` KEYS_SUFFIX, the change keys) in the table's ``_staged/``."""
    folder = root.join(FOLDER)
    try:
        entries = folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return []
    return sorted((folder.join(os.path.basename(e.path)) for e in entries
                   if e.type == pafs.FileType.File and e.path.endswith(suffix)), key=lambda l: l.uri)


def discard_superseded(root: Location, committed_export_id: str, s3: S3Options | None = None) -> list[str]:
    """Remove the staged conversions of exports older than ``committed_export_id`` (export ids
    begin with the export's time): the table has moved past them, so they will never be committed.
    (An incremental window exported before the window ahead of it and not applied yet loses its
    staged files too: its merge reads it again.) Returns their export ids."""
    removed = []
    for location in _records(root):
        export_id = location.name[:-len(".json")]
        if export_id >= committed_export_id:
            continue
        staged = load_staged(root, export_id)
        if staged is not None:
            discard(staged, s3)
        else:
            try:
                location.fs.delete_file(location.path)
            except OSError:
                continue
        removed.append(export_id)
    # Change keys whose record is gone (a run that died between the two deletions).
    remove_quietly([keys.uri for keys in _records(root, KEYS_SUFFIX)
                    if keys.name[:-len(KEYS_SUFFIX)] < committed_export_id
                    and not record_location(root, keys.name[:-len(KEYS_SUFFIX)]).exists()], s3)
    return removed


def staged_paths(root: Location) -> set[str]:
    """The files named by the staged conversions beside the table at ``root`` (data files, and an
    incremental export's change keys): not orphans while their record lives (maintenance leaves them)."""
    paths: set[str] = set()
    for location in _records(root):
        staged = load_staged(root, location.name[:-len(".json")])
        if staged is not None:
            paths.update(w.path for w in staged.written)
            paths.update([staged.keys] if staged.keys else [])
    return paths


__all__ = ["NotStaged", "StagedExport", "StagingStale", "commit_staged", "discard", "discard_superseded",
           "load_staged", "stage_export", "staged_paths"]
