"""Keeping a lake table healthy: expire old snapshots, remove orphan files, compact small files.

Commits never delete anything (lake/commit.py): superseded data files stay readable by the
snapshots that reference them, and a failed or killed run leaves unreferenced files. This is where
both go, on a schedule (the Dagster maintenance job) or by hand (``ddb-assets maintain``). First
it checks that every file the current snapshot lists exists (MissingFiles, nothing changed, if not:
expiring or removing could take away the way back); then:

1. **expire**: snapshots older than ``expire_after`` are dropped from the table's metadata, always
   keeping the newest ``keep_snapshots``, the current one and the nearest one that records an
   export (pyiceberg's ExpireSnapshots): what the table holds is read from the chain that remains
   (a compaction carries the record of the state it compacted, lake/record.py ``carried_record``);
2. **orphans**: files under the table's location that no remaining snapshot or metadata file
   references and that are older than ``grace`` (a run still writing has younger files) are
   deleted: the files superseded by expired snapshots, and those of failed runs; on S3 also the
   table's incomplete multipart uploads begun before the same cut-off (a writer killed mid-file
   leaves one: no listing shows it, yet its parts are billed until it is aborted);
3. **compact**: a partition holding several files smaller than ``small_file_bytes``, or data files
   that position-delete files apply to (merge-on-read merges), gets them rewritten as one file
   without the deleted rows, in one snapshot that replaces them and drops those delete files
   (same rows, same schema).
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ddb_assets.exports.storage import Location, S3Options, resolve, resolver
from ddb_assets.lake.commit import CommitConflict, data_files_for, file_partition_name
from ddb_assets.lake.file_stats import metrics_properties
from ddb_assets.lake.record import COMPACT, OPERATION, carried_record, recording_snapshot
from ddb_assets.lake.schema import TableSchema
from ddb_assets.wording import counted

ProgressCallback = Callable[[str], None]
# ``committing`` just before each commit, ``committed`` once it landed (``snapshot_id`` if it made one,
# ``said``: what landed, in words): the command line's critical section (cli_interrupts.py).
CommitEvents = Callable[[str, dict], None]  # type: ignore[type-arg]


def _no_events(kind: str, info: dict) -> None:  # type: ignore[type-arg]
    pass


@dataclass(frozen=True)
class MaintenanceOptions:
    expire_after: timedelta = timedelta(days=7)
    keep_snapshots: int = 10
    grace: timedelta = timedelta(hours=24)
    small_file_bytes: int = 32 << 20
    compact: bool = True
    dry_run: bool = False  # report what would be done, change nothing


@dataclass
class MaintenanceResult:
    expired_snapshots: list[int] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # removed (or, dry run, removable) file URIs
    orphan_bytes: int = 0
    aborted_uploads: list[str] = field(default_factory=list)  # aborted (or, dry run, abortable) uploads' s3:// URIs
    # Why the uploads could not be listed or aborted (a missing permission), or None: the rest is done
    # (commits landed) whatever this step's trouble, so it is said, not raised.
    uploads_error: str | None = None
    compacted: dict[str, tuple[int, int]] = field(default_factory=dict)  # partition -> (data files before, after)
    folded_delete_files: int = 0  # position-delete files the compaction applied (dry run: would apply)
    snapshot_id: int | None = None  # the compaction's snapshot, if any
    seconds: float = 0.0


class MissingFiles(LookupError):
    """The table's current snapshot lists data or delete files that are gone (deleted by hand, by a
    bucket lifecycle rule, or a copy that left them out): the table cannot be read, and maintenance
    changes nothing then (expiring snapshots or removing files could take away the way back)."""


class UploadsNotAborted(RuntimeError):
    """A table's incomplete multipart uploads could not be listed or aborted (``abort_stale_uploads``)."""


def missing_files(table: Any, s3: S3Options | None = None,
                  data_files: list[tuple[str, pafs.FileInfo]] | None = None) -> list[str]:
    """The files (URIs, sorted) the current snapshot's live manifest entries list that do not
    exist: the table's ``data/`` folder is listed once (a few requests on S3 for any number of
    files; ``data_files``: that listing, taken already, as ``_files_under`` gives it); a file
    elsewhere is looked up alone."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    listed = {_normal(entry.data_file.file_path) for manifest in snapshot.manifests(table.io)
              for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)}
    root = resolve(table.location(), s3)
    data = root.join("data")
    inside = (f"s3://{data.path}" if root.scheme == "s3" else data.path).rstrip("/") + "/"
    present = {_normal(uri) for uri, _ in (_files_under(data) if data_files is None else data_files)}
    missing = []
    for uri in sorted(listed):
        if uri.startswith(inside):
            if uri not in present:
                missing.append(uri)
        else:
            location = resolve(uri, s3)
            if location.fs.get_file_info(location.path).type == pafs.FileType.NotFound:
                missing.append(uri)
    return missing


def maintain(table: Any, options: MaintenanceOptions = MaintenanceOptions(), s3: S3Options | None = None,
             progress: ProgressCallback = lambda message: None, on_event: CommitEvents = _no_events) -> MaintenanceResult:
    """Compact, then expire, then remove orphans (compaction first, so the files it replaces are
    superseded in time to be collected once their snapshot expires). Raises MissingFiles, before
    changing anything, when the current snapshot lists files that are gone. ``on_event`` hears of
    each commit (CommitEvents)."""
    started = time.monotonic()
    result = MaintenanceResult()
    # One listing of data/ for both the check and the orphan sweep (on S3, a request per 1,000
    # files). Files written after it are this run's compaction's (referenced) or a running
    # writer's (younger than any cut-off that matters): never orphans the sweep could miss.
    data_files = _files_under(resolve(table.location(), s3).join("data"))
    missing = missing_files(table, s3, data_files)
    if missing:
        name = table.name()[-1]
        snapshot = table.current_snapshot().snapshot_id
        raise MissingFiles(f"table {name}: {counted(len(missing), 'file')} that its current snapshot {snapshot} lists "
                           f"{'is' if len(missing) == 1 else 'are'} missing (first: {missing[0]}), so the table "
                           f"cannot be read; nothing was changed: restore {'it' if len(missing) == 1 else 'them'}, "
                           f"or roll back to a snapshot whose files exist (`ddb-assets history {name}`, then "
                           f"`ddb-assets rollback {name} SNAPSHOT_ID`) and run maintenance again")
    progress("every file the current snapshot lists is there")
    if options.compact:
        folded: set[str] = set()
        result.compacted, result.snapshot_id = compact_small_files(table, options.small_file_bytes, s3,
                                                                   dry_run=options.dry_run, on_event=on_event,
                                                                   folded=folded)
        result.folded_delete_files = len(folded)
        progress(f"compacted {counted(len(result.compacted), 'partition')}")
    result.expired_snapshots = expire_snapshots(table, options.expire_after, options.keep_snapshots,
                                                dry_run=options.dry_run, on_event=on_event)
    progress(f"expired {counted(len(result.expired_snapshots), 'snapshot')}")
    # A dry run expired nothing: its orphans are counted as if it had (what the real run removes).
    result.orphans, result.orphan_bytes = remove_orphan_files(
        table, options.grace, s3, dry_run=options.dry_run,
        expired=set(result.expired_snapshots) if options.dry_run else frozenset(), data_files=data_files)
    progress(f"removed {counted(len(result.orphans), 'orphan file')}")
    try:
        result.aborted_uploads = abort_stale_uploads(table.location(), options.grace, s3, dry_run=options.dry_run)
    except UploadsNotAborted as exc:
        result.uploads_error = str(exc)
    if result.aborted_uploads:
        progress(f"aborted {counted(len(result.aborted_uploads), 'incomplete multipart upload')}")
    result.seconds = time.monotonic() - started
    return result


def expire_snapshots(table: Any, older_than: timedelta, keep: int, *, dry_run: bool = False,
                     on_event: CommitEvents = _no_events) -> list[int]:
    """Drop snapshots older than ``older_than`` from the metadata, keeping the newest ``keep``, the
    current one, and the nearest one recording an export (lake/record.py ``recording_snapshot``).
    Returns the ids expired."""
    cutoff = (datetime.now(timezone.utc) - older_than).timestamp() * 1000
    current = table.current_snapshot()
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    kept = {s.snapshot_id for s in snapshots[-keep:]} if keep > 0 else set()
    if current is not None:
        kept.add(current.snapshot_id)
    # The nearest snapshot recording an export stays (under another writer's snapshot, say): without
    # it the table would lose its high-water mark and the exports it holds.
    recording = recording_snapshot(table)
    if recording is not None:
        kept.add(recording.snapshot_id)
    expired = [s.snapshot_id for s in snapshots if s.timestamp_ms < cutoff and s.snapshot_id not in kept]
    if expired and not dry_run:
        on_event("committing", {})
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        on_event("committed", {"said": f"{counted(len(expired), 'snapshot')} expired"})
        table.refresh()
    return expired


def referenced_files(table: Any, expired: set[int] | frozenset[int] = frozenset()) -> set[str]:
    """Every file a snapshot (but those in ``expired``) or metadata file of the table still
    references (normalized URIs). Each manifest is read once: snapshots share most of theirs (a
    merge rewrites a few and carries the rest), and a manifest never changes once written, so a
    week of 15-minute windows reads each of its manifests once, not once per snapshot (~670)."""
    metadata = table.metadata
    files = {table.metadata_location}
    files.update(entry.metadata_file for entry in metadata.metadata_log)
    read: set[str] = set()
    for snapshot in table.snapshots():
        if snapshot.snapshot_id in expired:
            continue
        files.add(snapshot.manifest_list)
        try:
            manifests = snapshot.manifests(table.io)
        except FileNotFoundError:
            raise _missing_metadata(table, snapshot, snapshot.manifest_list) from None
        for manifest in manifests:
            if manifest.manifest_path in read:
                continue
            read.add(manifest.manifest_path)
            files.add(manifest.manifest_path)
            try:
                entries = manifest.fetch_manifest_entry(table.io, discard_deleted=True)
            except FileNotFoundError:
                raise _missing_metadata(table, snapshot, manifest.manifest_path) from None
            for entry in entries:
                files.add(entry.data_file.file_path)
    for statistics in metadata.statistics:
        files.add(statistics.statistics_path)
    return {_normal(f) for f in files}


def _missing_metadata(table: Any, snapshot: Any, path: str) -> MissingFiles:
    name = table.name()[-1]
    current = table.current_snapshot()
    which = "its current snapshot" if current is not None and current.snapshot_id == snapshot.snapshot_id else \
        f"its snapshot {snapshot.snapshot_id} (not the current one)"
    return MissingFiles(f"table {name}: {which} lists {path}, which is missing, so maintenance cannot tell which "
                        f"files the table still references and removed none: restore the file, or, for an older "
                        f"snapshot, expire it with another engine (Spark's expire_snapshots) before maintenance runs "
                        f"again")


def _commit_failed() -> type:
    from pyiceberg.exceptions import CommitFailedException

    return CommitFailedException


def remove_orphan_files(table: Any, grace: timedelta, s3: S3Options | None = None, *,
                        dry_run: bool = False, expired: set[int] | frozenset[int] = frozenset(),
                        data_files: list[tuple[str, pafs.FileInfo]] | None = None) -> tuple[list[str], int]:
    """Delete files under the table's ``data/`` and ``metadata/`` that nothing references and
    that are older than ``grace``. Returns (file URIs, bytes). ``expired``: snapshots to count as
    gone (a dry run's, which expired nothing). ``data_files``: the listing of ``data/``, taken
    already (``_files_under``)."""
    from ddb_assets.lake.staging import staged_paths

    root = resolve(table.location(), s3)
    # The table as the catalog has it now, not as this run loaded it: a commit that landed since
    # (an export's merge while maintenance ran) references files the older metadata does not
    # know, its metadata file among them, and a short grace would take them from under it.
    try:
        table.refresh()
    except NotImplementedError:
        pass  # a static table, read from one metadata file: no catalog to ask
    # Files a validation staged for a commit still to come are not orphans (lake/staging.py).
    referenced = referenced_files(table, expired) | {_normal(p) for p in staged_paths(root)}
    # A commit in flight wrote its data files, then writes its manifests and manifest list, before
    # the catalog points at them: whatever was written since the current metadata file (this
    # run's own expiry or compaction commit, or a later one) may be such a commit's, never an
    # orphan yet (the grace alone cannot tell: with none, a merge's fresh files were swept in the
    # moment between its check of them and its commit).
    current = resolve(table.metadata_location, s3)
    current_info = current.fs.get_file_info(current.path)
    current_written = current_info.mtime.timestamp() if current_info.mtime is not None else None
    cutoff = time.time() - grace.total_seconds()
    removed, size = [], 0
    for folder in ("data", "metadata"):
        location = root.join(folder)
        for uri, entry in (data_files if folder == "data" and data_files is not None else _files_under(location)):
            if _normal(uri) in referenced:
                continue
            modified = entry.mtime.timestamp() if entry.mtime is not None else 0.0
            if modified > cutoff:
                continue  # perhaps a run still writing, or a commit in flight: not an orphan yet
            if current_written is None or modified >= current_written:
                # Written since the table's last commit: a run about to commit (its data files, checked
                # just before its commit, then its manifests), never an orphan yet. A killed run's
                # files go once any later commit (this maintenance's own, the next export's) is made.
                continue
            if not dry_run:
                location.fs.delete_file(entry.path)
            removed.append(uri)
            size += entry.size or 0
    if root.scheme == "file" and not dry_run:
        _remove_empty_folders(root.join("data").path)
    elif root.scheme == "s3" and not dry_run:
        _remove_empty_markers(root.join("data"), s3)
    return removed, size


def abort_stale_uploads(location: str, grace: timedelta, s3: S3Options | None = None, *,
                        dry_run: bool = False) -> list[str]:
    """Abort the incomplete multipart uploads under the ``data/`` of the table at ``location``
    (``s3://...``) begun more than ``grace`` ago: a writer killed mid-file (OOM, SIGKILL, a lost
    spot instance or Spark executor) leaves its upload, which no listing of objects shows and
    whose parts are billed until it is aborted. A younger one may be a running writer's: kept.
    ``dry_run``: only named. Returns the ``s3://`` URIs of the objects they were uploading, in
    key order (a key twice if it had two uploads); none for a local table. Needs
    ``s3:ListBucketMultipartUploads`` and ``s3:AbortMultipartUpload``: raises UploadsNotAborted
    (what went wrong, the AWS error code and operation) without them, or when S3 cannot be reached."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ddb_assets.exports.storage import s3_client, s3_client_failure

    root = resolve(location, s3)
    if root.scheme != "s3":
        return []  # a local file is whole or gone: nothing to abort
    bucket, _, key = root.join("data").path.partition("/")
    prefix = key.rstrip("/") + "/"
    cutoff = datetime.now(timezone.utc) - grace
    client = s3_client(s3)
    aborted: list[str] = []
    operation = "ListMultipartUploads"
    try:
        stale = [upload for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket,
                                                                                          Prefix=prefix)
                 for upload in page.get("Uploads", []) if upload["Initiated"] < cutoff]
        operation = "AbortMultipartUpload"
        for upload in stale:
            if not dry_run:
                try:
                    client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                except client.exceptions.NoSuchUpload:
                    continue  # completed or aborted since the listing (another maintenance run)
            aborted.append(f"s3://{bucket}/{upload['Key']}")
    except (BotoCoreError, ClientError) as exc:
        reason = s3_client_failure(exc, client, operation) or " ".join(str(exc).split())
        done = f" ({counted(len(aborted), 'upload')} aborted before)" if aborted else ""
        raise UploadsNotAborted(f"the incomplete multipart uploads under s3://{bucket}/{prefix} could not be "
                                f"{'listed' if operation == 'ListMultipartUploads' else 'aborted'}{done}: {reason}; "
                                f"maintenance needs s3:ListBucketMultipartUploads and s3:AbortMultipartUpload "
                                f"on the lake bucket") from None
    return aborted


def _files_under(location: Location) -> list[tuple[str, pafs.FileInfo]]:
    """Every file below ``location`` (recursively; none when it does not exist): (its URI as
    snapshots name it, ``s3://...`` or a local path; its FileInfo)."""
    try:
        entries = location.fs.get_file_info(pafs.FileSelector(location.path, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    return [(f"s3://{entry.path}" if location.scheme == "s3" else entry.path, entry)
            for entry in entries if entry.type == pafs.FileType.File]


def _normal(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _remove_empty_folders(path: str) -> None:
    import os

    for directory, _, _ in os.walk(path, topdown=False):
        if directory != path:
            try:
                os.rmdir(directory)  # succeeds only when empty
            except OSError:
                pass


def _remove_empty_markers(data: Location, s3: S3Options | None) -> int:
    """Delete the zero-byte folder markers (``.../data/year=2009/``) left under ``data`` on S3 with
    no file below them: pyarrow's S3 file system writes one for a folder it emptied by deleting a
    file (a failed run's, an orphan's), so they would pile up with every clean-up. Listed and
    deleted through boto3 (which sees every marker, and writes none back). Returns how many were
    deleted (best effort: a refusal leaves them; they hold nothing)."""
    from bisect import bisect_left

    from ddb_assets.exports.storage import s3_client

    bucket, _, key = data.path.partition("/")
    prefix = key.rstrip("/") + "/"
    client = s3_client(s3)
    try:
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])]
        files = sorted(k for k in keys if not k.endswith("/"))
        empty = [k for k in keys if k.endswith("/") and k != prefix
                 and not (bisect_left(files, k) < len(files) and files[bisect_left(files, k)].startswith(k))]
        for start in range(0, len(empty), 1000):  # DeleteObjects takes 1,000 keys at most
            client.delete_objects(Bucket=bucket, Delete={"Quiet": True,
                                                         "Objects": [{"Key": k} for k in empty[start:start + 1000]]})
    except Exception:  # noqa: BLE001 - markers are cosmetic: the sweep's work is done
        return 0
    return len(empty)


def compact_small_files(table: Any, small_file_bytes: int, s3: S3Options | None = None, *,
                        dry_run: bool = False, on_event: CommitEvents = _no_events,
                        folded: set[str] | None = None) -> tuple[dict[str, tuple[int, int]], int | None]:
    """Rewrite, per partition, its small files (two or more under ``small_file_bytes``) and its
    files with position deletes as one file without the deleted rows, in one snapshot for the
    table that also drops the delete files folded (the files read ahead on threads while the one
    before is written: lake/read_ahead.py). Returns ({partition: (data files before, 1)}, snapshot
    id or None); ``folded`` gets the paths of the position-delete files whose rows it applies (would
    apply, dry run), which a summary counts apart from the data files."""
    from ddb_assets.lake.position_deletes import (PositionIndex, deleted_positions, keep_mask, remove_files,
                                                  without_files)
    from ddb_assets.lake.read_ahead import ReadAhead
    from ddb_assets.lake.row_delta import row_delta
    from ddb_assets.lake.writer import FileTarget, PartitionedWriter

    snapshot = table.current_snapshot()
    if snapshot is None or small_file_bytes <= 0:
        return {}, None
    specs, iceberg_schema = table.specs(), table.schema()
    try:
        stored: TableSchema | None = TableSchema.from_iceberg(iceberg_schema, table.properties,
                                                              table.metadata.last_column_id)
    except ValueError:
        # No column mapping: a change history (<table>_changes, one Arrow schema, unpartitioned) is
        # compacted in its Iceberg schema; a partitioned table of another writer is left alone (its
        # rows could not be routed to its partitions here).
        stored = None
        if table.spec().fields:
            return {}, None
    small: dict[str, list[Any]] = {}
    with_deletes: dict[str, list[Any]] = {}
    for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
        data_file = task.file
        name = file_partition_name(data_file, specs, iceberg_schema)
        if task.delete_files:
            with_deletes.setdefault(name, []).append(task)
        elif data_file.file_size_in_bytes < small_file_bytes and data_file.spec_id == table.spec().spec_id:
            small.setdefault(name, []).append(task)
    names = set(with_deletes) | {name for name, tasks in small.items() if len(tasks) > 1}
    groups = {name: [*with_deletes.get(name, []), *small.get(name, [])] for name in names}
    plan = {name: (len(tasks), 1) for name, tasks in sorted(groups.items())}
    if folded is not None:
        folded.update(d.file_path for tasks in groups.values() for task in tasks for d in task.delete_files)
    if not groups or dry_run:
        return plan, None
    source = stored.partition_source() if stored is not None else None
    partitioned = stored is not None and source is not None and bool(table.spec().fields)
    target = FileTarget(data=f"{table.location().rstrip('/')}/data",
                        run=f"compact-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
                        partition=stored.partition if partitioned and stored is not None else None,
                        source_column=source.name if partitioned and source is not None else None,
                        compression=table.properties.get("write.parquet.compression-codec", "zstd"),
                        metrics=metrics_properties(table.properties))
    arrow_schema = stored.arrow_schema if stored is not None else iceberg_schema.as_arrow()
    writer = PartitionedWriter(resolve(target.data, s3), arrow_schema, target, worker=0)
    cache: dict[str, PositionIndex] = {}  # delete files by path, indexed once: one applies to many data files
    ordered = [task for tasks in groups.values() for task in tasks]
    locate = resolver(s3)  # one S3 client for every file read: connections are reused
    try:
        # Data files are read ahead on threads (lake/read_ahead.py) while the one before is written;
        # the deleted positions are looked up here, on this thread alone, so ``cache`` needs no lock.
        with ReadAhead(ordered, lambda task: read_data_file(task.file, arrow_schema, s3, locate),
                       size=lambda task: task.file.file_size_in_bytes, thread_name_prefix="compact") as tables:
            for task, rows in zip(ordered, tables):
                if task.delete_files:
                    rows = rows.filter(keep_mask(rows.num_rows, deleted_positions(
                        task.delete_files, task.file.file_path, s3, cache)))
                if rows.num_rows:
                    writer.write(rows)
                del rows  # not held while the next file is waited for
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    # The table still holds the same exports: the record of the state it compacts is carried along,
    # naming the snapshot that applied its export (what the change history matches once that one expires).
    summary = carried_record(table)
    summary[OPERATION] = COMPACT
    removed = [task.file for tasks in groups.values() for task in tasks]
    delete_files = {d for tasks in groups.values() for task in tasks for d in task.delete_files}
    transaction = table.transaction()
    replacements: list[Any] = []
    if delete_files:
        try:
            gone, replacements = without_files(delete_files, {f.file_path for f in removed}, target.run, s3,
                                               target.compression)
        except BaseException:
            remove_files([SimpleNamespace(file_path=w.path) for w in written], s3)
            raise
        row_delta(transaction, summary, added_data=data_files_for(transaction, written), added_deletes=replacements,
                  removed=[*removed, *gone])
    else:
        with transaction.update_snapshot(snapshot_properties=summary).overwrite() as producer:
            for data_file in removed:
                producer.delete_data_file(data_file)
            for data_file in data_files_for(transaction, written):
                producer.append_data_file(data_file)
    on_event("committing", {})
    try:
        transaction.commit_transaction()
    except _commit_failed() as exc:
        # Another writer (an export's merge, say) committed since this compaction read the table:
        # what it compacted may be gone or changed, so nothing is committed over it.
        ours = [SimpleNamespace(file_path=w.path) for w in written] + list(replacements if delete_files else [])
        remove_files(ours, s3)
        raise CommitConflict(f"table {table.name()[-1]}: another writer committed to it while maintenance compacted "
                             f"it ({' '.join(str(exc).split())}); nothing was committed and the compacted files were "
                             f"removed: run maintenance again") from None
    table.refresh()
    compacted = table.current_snapshot().snapshot_id
    on_event("committed", {"snapshot_id": compacted, "said": f"the compaction is committed (snapshot {compacted})"})
    return plan, compacted


def read_as(path: str, schema: pa.Schema, s3: S3Options | None, *, file_size: int | None = None,
            memory_pool: pa.MemoryPool | None = None, use_threads: bool = True,
            locate: Callable[[str], Location] | None = None) -> pa.Table:
    """A data file in the table's current schema, matching columns by Iceberg field id (older
    files lack newer columns: null; a widened decimal is cast up, exactly). ``file_size`` (bytes,
    the manifest's): no request for it; ``memory_pool``: where the table's buffers come from
    (pyarrow's default pool when None); ``use_threads``: decode columns on Arrow's CPU pool;
    ``locate``: a ``resolver(s3)`` shared by many reads (one S3 client: connections reused)."""
    import pyarrow.dataset as ds

    location = (locate or (lambda uri: resolve(uri, s3)))(path)
    # One fragment, read as pq.read_table reads it (its options), but into ``memory_pool`` (read_table takes none).
    fragment = ds.ParquetFileFormat(arrow_extensions_enabled=True).make_fragment(location.path, location.fs,
                                                                          file_size=file_size or None)
    table = fragment.to_table(use_threads=use_threads, memory_pool=memory_pool)
    by_id = {int(f.metadata[b"PARQUET:field_id"]): i for i, f in enumerate(table.schema)
             if f.metadata and b"PARQUET:field_id" in f.metadata}
    arrays = []
    for target in schema:
        field_id = int(target.metadata[b"PARQUET:field_id"])
        if field_id in by_id:
            column = table.column(by_id[field_id]).combine_chunks(memory_pool=memory_pool)
            arrays.append(column if column.type == target.type else pc.cast(column, target.type,
                                                                            memory_pool=memory_pool))
        else:
            arrays.append(pa.nulls(table.num_rows, target.type, memory_pool=memory_pool))
    return pa.Table.from_arrays(arrays, schema=schema)


def read_data_file(data_file: Any, schema: pa.Schema, s3: S3Options | None,
                   locate: Callable[[str], Location] | None = None) -> pa.Table:
    """read_as for a read-ahead thread (lake/read_ahead.py): ``data_file`` (a manifest's DataFile)
    in ``schema``, its size from the manifest, decoded on the calling thread only (the threads
    reading ahead are the parallelism), into the system allocator: pyarrow's default (mimalloc)
    keeps a heap per thread that allocated, about 8 MiB each, which a merge's peak memory would
    carry for every read thread (as merge.py's key reads do). ``locate``: as read_as's."""
    return read_as(data_file.file_path, schema, s3, file_size=data_file.file_size_in_bytes,
                   memory_pool=pa.system_memory_pool(), use_threads=False, locate=locate)
