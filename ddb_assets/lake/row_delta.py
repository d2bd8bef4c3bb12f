"""A snapshot that adds and removes data files *and position-delete files*: Iceberg's row delta.

pyiceberg 0.12 commits data files only (its manifest writers hard-code the ``data`` content, and
its overwrite refuses to remove a delete file). Merge-on-read needs the rest of Iceberg v2: a
snapshot adding the upserts' data files and the position-delete files that hide the rows they
replace, and compaction needs one removing delete files. This module extends pyiceberg minimally,
as a snapshot producer of its own (a subclass of pyiceberg's), so the commit still goes through
pyiceberg's transaction, catalog commit and requirements (``AssertRefSnapshotId`` on ``main``:
a concurrent commit fails ours, which our callers retry from the table as it is then).

The manifests written follow the spec: one ``data`` manifest for the added data files, one
``deletes`` manifest per partition spec for the added delete files, and every manifest of the
parent snapshot holding a removed file rewritten (its other entries ``EXISTING``, the removed ones
``DELETED``) with the same content; the others are carried over as they are. The snapshot's
operation is ``overwrite``, what Spark writes for a row-level ``MERGE``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from pyiceberg.manifest import (DataFileContent, ManifestContent, ManifestEntry, ManifestEntryStatus, ManifestFile,
                                ManifestWriterV2)
from pyiceberg.table.snapshots import Operation, SnapshotSummaryCollector, Summary, update_snapshot_summaries
from pyiceberg.table.update.snapshot import _SnapshotProducer


class DeleteManifestWriter(ManifestWriterV2):
    """A v2 manifest of delete files (content ``deletes``)."""

    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


class RowDelta(_SnapshotProducer["RowDelta"]):
    """One ``overwrite`` snapshot: data files and position-delete files added, files of either
    kind removed. Use ``row_delta`` rather than this class."""

    def __init__(self, transaction: Any, summary: dict[str, str]) -> None:
        super().__init__(Operation.OVERWRITE, transaction, transaction._table.io, snapshot_properties=summary)
        self._added_delete_files: list[Any] = []
        self._removed: set[Any] = set()

    def add_delete_file(self, delete_file: Any) -> "RowDelta":
        if delete_file.content != DataFileContent.POSITION_DELETES:
            raise ValueError(f"{delete_file.file_path} is not a position-delete file")
        self._added_delete_files.append(delete_file)
        return self

    def remove_file(self, data_or_delete_file: Any) -> "RowDelta":
        self._removed.add(data_or_delete_file)
        return self

    # The two hooks pyiceberg's own _manifests() calls; ours replaces _manifests() whole.
    def _deleted_entries(self) -> list[ManifestEntry]:
        return []

    def _existing_manifests(self) -> list[ManifestFile]:
        return []

    def _validate_concurrency(self) -> None:
        """Nothing to validate here: pyiceberg's retries are off for our tables (lake/commit.py),
        and the snapshot requirement refuses a commit over a branch head that moved."""

    def _writer(self, spec_id: int, content: ManifestContent) -> Any:
        kind = DeleteManifestWriter if content == ManifestContent.DELETES else ManifestWriterV2
        return kind(self.spec(spec_id), self.schema(), self.new_manifest_output(), self._snapshot_id,
                    self._compression)

    def _manifests(self) -> list[ManifestFile]:
        if self._transaction.table_metadata.format_version != 2:
            raise ValueError("position-delete files need an Iceberg v2 table")
        out: list[ManifestFile] = []
        default_spec = self._transaction.table_metadata.spec()
        if self._added_data_files:
            with self._writer(default_spec.spec_id, ManifestContent.DATA) as writer:
                for data_file in self._added_data_files:
                    writer.add(self._added_entry(data_file))
            out.append(writer.to_manifest_file())
        by_spec: dict[int, list[Any]] = defaultdict(list)
        for delete_file in self._added_delete_files:
            by_spec[delete_file.spec_id].append(delete_file)
        for spec_id, files in sorted(by_spec.items()):
            with self._writer(spec_id, ManifestContent.DELETES) as writer:
                for delete_file in files:
                    writer.add(self._added_entry(delete_file))
            out.append(writer.to_manifest_file())
        out += self._carried_over()
        return out

    def _added_entry(self, data_file: Any) -> ManifestEntry:
        return ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=self._snapshot_id,
                                       sequence_number=None, file_sequence_number=None, data_file=data_file)

    def _carried_over(self) -> list[ManifestFile]:
        """The parent's manifests: as they are, or rewritten without the removed files."""
        if self._parent_snapshot_id is None:
            if self._removed:
                raise ValueError("nothing to remove from a table without a snapshot")
            return []
        parent = self._transaction.table_metadata.snapshot_by_id(self._parent_snapshot_id)
        removed_paths = {f.file_path for f in self._removed}
        found: set[str] = set()
        out = []
        for manifest in parent.manifests(io=self._io):
            if not (manifest.has_added_files() or manifest.has_existing_files()):
                continue  # only DELETED entries: nothing live to carry over
            entries = manifest.fetch_manifest_entry(io=self._io, discard_deleted=True)
            if not removed_paths or not any(e.data_file.file_path in removed_paths for e in entries):
                out.append(manifest)
                continue
            with self._writer(manifest.partition_spec_id, manifest.content) as writer:
                for entry in entries:
                    if entry.data_file.file_path in removed_paths:
                        found.add(entry.data_file.file_path)
                        writer.delete(entry)
                    else:
                        writer.existing(entry)
            out.append(writer.to_manifest_file())
        missing = removed_paths - found
        if missing:
            from pyiceberg.exceptions import ValidationException

            raise ValidationException(f"Missing required files to delete: {', '.join(sorted(missing))}")
        return out

    def _summary(self, snapshot_properties: dict[str, str] = {}) -> Summary:  # noqa: B006 - pyiceberg's signature
        metadata = self._transaction.table_metadata
        schema, specs = metadata.schema(), metadata.specs()
        collector = SnapshotSummaryCollector()
        for data_file in self._added_data_files:
            collector.add_file(data_file, schema=schema, partition_spec=metadata.spec())
        for delete_file in self._added_delete_files:
            collector.add_file(delete_file, schema=schema, partition_spec=specs[delete_file.spec_id])
        for data_file in self._removed:
            spec = specs[data_file.spec_id]
            collector.remove_file(data_file, schema=binding_schema(metadata, spec), partition_spec=spec)
        previous = metadata.snapshot_by_id(self._parent_snapshot_id) if self._parent_snapshot_id is not None else None
        return update_snapshot_summaries(summary=Summary(operation=self._operation, **collector.build(),
                                                         **snapshot_properties),
                                         previous_summary=previous.summary if previous is not None else None)


class WholeTableReplacement(RowDelta):
    """One ``overwrite`` snapshot replacing every live file of the parent, after a schema and
    partition spec change staged in the same transaction (a rebuild). The parent's manifests are
    not carried over, not even as ``DELETED`` entries: readers bind every listed manifest's spec
    to the table's current schema, which no longer holds the old spec's source columns (a rebuild
    numbers its columns anew). ``DELETED`` entries are bookkeeping only (readers skip them); the
    summary still counts the files and rows removed. Use ``replace_table``."""

    def _carried_over(self) -> list[ManifestFile]:
        if self._parent_snapshot_id is None:
            return []
        parent = self._transaction.table_metadata.snapshot_by_id(self._parent_snapshot_id)
        live = {entry.data_file.file_path for manifest in parent.manifests(io=self._io)
                for entry in manifest.fetch_manifest_entry(io=self._io, discard_deleted=True)}
        removed = {f.file_path for f in self._removed}
        if live != removed:
            from pyiceberg.exceptions import ValidationException

            raise ValidationException(f"a whole-table replacement must remove every live file of snapshot "
                                      f"{self._parent_snapshot_id}: {len(live - removed)} left, "
                                      f"{len(removed - live)} not in it")
        return []


def binding_schema(metadata: Any, spec: Any) -> Any:
    """The schema that ``spec``'s partition values read through: the current one if it holds every
    source column of the spec, else the newest that does (an older spec after a rebuild)."""
    schemas = [metadata.schema(), *sorted(metadata.schemas, key=lambda s: -s.schema_id)]
    for schema in schemas:
        if all(f.source_id in schema._lazy_id_to_field for f in spec.fields):
            return schema
    return schemas[0]


def replace_table(transaction: Any, summary: dict[str, str], *, added_data: Iterable[Any],
                  removed: Iterable[Any]) -> None:
    """Stage on ``transaction`` one ``overwrite`` snapshot carrying ``summary``: every live file
    of the current snapshot (``removed``: DataFiles of either content, of any partition spec) out,
    ``added_data`` (DataFiles of the transaction's current spec and schema) in. Raises pyiceberg's
    ValidationException when ``removed`` is not exactly the current snapshot's live files."""
    producer = WholeTableReplacement(transaction, summary)
    for data_file in added_data:
        producer.append_data_file(data_file)
    for data_file in removed:
        producer.remove_file(data_file)
    producer.commit()


def row_delta(transaction: Any, summary: dict[str, str], *, added_data: Iterable[Any] = (),
              added_deletes: Iterable[Any] = (), removed: Iterable[Any] = ()) -> None:
    """Stage on ``transaction`` one ``overwrite`` snapshot carrying ``summary``: ``added_data``
    (DataFiles), ``added_deletes`` (position-delete DataFiles) in, ``removed`` (live DataFiles of
    either content in the current snapshot) out. Raises pyiceberg's ValidationException when a
    removed file is not in the current snapshot."""
    producer = RowDelta(transaction, summary)
    for data_file in added_data:
        producer.append_data_file(data_file)
    for delete_file in added_deletes:
        producer.add_delete_file(delete_file)
    for data_file in removed:
        producer.remove_file(data_file)
    producer.commit()


__all__ = ["DeleteManifestWriter", "RowDelta", "WholeTableReplacement", "binding_schema", "replace_table", "row_delta"]
