"""Staged conversions: an export read once, its data files written, committed later.

In Dagster two steps see every export: validation (``raw_export``) and the lake table's commit
(``parquet``). Reading the export in both would fetch, decompress and parse every byte twice, so
validation *is* the conversion's read: ``stage_export`` fetches and decompresses each data file
once, checks everything (md5, item counts, every AttributeValue), profiles every item and writes
the table's data files under its ``data/``, without committing them. A record of what it wrote
(``<table location>/_staged/<export id>.json``) lets ``commit_staged`` commit them as one Iceberg
snapshot later: the manifests are read again (a few KB), the data files are not.

A staged conversion is a plan made against the table as it was at staging time. When the table
or the options have moved on in a way the staged files cannot follow (another run evolved the
schema, a rebuild asks for new field ids, maintenance removed the files), ``commit_staged``
raises StagingStale and the caller converts the export again, saying why: the staged files are
an optimisation, never the only way to the table.

Files staged and never committed (an export superseded before its commit, a run that died) are
removed by ``discard_staged``/``discard_superseded`` and, failing that, by maintenance's orphan
removal, which leaves files named by a live record alone (``staged_paths``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import orjson
import pyarrow.fs as pafs

from ddb_assets.exports.json_reader import ReaderCounts
from ddb_assets.exports.reader import Export, open_export
from ddb_assets.exports.storage import Location, S3Options, resolve
from ddb_assets.lake.profile import Profile, profile_from_json, profile_to_json
from ddb_assets.lake.record import INCREMENTAL
from ddb_assets.lake.schema import TableSchema
from ddb_assets.lake.writer import WrittenFile

FOLDER = "_staged"
RECORD_FORMAT = "ddb-assets-staged-1"
ProgressCallback = Callable[[str, dict[str, Any]], None]


class NotStaged(Exception):
    """This export is not staged (the message says why); raised before any data file is read."""


class StagingStale(RuntimeError):
    """The staged files cannot be committed as they are (the message says why): convert again."""


@dataclass
class StagedExport:
    """What ``stage_export`` wrote for one full export, and what the commit needs besides."""

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
        })

    @classmethod
    def from_json(cls, data: bytes, *, obj: str) -> "StagedExport":
        from ddb_assets.lake.shards.spec import schema_from_json, written_from_json

        try:
            d = orjson.loads(data)
            if not isinstance(d, dict) or d.get("format") != RECORD_FORMAT:
                raise ValueError(f"not a staged conversion (format {RECORD_FORMAT})")
            _, profile = profile_from_json(orjson.dumps(d["profile"]), obj=obj)
            return cls(
                export_id=d["export_id"], source=d["source"],
                stored_at_plan=None if d["stored_at_plan"] is None else schema_from_json(d["stored_at_plan"]),
                options=d["options"], profile=profile,
                written=[written_from_json(w) for w in d["written"]],
                compressed=d["compressed"], uncompressed=d["uncompressed"], scratch_bytes=d["scratch_bytes"],
                one_pass=d["one_pass"], json_reader=d["json_reader"], readers=ReaderCounts(**d["readers"]),
                seconds=d["seconds"], path=d.get("path", ""), record=obj)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{obj}: cannot read the staged conversion ({exc})") from None


def record_location(root: Location, export_id: str) -> Location:
    return root.join(FOLDER, f"{export_id}.json")


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
    """Read a full export once (every check and the profile of ``convert_export``) and write its
    data files for the table at ``dest``, without committing: the record is saved beside the table.

    ``options`` are ConvertOptions. Raises NotStaged before any data file is read when staging does
    not apply (an incremental export, a non-local runner, a table that holds the export already or
    refuses it: the message says why), ExportFormatError for bad input (nothing is left behind),
    and what planning raises (SchemaConflict, PartitionError). A record that cannot be saved
    leaves no files either; the result then says why in ``note`` (``record`` is None)."""
    from ddb_assets.lake.convert import _read_and_write, _remove_files, preflight, saved_guess
    from ddb_assets.lake.evolution import SchemaConflict
    from ddb_assets.lake.guards import Refused

    notify = progress or (lambda kind, info: None)
    started = time.monotonic()
    options = replace(options, s3=(options.s3 or S3Options()).with_environment())
    export = open_export(source, options.s3)
    if export.summary.export_type == INCREMENTAL:
        raise NotStaged("an incremental export is read again when it is merged (it holds only its window's "
                        "changes, and the merge needs the table as the exports before it leave it)")
    if options.runner.kind != "local":
        raise NotStaged(f"the {options.runner.kind} runner converts in shard tasks when the table is materialized")
    try:
        target, table, stored, options, verdict = preflight(dest, export, options)
    except (Refused, SchemaConflict) as exc:
        raise NotStaged(str(exc)) from None
    if verdict.unchanged:
        raise NotStaged(f"the table holds export {export.export_id} already")
    notify("opened", {"files": len(export.files), "items": export.summary.item_count,
                      "export_id": export.export_id})
    converted = _read_and_write(export, target, table, stored, options, notify, None,
                                guess=saved_guess(dest, export.export_id, options.s3))
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
        location.write_bytes(staged.to_json())
    except OSError as exc:
        _remove_files(list(staged.written), options.s3)
        return replace(staged, written=[], note=f"the staged files' record could not be saved ({exc}): the "
                                                f"export is converted again when the table is materialized")
    if earlier is not None:  # its record is replaced: its files belong to nothing now
        _remove_files([w for w in earlier.written if w.path not in {n.path for n in staged.written}], options.s3)
    return replace(staged, record=location.uri)


def commit_staged(staged: StagedExport, dest: str | os.PathLike[str], options: Any,
                  progress: ProgressCallback | None = None) -> Any:
    """Commit a staged conversion as one snapshot of the table at ``dest`` (``options`` as for
    ``convert_export``, whose checks it repeats against the table as it is now), and remove its
    record. Returns a ConvertResult (``staged`` true). Raises StagingStale when the files cannot
    be committed as they are (the caller converts the export again; the staged files are removed),
    and what ``convert_export``'s commit raises (Refused, CommitConflict)."""
    from ddb_assets.lake.commit import NOT_COMMITTED, CommitConflict, commit_export, current_result
    from ddb_assets.lake.convert import ConvertResult, _plan, _remove_files, export_record, preflight
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
    target, table, stored, options, verdict = preflight(dest, export, options)
    if verdict.unchanged:
        discard(staged, options.s3)
        return ConvertResult(current_result(table), f"{target.namespace}.{target.name}", target.location.uri,
                             Profile(), TablePlan(stored or TableSchema([]), frozenset()), export, [], 0, 0,
                             time.monotonic() - started)
    if options.rebuild:
        raise stale("a rebuild plans every column anew (new field ids)")
    if _options_of(options) != staged.options:
        raise stale(f"they were planned with {staged.options}, this run asks for {_options_of(options)}")
    missing = [w.path for w in staged.written if not resolve(w.path, options.s3).exists()]
    if missing:
        raise stale(f"{len(missing)} of its {len(staged.written)} data files are gone (e.g. {missing[0]})")
    plan = _plan(staged.profile, options, staged.stored_at_plan)
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
    _remove_files(others if not commit.unchanged else list(staged.written), options.s3)
    _remove_record(staged, options.s3)
    notify("committed", {"snapshot_id": commit.snapshot_id, "rows": commit.rows, "files": commit.added})
    return ConvertResult(commit, f"{target.namespace}.{target.name}", target.location.uri, staged.profile, plan,
                         export, written, staged.compressed, staged.uncompressed,
                         staged.seconds + time.monotonic() - started, staged.scratch_bytes, one_pass=staged.one_pass,
                         json_reader=staged.json_reader, readers=staged.readers, staged=True, path=staged.path)


def _remove_record(staged: StagedExport, s3: S3Options | None) -> None:
    if staged.record is None:
        return
    try:
        location = resolve(staged.record, s3)
        location.fs.delete_file(location.path)
    except (OSError, ValueError):
        pass  # an unreadable or stale record costs a conversion, never a wrong commit


def discard(staged: StagedExport, s3: S3Options | None) -> None:
    """Remove a staged conversion's files and record (best effort)."""
    from ddb_assets.lake.convert import _remove_files

    _remove_files(list(staged.written), s3)
    _remove_record(staged, s3)


def _records(root: Location) -> list[Location]:
    folder = root.join(FOLDER)
    try:
        entries = folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return []
    return sorted((folder.join(os.path.basename(e.path)) for e in entries
                   if e.type == pafs.FileType.File and e.path.endswith(".json")), key=lambda l: l.uri)


def discard_superseded(root: Location, committed_export_id: str, s3: S3Options | None = None) -> list[str]:
    """Remove the staged conversions of exports older than ``committed_export_id`` (export ids
    begin with the export's time): the table has moved past them, so they will never be committed.
    Returns their export ids."""
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
    return removed


def staged_paths(root: Location) -> set[str]:
    """The data files named by the staged conversions beside the table at ``root``: not orphans
    while their record lives (maintenance leaves them)."""
    paths: set[str] = set()
    for location in _records(root):
        staged = load_staged(root, location.name[:-len(".json")])
        if staged is not None:
            paths.update(w.path for w in staged.written)
    return paths


__all__ = ["NotStaged", "StagedExport", "StagingStale", "commit_staged", "discard", "discard_superseded",
           "load_staged", "stage_export", "staged_paths"]
