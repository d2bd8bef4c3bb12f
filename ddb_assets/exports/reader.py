"""Open a DynamoDB export, check it against its manifests, and hand out its data files.

An export is addressed by its ``AWSDynamoDB/<export-id>/`` folder or its ``manifest-summary.json``,
on a local path or ``s3://``. Data files are located relative to the export folder (everything
before ``AWSDynamoDB/<export-id>/`` in a manifest key is ignored), so copies of an export in another
bucket or on disk read the same as the original.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Iterator

from ddb_assets.exports.checksums import digest_base64, md5_base64
from ddb_assets.exports.errors import ChecksumMismatch, ExportFormatError, ItemCountMismatch, MissingObject
from ddb_assets.exports.manifest import ManifestFile, ManifestSummary, parse_manifest_files
from ddb_assets.exports.storage import Location, S3Options, resolve


@dataclass(frozen=True)
class DataFile:
    """One data file of an export, with what the manifest says about it."""

    location: Location
    manifest: ManifestFile
    output_format: str

    @property
    def name(self) -> str:
        return self.manifest.data_file_s3_key

    def read_verified(self) -> bytes:
        """The compressed bytes, after checking them against the manifest's ``md5Checksum``."""
        try:
            data = self.location.read_bytes()
        except FileNotFoundError:
            raise self._missing() from None
        self._check_md5(md5_base64(data))
        return data

    def stream_verified(self, chunk_bytes: int = 1 << 20) -> "VerifiedStream":
        """The compressed bytes in chunks, hashed as they pass (memory: one chunk, not the file)."""
        try:
            stream = self.location.fs.open_input_stream(self.location.path, compression=None)
        except FileNotFoundError:
            raise self._missing() from None
        return VerifiedStream(self, stream, chunk_bytes)

    def _missing(self) -> MissingObject:
        return MissingObject(self.name, f"data file listed in manifest-files.json is missing "
                                        f"(looked for {self.location.uri})")

    def _check_md5(self, actual: str) -> None:
        if actual != self.manifest.md5_checksum:
            raise ChecksumMismatch(self.name, f"md5 of the compressed file is {actual}, manifest says "
                                              f"{self.manifest.md5_checksum}")


@dataclass
class VerifiedStream:
    """Chunks of a data file's compressed bytes. The md5 can only be checked at the end, so a
    reader that meets a problem earlier calls ``verify()`` first: a damaged file is reported as a
    checksum mismatch, the root cause, rather than as whatever the damage broke downstream."""

    data_file: DataFile
    stream: object
    chunk_bytes: int
    size: int = 0
    _md5: "hashlib._Hash" = field(default_factory=hashlib.md5)
    _buffer: bytearray = field(default_factory=bytearray)
    _done: bool = False

    def __iter__(self) -> Iterator[memoryview]:
        """Each chunk is only valid until the next is asked for (one buffer is reused)."""
        if len(self._buffer) < self.chunk_bytes:
            self._buffer = bytearray(self.chunk_bytes)
        view = memoryview(self._buffer)
        while not self._done:
            count = self.stream.readinto(view)  # type: ignore[attr-defined]
            if not count:
                self._finish()
                return
            self.size += count
            self._md5.update(view[:count])
            yield view[:count]

    def close(self) -> None:
        """Stop reading without checking (an error path that only needed the start of the file)."""
        self._done = True
        self.stream.close()  # type: ignore[attr-defined]

    def verify(self) -> None:
        """Read what is left and check the md5 against the manifest; idempotent."""
        for _ in self:
            pass
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.stream.close()  # type: ignore[attr-defined]
            self.data_file._check_md5(digest_base64(self._md5))


@dataclass(frozen=True)
class Export:
    """A validated export: its summary and its data files (not yet read)."""

    folder: Location
    summary: ManifestSummary
    files: tuple[DataFile, ...]
    checksum_files_verified: tuple[str, ...]  # which of the two .md5 files were present and matched

    @property
    def export_id(self) -> str:
        return self.summary.export_id

    @property
    def compressed_bytes(self) -> int:
        return sum(f.location.fs.get_file_info(f.location.path).size or 0 for f in self.files)


def open_export(source: str | os.PathLike[str], s3: S3Options | None = None) -> Export:
    """Read and cross-check both manifests; raises an ExportFormatError naming the object at fault."""
    location = resolve(source, s3)
    folder = location.parent() if location.name.startswith("manifest-summary") else location
    summary_location = folder.join("manifest-summary.json")
    summary_bytes = _read(summary_location, "the export's manifest-summary.json")
    verified = []
    if _verify_checksum_file(folder, "manifest-summary", summary_bytes):
        verified.append("manifest-summary")
    summary = ManifestSummary.parse(summary_bytes, obj=summary_location.uri)

    files_key = summary.manifest_files_s3_key
    files_location = folder.join(_relative_to_export(files_key, summary.export_id, summary_location.uri))
    files_bytes = _read(files_location, "manifest-files.json (named by manifestFilesS3Key)")
    if _verify_checksum_file(folder, "manifest-files", files_bytes):
        verified.append("manifest-files")
    entries = parse_manifest_files(files_bytes, obj=files_location.uri)

    total = sum(entry.item_count for entry in entries)
    if total != summary.item_count:
        raise ItemCountMismatch(summary_location.uri, f"itemCount is {summary.item_count} but the files in "
                                                      f"manifest-files.json hold {total} items")
    files = tuple(
        DataFile(folder.join(_relative_to_export(entry.data_file_s3_key, summary.export_id, files_location.uri)),
                 entry, summary.output_format)
        for entry in entries
    )
    for data_file in files:
        if not data_file.name.endswith(summary.data_suffix):
            raise ExportFormatError(files_location.uri, f"data file {data_file.name} does not end in "
                                                        f"{summary.data_suffix} (outputFormat {summary.output_format})")
    return Export(folder, summary, files, tuple(verified))


def _read(location: Location, what: str) -> bytes:
    try:
        return location.read_bytes()
    except FileNotFoundError:
        raise MissingObject(location.uri, f"missing: {what} was expected here") from None
    except OSError as exc:
        raise MissingObject(location.uri, f"cannot read {what}: {exc}") from None


def _verify_checksum_file(folder: Location, stem: str, content: bytes) -> bool:
    """``.md5`` in practice, ``.checksum`` in the docs: accept either, tolerate neither."""
    for suffix in (".md5", ".checksum"):
        checksum_location = folder.join(stem + suffix)
        try:
            recorded = checksum_location.read_bytes().decode("ascii", "replace").strip()
        except (FileNotFoundError, OSError):
            continue
        actual = md5_base64(content)
        if recorded != actual:
            raise ChecksumMismatch(checksum_location.uri, f"{stem}.json hashes to {actual}, the checksum file "
                                                          f"says {recorded}")
        return True
    return False


def _relative_to_export(key: str, export_id: str, named_in: str) -> str:
    marker = f"AWSDynamoDB/{export_id}/"
    index = key.find(marker)
    if index < 0:
        raise ExportFormatError(named_in, f"key {key!r} is not inside the export folder {marker}")
    return key[index + len(marker):]
