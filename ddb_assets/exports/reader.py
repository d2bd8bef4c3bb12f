"""Open a DynamoDB export, check it against its manifests, and hand out its data files.

An export is addressed by its ``AWSDynamoDB/<export-id>/`` folder or its ``manifest-summary.json``,
on a local path or ``s3://``. Data files are located relative to the export folder (everything
before ``AWSDynamoDB/<export-id>/`` in a manifest key is ignored), so copies of an export in another
bucket or on disk read the same as the original. An incremental export's data files sit in the
prefix's shared ``AWSDynamoDB/data/`` folder, beside the export folder (EXPORT_FORMAT.md §4.1): only
its manifest-files.json says which of them are its own. A manifest is input like any other: a key
that would lead outside the export is refused (``place_of_key``), never followed.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Iterator

from ddb_assets.exports.checksums import digest_base64, md5_base64
from ddb_assets.exports.errors import (
    ChecksumMismatch,
    ExportFormatError,
    ItemCountMismatch,
    MissingObject,
    UnreadableObject,
)
from ddb_assets.exports.manifest import (
    ManifestFile,
    ManifestSummary,
    parse_manifest_files,
)
from ddb_assets.exports.storage import InputStream, Location, S3Options, resolve


@dataclass(frozen=True)
class DataFile:
    """One data file of an export, with what the manifest says about it."""

    location: Location
    manifest: ManifestFile
    output_format: str

    @property
    def name(self) -> str:
        """Where the user finds the file, as errors name it: the local path or ``s3://`` URI it is
        read from (the manifest's key names the bucket it was first written to, which a copy of
        the export, in a folder or another bucket, does not have)."""
        return self.location.uri

    def read_verified(self) -> bytes:
        """The compressed bytes, after checking them against the manifest's ``md5Checksum``.
        Raises MissingObject, UnreadableObject (storage kept failing) or ChecksumMismatch."""
        try:
            data = self.location.read_bytes()
        except FileNotFoundError:
            raise self._missing() from None
        self._check_md5(md5_base64(data))
        return data

    def stream_verified(self, chunk_bytes: int = 1 << 20) -> "VerifiedStream":
        """The compressed bytes in chunks, hashed as they pass (memory: one chunk, not the file).
        Raises MissingObject, and UnreadableObject when opening or any read still fails after retries."""
        try:
            stream = self.location.open_stream()
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
    stream: InputStream
    chunk_bytes: int
    size: int = 0
    _md5: "hashlib._Hash" = field(default_factory=hashlib.md5)
    _buffer: bytearray = field(default_factory=bytearray)
    _done: bool = False
    _failed: UnreadableObject | None = None  # the read that failed: verify() reports it, not a retry storm

    def __iter__(self) -> Iterator[memoryview]:
        """Each chunk is only valid until the next is asked for (one buffer is reused)."""
        if len(self._buffer) < self.chunk_bytes:
            self._buffer = bytearray(self.chunk_bytes)
        view = memoryview(self._buffer)
        while not self._done:
            try:
                count = self.stream.readinto(view)
            except UnreadableObject as error:
                self._failed, self._done = error, True
                self.stream.close()
                raise
            if not count:
                self._finish()
                return
            self.size += count
            self._md5.update(view[:count])
            yield view[:count]

    def reopen(self) -> "VerifiedStream":
        """The same file from its start, as a new stream (an error path that numbers lines)."""
        return self.data_file.stream_verified(self.chunk_bytes)

    def close(self) -> None:
        """Stop reading without checking (an error path that only needed the start of the file)."""
        self._done = True
        self.stream.close()

    def verify(self) -> None:
        """Read what is left and check the md5 against the manifest; idempotent. Raises the read
        failure again if the stream failed (its md5 cannot be known)."""
        if self._failed is not None:
            raise self._failed
        for _ in self:
            pass
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.stream.close()
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
        return sum(f.location.size() for f in self.files)

    def require_full_export(self, use: str) -> None:
        """Raise ExportFormatError (naming the summary) if this export is incremental: its lines
        are changes, not items, and ``use`` (what the caller does, e.g. "convert") needs items."""
        if self.summary.incremental:
            raise ExportFormatError(self.folder.join("manifest-summary.json").uri,
                                    f"export {self.export_id} is an incremental export (version "
                                    f"{self.summary.version}): its lines are changes, not items; "
                                    f"{use} takes a full export")


def open_export(source: str | os.PathLike[str], s3: S3Options | None = None) -> Export:
    """Read and cross-check both manifests; raises an ExportFormatError naming the object at fault.

    Full and incremental exports alike (``summary.export_type``). For an incremental export
    ``files`` are the data files its manifest lists, resolved into the shared ``AWSDynamoDB/data/``
    folder next to the export folder; their lines are changes (``Keys``/``NewImage``/``OldImage``),
    not items, and ``summary.item_count`` counts them.
    """
    location = resolve(source, s3)
    folder = location.parent() if location.name.startswith("manifest-summary") else location
    summary_location = folder.join("manifest-summary.json")
    summary_bytes = _read(summary_location, "the export's manifest-summary.json")
    verified = []
    if _verify_checksum_file(folder, "manifest-summary", summary_bytes):
        verified.append("manifest-summary")
    summary = ManifestSummary.parse(summary_bytes, obj=summary_location.uri)

    incremental = summary.incremental
    # An incremental summary may name its manifest under another export id than its ARN's (the
    # AWS docs' own example does, EXPORT_FORMAT.md §4.2): accept the folder's own id there too.
    files_location = _locate(folder, summary.manifest_files_s3_key, summary.export_id, field="manifestFilesS3Key",
                             named_in=summary_location.uri,
                             other_ids=(folder.name, _export_id_in(summary.manifest_files_s3_key)) if incremental else ())
    files_bytes = _read(files_location, "manifest-files.json (named by manifestFilesS3Key)")
    if _verify_checksum_file(folder, "manifest-files", files_bytes):
        verified.append("manifest-files")
    entries = parse_manifest_files(files_bytes, obj=files_location.uri)

    total = sum(entry.item_count for entry in entries)
    if total != summary.item_count:
        raise ItemCountMismatch(summary_location.uri, f"itemCount is {summary.item_count} but the files in "
                                                      f"manifest-files.json hold {total} items")
    files = tuple(
        DataFile(_locate(folder, entry.data_file_s3_key, summary.export_id, field="dataFileS3Key",
                         named_in=files_location.uri, line=entry.line, shared_data=incremental),
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


def _verify_checksum_file(folder: Location, stem: str, content: bytes) -> bool:
    """``.md5`` in practice, ``.checksum`` in the docs: accept either, tolerate neither."""
    for suffix in (".md5", ".checksum"):
        checksum_location = folder.join(stem + suffix)
        try:
            recorded = checksum_location.read_bytes().decode("ascii", "replace").strip()
        except FileNotFoundError:
            continue
        except UnreadableObject as error:
            if error.transient:
                raise  # S3 is failing, not the file absent: skipping the check would hide it
            continue  # S3 answers 403, not 404, for an absent object to readers who may not list the bucket
        actual = md5_base64(content)
        if recorded != actual:
            raise ChecksumMismatch(checksum_location.uri, f"{stem}.json hashes to {actual}, the checksum file "
                                                          f"says {recorded}")
        return True
    return False


@dataclass(frozen=True)
class KeyPlace:
    """Where a manifest key points: a path below the export's own folder ``AWSDynamoDB/<export-id>/``
    or, when ``shared``, below the prefix's shared ``AWSDynamoDB/data/`` folder (incremental exports,
    EXPORT_FORMAT.md §4.1). ``path`` is ``/``-separated with no empty, ``.`` or ``..`` segment."""

    shared: bool
    path: str


def place_of_key(key: str, export_id: str, *, shared_data: bool = False) -> KeyPlace:
    """Resolve a ``manifestFilesS3Key`` or ``dataFileS3Key`` against the export it belongs to.

    Everything before ``AWSDynamoDB/<export-id>/`` (the prefix) is ignored, as for copies of an
    export. ``shared_data`` also accepts ``AWSDynamoDB/data/`` (incremental exports only). Raises
    ValueError, saying why, for a key that does not lie inside: one with a ``..`` or ``.`` segment
    anywhere, an absolute path, a backslash or a control character, or no such folder in it.
    """
    inside = f"the export folder AWSDynamoDB/{export_id}/" + (
        " or the shared folder AWSDynamoDB/data/" if shared_data else "")
    if not key:
        raise ValueError(f"is empty; keys must lie inside {inside}")
    # Refused wherever they are, prefix included: S3 keys are opaque strings, but the same key on
    # a local copy is a path, where these climb out or name another folder (Windows: backslash).
    problem = ("it is an absolute path" if key.startswith("/")
               else "it holds a backslash" if "\\" in key
               else "it holds a control character" if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key)
               else "it has a '..' segment" if ".." in key.split("/")
               else "it has a '.' segment" if "." in key.split("/")
               else None)
    if problem is None:
        segments = key.split("/")
        starts = [i for i in range(len(segments) - 1) if segments[i] == "AWSDynamoDB"]
        own = next((i for i in starts if segments[i + 1] == export_id), None)
        shared = next((i for i in starts if segments[i + 1] == "data"), None) if shared_data else None
        start = own if own is not None else shared
        if start is None:
            problem = "it names another folder"
        else:
            rest = segments[start + 2:]
            if not rest or "" in rest:
                problem = "it names no file" if not rest or rest == [""] else "it has an empty segment"
            else:
                return KeyPlace(shared=own is None, path="/".join(rest))
    raise ValueError(f"is not inside {inside} ({problem})")


def _locate(folder: Location, key: str, export_id: str, *, field: str, named_in: str, line: int | None = None,
            shared_data: bool = False, other_ids: tuple[str | None, ...] = ()) -> Location:
    """``key`` resolved below ``folder`` (or the shared data folder beside it). ``other_ids``: more
    export ids the key may name instead of ``export_id``; what it names is still read from ``folder``."""
    try:
        place = place_of_key(key, export_id, shared_data=shared_data)
    except ValueError as exc:
        for other in other_ids:
            if other and other != export_id:
                try:
                    place = place_of_key(key, other, shared_data=shared_data)
                    break
                except ValueError:
                    continue
        else:
            raise ExportFormatError(named_in, f"{field} {key!r} {exc}", line=line) from None
    return folder.parent().join("data", place.path) if place.shared else folder.join(place.path)


_EXPORT_ID = re.compile(r"^\d{14}-[0-9a-f]{8}$")


def _export_id_in(key: str) -> str | None:
    """The export id a key names after its last ``AWSDynamoDB/``, if it has the id's form
    (``01715674542517-a4c123b1``); None otherwise."""
    segments = key.split("/")
    for i in range(len(segments) - 2, -1, -1):
        if segments[i] == "AWSDynamoDB" and _EXPORT_ID.match(segments[i + 1]):
            return segments[i + 1]
    return None
