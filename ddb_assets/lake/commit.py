"""One commit per export: the files a conversion wrote become one Iceberg snapshot.

The protocol (docs/architecture.md, "One commit protocol"): workers write data files that no
snapshot references; then one catalog commit adds them (and, for a table that exists, removes the
data files of the partitions the export rewrites), with the schema evolution the plan asks for,
in one transaction. Readers see the previous snapshot or the new one, never a mix; a run that fails
or is killed before the commit leaves only unreferenced files (orphans, which maintenance removes).
Nothing is deleted here: superseded files stay readable by older snapshots until maintenance
expires them.

Concurrent runs commit optimistically: the catalog swaps the metadata pointer only if nobody moved
it since it was read (SQLite: a conditional UPDATE; Glue: ``UpdateTable``'s ``VersionId``). The
loser reloads the table, re-validates its plan against the new current schema, recomputes which
files its partitions hold now, and tries again.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from ddb_assets.lake.evolution import TablePlan
from ddb_assets.lake.guards import Refused, StaleExport, check_identity, check_state
from ddb_assets.lake.record import SOURCE_TABLE_PROPERTY, SUMMARY_PREFIX, ExportRecord, high_water_mark, instant
from ddb_assets.lake.partitioning import NULL_PARTITION, iceberg_transform, partition_field_name, partition_name
from ddb_assets.lake.schema import TableSchema, iceberg_type
from ddb_assets.lake.writer import WrittenFile

COMMIT_ATTEMPTS = 8
# pyiceberg would retry a failed commit itself, re-using the delete set planned first; our loop
# re-plans it against the table as it is then (a concurrent run may have added files to the same
# partitions), so pyiceberg's own retries are off for our tables.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0", "format-version": "2",
                    "write.parquet.compression-codec": "zstd"}


class CommitConflict(RuntimeError):
    """A concurrent change to the table that this run's files cannot be committed over; run again."""


def _validation_exception() -> type:
    from pyiceberg.exceptions import ValidationException

    return ValidationException


# Failures that guarantee the snapshot did not land: the run's files may be deleted at once.
class FilesRemoved(CommitConflict):
    """Files this run wrote were deleted before its commit (a maintenance run with a grace period
    shorter than this run, a lifecycle rule): nothing is committed over them."""


NOT_COMMITTED: tuple[type[BaseException], ...] = (CommitConflict, Refused, _validation_exception())


def check_written(paths: list[str], s3: Any = None, *, table: str) -> None:
    """Raise FilesRemoved when one of ``paths`` (the files a run wrote and is about to commit) no
    longer exists: a snapshot listing a file that is gone cannot be read. One existence check per
    file (HEADs on threads on S3, exports/storage.py ``absent``): seconds for thousands of files,
    against a snapshot no engine could read."""
    from ddb_assets.exports.storage import absent

    missing = absent(paths, s3)
    if missing:
        raise FilesRemoved(f"table {table}: {len(missing)} of the {len(paths)} files this run wrote "
                           f"{'was' if len(missing) == 1 else 'were'} removed before its commit (first: {missing[0]}); "
                           f"a maintenance run with a grace period shorter than this run (--grace-hours, "
                           f"orphan_grace_hours)? Nothing was committed: run it again")


@dataclass
class CommitResult:
    table: Any  # the pyiceberg Table after the commit
    snapshot_id: int
    metadata_location: str
    added: int  # files: data files, and a merge-on-read merge's position-delete files (as `history` counts)
    removed: int  # data files no longer in the current snapshot (still in older ones)
    rows: int  # in the current snapshot
    created: bool
    schema_changes: list[str] = field(default_factory=list)
    unchanged: bool = False  # the table held the export already (a concurrent run committed it): nothing done
    delete_files: int = 0  # of ``added``: position-delete files (a merge-on-read merge)


def commit_export(catalog: Any, identifier: tuple[str, str], location: str, plan: TablePlan,
                  written: list[WrittenFile], export: ExportRecord, *, only_partitions: frozenset[str] | None = None,
                  rebuild: bool = False, stored_at_plan: TableSchema | None = None) -> CommitResult:
    """Commit ``written`` as one snapshot of the table ``identifier`` (created at ``location`` if
    new): appended to a new table; for an existing one, replacing every data file (a full export)
    or those of ``only_partitions``. Checks the table again as it is at commit (lake/guards.py): a
    table that holds this export already is left as it is (``unchanged``). Raises CommitConflict,
    Refused (StaleExport, TableLocationConflict, SourceTableMismatch), or the catalog's errors."""
    from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError

    from ddb_assets import __version__
    from ddb_assets.lake.catalog import ensure_namespace, load_table

    # A rebuild replaces every data file whatever partitions were asked for: "all" is what makes
    # its snapshots the start of the table's state (lake/record.py replaces_table).
    partitions = "all" if only_partitions is None or rebuild else ",".join(sorted(only_partitions))
    summary = export.summary(__version__, partitions)
    ensure_namespace(catalog, identifier[0])
    for attempt in range(COMMIT_ATTEMPTS):
        table = load_table(catalog, *identifier)
        try:
            if table is None:
                return _create(catalog, identifier, location, plan, written, summary, export)
            return _commit_existing(table, location, plan, written, summary, export, only_partitions, rebuild,
                                    stored_at_plan)
        except (CommitFailedException, TableAlreadyExistsError):
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))  # someone committed first: again
    raise CommitConflict(f"table {'.'.join(identifier)} kept changing under this run; gave up after "
                         f"{COMMIT_ATTEMPTS} attempts (nothing was committed; run again)")


def _create(catalog: Any, identifier: tuple[str, str], location: str, plan: TablePlan,
            written: list[WrittenFile], summary: dict[str, str], export: ExportRecord) -> CommitResult:
    schema = plan.schema
    transaction = catalog.create_table_transaction(
        identifier, schema=schema.iceberg_schema(), location=location, partition_spec=partition_spec(schema),
        properties={**TABLE_PROPERTIES, **schema.properties(), **source_properties(export)})
    created = transaction.table_metadata.schema()
    if [(f.field_id, f.name) for f in created.fields] != [(c.field_id, c.name) for c in schema.columns]:
        raise AssertionError("the created table numbered its columns unlike the files")  # a bug, not input
    append_files(transaction, written, summary)
    transaction.commit_transaction()
    table = catalog.load_table(identifier)
    return _result(table, len(written), 0, True, plan.changes())


def _commit_existing(table: Any, location: str, plan: TablePlan, written: list[WrittenFile], summary: dict[str, str],
                     export: ExportRecord, only_partitions: frozenset[str] | None, rebuild: bool,
                     stored_at_plan: TableSchema | None) -> CommitResult:
    # Checked before the export was read (lake/convert.py); again here, against the table as it
    # is now: another run may have created it elsewhere, or committed this export, meanwhile.
    check_identity(table, export, location, rebuild)
    if check_state(table, export, rebuild=rebuild, only_partitions=only_partitions).unchanged:
        return _result(table, 0, 0, False, [], unchanged=True)
    removed = _files_to_replace(table, only_partitions if not rebuild else None)
    if only_partitions is not None and not rebuild and any(f.spec_id != table.spec().spec_id for f in removed):
        raise CommitConflict(f"{table.name()} holds files of an older partition spec; convert every partition")
    if rebuild:
        # One snapshot: the new schema and spec first, then every old file out (whatever its spec)
        # and the new files in (lake/row_delta.py replace_table).
        from ddb_assets.lake.row_delta import replace_table

        transaction = table.transaction()
        changed = apply_plan(transaction, table, plan, rebuild, stored_at_plan, source_properties(export))
        replace_table(transaction, {**summary, f"{SUMMARY_PREFIX}operation": "rebuild"},
                      added_data=data_files_for(transaction, written), removed=removed)
    else:
        transaction, changed = begin_transaction(table, plan, rebuild, stored_at_plan, source_properties(export))
        if removed:
            replace_files(transaction, removed, written, summary)
        else:
            append_files(transaction, written, summary)
    transaction.commit_transaction()
    table.refresh()
    return _result(table, len(written), len(removed), False, plan.changes() if changed else [])


def source_properties(export: ExportRecord) -> dict[str, str]:
    """The table properties naming the DynamoDB table the export is of (lake/record.py)."""
    return {SOURCE_TABLE_PROPERTY: export.table_arn} if export.table_arn else {}


def begin_transaction(table: Any, plan: TablePlan, rebuild: bool, stored_at_plan: TableSchema | None,
                      properties: dict[str, str] | None = None) -> tuple[Any, bool]:
    """A transaction on ``table`` holding the schema, partition spec and property updates the plan
    needs against the table as it is now (re-validated: ``merge_schema``), plus ``properties``.
    Returns (transaction, whether the schema changes)."""
    transaction = table.transaction()
    return transaction, apply_plan(transaction, table, plan, rebuild, stored_at_plan, properties)


def apply_plan(transaction: Any, table: Any, plan: TablePlan, rebuild: bool,
               stored_at_plan: TableSchema | None, properties: dict[str, str] | None = None) -> bool:
    """Stage on ``transaction`` what ``begin_transaction`` describes; returns whether the schema changes."""
    from pyiceberg.table.update import (AddPartitionSpecUpdate, AddSchemaUpdate, AssertCurrentSchemaId,
                                        AssertDefaultSpecId, SetCurrentSchemaUpdate, SetDefaultSpecUpdate,
                                        SetPropertiesUpdate)

    metadata = table.metadata
    current = TableSchema.from_iceberg(table.schema(), table.properties, metadata.last_column_id)
    # A plan for a new table meets an existing one when another run created it meanwhile: it is
    # re-validated like any other (the same ids must mean the same columns).
    target = plan.schema if rebuild else merge_schema(current, plan, stored_at_plan)
    updates: tuple = ()
    requirements: tuple = ()
    changed = _schema_key(target) != _schema_key(current)
    if changed:
        if rebuild and metadata.last_column_id > (stored_at_plan.last_column_id if stored_at_plan else 0):
            raise CommitConflict(f"columns were added to {table.name()} while this rebuild wrote its files; run again")
        new_schema = target.iceberg_schema(schema_id=max(s.schema_id for s in metadata.schemas) + 1)
        updates += (AddSchemaUpdate(schema=new_schema), SetCurrentSchemaUpdate(schema_id=-1))
        requirements += (AssertCurrentSchemaId(current_schema_id=metadata.current_schema_id),)
    spec = partition_spec(target, last_partition_id=metadata.last_partition_id or 999)
    if not _same_spec(spec, table.spec()):
        spec = replace_spec_id(spec, max(s.spec_id for s in metadata.partition_specs) + 1)
        updates += (AddPartitionSpecUpdate(spec=spec), SetDefaultSpecUpdate(spec_id=-1))
        requirements += (AssertDefaultSpecId(default_spec_id=metadata.default_spec_id),)
    properties = {**target.properties(), **(properties or {})}
    if any(table.properties.get(k) != v for k, v in properties.items()):
        updates += (SetPropertiesUpdate(updates=properties),)
    if updates:
        transaction._apply(updates, requirements)  # pyiceberg's own UpdateSchema commits this way
    return changed


def replace_files(transaction: Any, removed: list[Any], written: list[WrittenFile], summary: dict[str, str]) -> None:
    """One overwrite snapshot: ``removed`` (DataFiles of the current snapshot, position-delete
    files included) out, ``written`` in."""
    from pyiceberg.manifest import DataFileContent

    if any(f.content != DataFileContent.DATA for f in removed):
        from ddb_assets.lake.row_delta import row_delta  # pyiceberg's overwrite removes data files only

        row_delta(transaction, summary, added_data=data_files_for(transaction, written), removed=removed)
        return
    with transaction.update_snapshot(snapshot_properties=summary).overwrite() as producer:
        for data_file in removed:
            producer.delete_data_file(data_file)
        for data_file in data_files_for(transaction, written):
            producer.append_data_file(data_file)


def append_files(transaction: Any, written: list[WrittenFile], summary: dict[str, str]) -> None:
    """Add ``written`` to ``transaction`` as one appended snapshot carrying ``summary``."""
    with transaction.update_snapshot(snapshot_properties=summary).fast_append() as producer:
        for data_file in data_files_for(transaction, written):
            producer.append_data_file(data_file)


def data_files_for(transaction: Any, written: Iterable[WrittenFile]) -> list[Any]:
    """Iceberg DataFiles for written files: the partition record, and the column statistics (value
    and null counts, lower and upper bounds by field id) their writers computed (lake/file_stats.py:
    no footer is read here). Statistics by field id from the schema the files were planned with
    stay valid under the table's schema at commit, which ``merge_schema`` may have extended: the
    module docstring of lake/file_stats.py says why. Raises ValueError for a file without them."""
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    from ddb_assets.lake.file_stats import data_file_fields

    spec = transaction.table_metadata.spec()
    out = []
    for w in written:
        if w.statistics is None:  # every writer computes them: a bug, not input
            raise ValueError(f"{w.path}: no column statistics were recorded for this data file")
        out.append(DataFile.from_args(
            content=DataFileContent.DATA, file_path=w.path, file_format=FileFormat.PARQUET,
            partition=Record(w.key) if spec.fields else Record(), file_size_in_bytes=w.bytes, sort_order_id=None,
            spec_id=spec.spec_id, equality_ids=None, key_metadata=None, **data_file_fields(w.statistics)))
    return out


def _files_to_replace(table: Any, only_partitions: frozenset[str] | None) -> list[Any]:
    """The current snapshot's data files in the partitions being rewritten (all for a full export),
    and the position-delete files there (they reference data files of their own partition only)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    schema, specs = table.schema(), table.specs()
    out = []
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            data_file = entry.data_file
            if only_partitions is None or file_partition_name(data_file, specs, schema) in only_partitions:
                out.append(data_file)
    return out


def file_partition_name(data_file: Any, specs: dict[int, Any], schema: Any) -> str:
    """The partition name (as users see it) of a data file, from its partition record."""
    spec = specs[data_file.spec_id]
    if not spec.fields:
        return ""
    field_ = spec.fields[0]
    value = data_file.partition[0]
    if value is None:
        return NULL_PARTITION
    source_type = schema.find_field(field_.source_id).field_type
    human = field_.transform.to_human_string(source_type, value)
    return human


def merge_schema(current: TableSchema, plan: TablePlan, stored_at_plan: TableSchema | None) -> TableSchema:
    """The plan's schema re-validated against the table's current one (another run may have
    committed since the plan was made): the current columns, widened where the plan widens,
    plus the plan's new columns. Raises CommitConflict when they cannot coexist."""
    mine = plan.schema.by_id()
    theirs = current.by_id()
    columns = []
    for column in current.columns:
        planned = mine.get(column.field_id)
        if planned is None:
            columns.append(column)
            continue
        if (planned.name, planned.path, planned.descriptor, planned.encoding) != \
                (column.name, column.path, column.descriptor, column.encoding) and \
                not (column.descriptor == "NULL" and planned.descriptor == "S"):
            raise CommitConflict(f"column {column.name} (field id {column.field_id}) was changed by another run "
                                 f"while this one wrote its files; run again")
        columns.append(_wider(column, planned))
    names = {c.name for c in columns}
    for column in plan.schema.columns:
        if column.field_id in theirs:
            continue
        if column.name in names or column.field_id <= current.last_column_id and \
                (stored_at_plan is None or column.field_id > stored_at_plan.last_column_id):
            raise CommitConflict(f"another run added columns to the table while this one wrote its files "
                                 f"({column.name}, field id {column.field_id}); run again")
        columns.append(column)
    return TableSchema(columns, current.options, current.partition,
                       max(current.last_column_id, plan.schema.last_column_id))


def _wider(current: Any, planned: Any) -> Any:
    import pyarrow as pa

    if current.type_ == planned.type_:
        return replace(current, descriptor=planned.descriptor)
    if pa.types.is_decimal(current.type_) and pa.types.is_decimal(planned.type_) and \
            current.type_.scale == planned.type_.scale:
        wider = current if current.type_.precision >= planned.type_.precision else planned
        return replace(current, type_=wider.type_)
    raise CommitConflict(f"column {current.name} is {current.type_} in the table now and {planned.type_} in "
                         f"this run's files; run again")


def _schema_key(schema: TableSchema) -> list[tuple]:
    return [(c.field_id, c.name, str(c.type_), c.path, c.descriptor, c.encoding, c.element, c.unit)
            for c in schema.columns]


def partition_spec(schema: TableSchema, last_partition_id: int = 999) -> Any:
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec

    source = schema.partition_source()
    if schema.partition is None or source is None:
        return UNPARTITIONED_PARTITION_SPEC
    return PartitionSpec(PartitionField(source_id=source.field_id, field_id=last_partition_id + 1,
                                        transform=iceberg_transform(schema.partition),
                                        name=partition_field_name(schema.partition, source.name)))


def replace_spec_id(spec: Any, spec_id: int) -> Any:
    from pyiceberg.partitioning import PartitionSpec

    return PartitionSpec(*spec.fields, spec_id=spec_id)


def _same_spec(mine: Any, theirs: Any) -> bool:
    return [(f.source_id, str(f.transform), f.name) for f in mine.fields] == \
        [(f.source_id, str(f.transform), f.name) for f in theirs.fields]


def _result(table: Any, added: int, removed: int, created: bool, changes: list[str],
            unchanged: bool = False, delete_files: int = 0) -> CommitResult:
    from ddb_assets.lake.record import live_rows

    snapshot = table.current_snapshot()
    rows = live_rows(snapshot.summary.additional_properties) if snapshot and snapshot.summary else 0
    return CommitResult(table, snapshot.snapshot_id if snapshot else 0, table.metadata_location, added, removed, rows,
                        created, changes, unchanged, delete_files)


def current_result(table: Any) -> CommitResult:
    """The table as it is, as a CommitResult that committed nothing."""
    return _result(table, 0, 0, False, [], unchanged=True)


__all__ = ["CommitConflict", "CommitResult", "ExportRecord", "StaleExport", "SUMMARY_PREFIX", "commit_export",
           "current_result", "file_partition_name", "high_water_mark", "instant", "partition_spec", "TABLE_PROPERTIES",
           "iceberg_type", "partition_name"]
