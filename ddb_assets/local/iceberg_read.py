"""Read an Iceberg table's current snapshot inside the moto process, from moto's own S3.

The local Athena runs inside a moto request. pyiceberg does the Iceberg work (metadata file,
manifest list, manifests, projection onto the current schema by field id, delete files); only
the bytes come from moto's S3 backend directly, through :class:`MotoS3FileIO`, rather than
over HTTP back into the same server. That way the reader needs no endpoint (the backend does not
know the server's address), no credentials (and so no mapping of access keys to accounts: it
reads the account the query was made in), and holds no second request open inside the first.
The Hive-style tables of ``athena_sql`` are read from the same backend for the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.io import FileIO, InputFile, InputStream, OutputFile

ACCOUNT_ID = "ddb-assets.moto.account-id"
REGION = "ddb-assets.moto.region"


class MotoS3FileIO(FileIO):
    """A read-only pyiceberg FileIO over the moto S3 backend of one account and region.

    Properties: :data:`ACCOUNT_ID` and :data:`REGION` (both required). Only ``s3://`` (and
    ``s3a``/``s3n``) locations. Writing and deleting raise ``PermissionError``: the local Athena
    only reads Iceberg tables.
    """

    def __init__(self, properties: dict[str, str]):
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        super().__init__(properties=properties)
        region = properties[REGION]
        self._backend = s3_backends[properties[ACCOUNT_ID]][get_partition(region)]

    def new_input(self, location: str) -> InputFile:
        return _MotoS3InputFile(location, self._backend)

    def new_output(self, location: str) -> OutputFile:
        raise PermissionError(f"the local Athena reads Iceberg tables only; cannot write {location}")

    def delete(self, location: str | InputFile | OutputFile) -> None:
        raise PermissionError(f"the local Athena reads Iceberg tables only; cannot delete {location}")


class _MotoS3InputFile(InputFile):
    def __init__(self, location: str, backend: Any):
        super().__init__(location)
        scheme, _, rest = location.partition("://")
        if scheme not in ("s3", "s3a", "s3n") or "/" not in rest:
            raise ValueError(f"not an S3 object location: {location}")
        self._bucket, _, self._key = rest.partition("/")
        self._backend = backend

    def _object(self) -> Any:
        from moto.s3.exceptions import MissingBucket

        try:
            found = self._backend.get_object(self._bucket, self._key)
        except MissingBucket:
            found = None
        if found is None:
            raise FileNotFoundError(f"no such object: {self.location}")
        return found

    def __len__(self) -> int:
        return int(self._object().size)

    def exists(self) -> bool:
        try:
            self._object()
        except FileNotFoundError:
            return False
        return True

    def open(self, seekable: bool = True) -> InputStream:
        # A BufferReader is a seekable pyarrow NativeFile: Avro manifests and Parquet fragments
        # read from it as they would from an S3 file.
        return pa.BufferReader(self._object().value)  # type: ignore[return-value]


@dataclass(frozen=True)
class IcebergSnapshot:
    table: pa.Table  # the current snapshot's rows, columns as the current schema (absent ones null)
    bytes_scanned: int  # sizes of the data files (and any delete files) read, from the manifests


def read_iceberg(metadata_location: str, account_id: str, region: str) -> IcebergSnapshot:
    """Read the current snapshot of the Iceberg table whose metadata file is ``metadata_location``.

    A table with no snapshot yet reads as no rows with the schema's columns. Raises
    ``FileNotFoundError`` when the metadata file or a file it names is missing from moto's S3.
    """
    from pyiceberg.io import PY_IO_IMPL
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import StaticTable

    properties = {PY_IO_IMPL: f"{MotoS3FileIO.__module__}.{MotoS3FileIO.__qualname__}",
                  ACCOUNT_ID: account_id, REGION: region}
    table = StaticTable.from_metadata(metadata_location, properties)
    if not isinstance(table.io, MotoS3FileIO):  # the table's own properties named another FileIO
        table = StaticTable(identifier=table.name(), metadata=table.metadata, metadata_location=metadata_location,
                            io=MotoS3FileIO(properties), catalog=table.catalog)
    scan = table.scan()
    tasks = list(scan.plan_files())
    read = {task.file.file_path: task.file.file_size_in_bytes for task in tasks}
    read.update({delete.file_path: delete.file_size_in_bytes for task in tasks for delete in task.delete_files})
    # Planned once, read once: the same tasks give the rows and the bytes scanned.
    rows = ArrowScan(scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive,
                     scan.limit).to_table(tasks)
    return IcebergSnapshot(rows, sum(read.values()))
