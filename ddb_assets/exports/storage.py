"""Local paths and ``s3://`` URIs as one kind of place, through pyarrow's filesystems.

S3 honours the standard endpoint settings (``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``), so
the same code reads AWS and any S3-compatible endpoint such as the local world.

Transient S3 failures (network, throttling, 5xx) are retried as the AWS SDKs do, in their
"standard" mode: exponential backoff with full jitter, a random wait of up to 1 s, 2 s, 4 s, ...
(at most 20 s) before each retry, for ``S3_MAX_ATTEMPTS`` attempts in all unless
``AWS_MAX_ATTEMPTS`` or ``S3Options.max_attempts`` says otherwise. pyarrow does it for every
request it makes (``AwsStandardS3RetryStrategy``: each ranged GET of a stream, so a read that fails
midway resumes where it was), boto3 for its own (``retries={"mode": "standard"}``). A read that
still fails raises UnreadableObject: one line naming the object.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import urlparse

import pyarrow.fs as pafs

from ddb_assets.exports.errors import UnreadableObject

# Requests about many objects (existence, deletion) go out on this many threads through one S3
# client: the round trips overlap, on connections the client pools and reuses.
OBJECT_THREADS = 16
T = TypeVar("T")
# 6 attempts wait 15 s on average (at most 31 s) for S3 to come back before giving up: a blip
# is ridden out, an outage is reported within half a minute.
S3_MAX_ATTEMPTS = 6
# pyarrow's words for the AWS error kinds the SDK retries (aws-sdk-cpp CoreErrors, marked retryable).
# pyarrow's S3 errors: "When <doing> for key 'k' in bucket 'b': AWS Error <CODE> during <Op> operation: <message>".
_S3_ERROR = re.compile(r"AWS Error (?P<code>[A-Z_]+) during (?P<operation>\w+) operation: (?P<message>.*?)"
                       r"(?: \(Request ID: [^)]*\))?\s*$", re.S)
_S3_PLACE = re.compile(r"(?:key '(?P<key>[^']*)' in )?bucket '(?P<bucket>[^']*)'")
_S3_HINTS = {
    "NO_SUCH_BUCKET": "the bucket does not exist: create it, or check the s3:// URI",
    "ACCESS_DENIED": "access denied: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and the bucket's policy",
    "INVALID_ACCESS_KEY_ID": "the access key is not valid: check the credentials",
    "SIGNATURE_DOES_NOT_MATCH": "the secret key does not match: check the credentials",
    "NETWORK_CONNECTION": "S3 does not answer: check AWS_ENDPOINT_URL (a local world must be running) and "
                          "the network",
}
_TRANSIENT = re.compile(r"NETWORK_CONNECTION|SLOW_DOWN|THROTTL|SERVICE_UNAVAILABLE|INTERNAL_FAILURE|REQUEST_TIMEOUT"
                        r"|REQUEST_TIME_TOO_SKEWED|curlCode|HTTP response code: 5\d\d")


@dataclass(frozen=True)
class Location:
    """A filesystem plus a path on it (``bucket/key`` for S3, an absolute path locally)."""

    fs: pafs.FileSystem
    path: str
    scheme: str  # "file" or "s3"

    def join(self, *parts: str) -> "Location":
        path = "/".join([self.path.rstrip("/"), *[p.strip("/") for p in parts if p]])
        return Location(self.fs, path, self.scheme)

    @property
    def uri(self) -> str:
        return f"s3://{self.path}" if self.scheme == "s3" else self.path

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def parent(self) -> "Location":
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], self.scheme)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def size(self) -> int:
        """Bytes in the object (0 if absent)."""
        return self._info().size or 0

    def read_bytes(self) -> bytes:
        """The whole object. Raises FileNotFoundError if absent, UnreadableObject if it cannot be read."""
        with self.open_stream() as stream:
            return stream.read()

    def open_stream(self) -> "InputStream":
        """A stream of the object's bytes as stored (never decompressed). Raises FileNotFoundError if
        absent, and UnreadableObject, when opening or reading, for any other failure."""
        try:
            # compression=None: pyarrow would otherwise gunzip ".gz" files behind our back.
            return InputStream(self, self.fs.open_input_stream(self.path, compression=None))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self.unreadable(exc) from None

    def unreadable(self, error: OSError) -> UnreadableObject:
        """The one-line error for a failure to read this object (pyarrow's message, less its preamble)."""
        detail = " ".join(re.sub(r"^When [^\n]*?': ", "", str(error)).split())
        if self.scheme == "s3" and _TRANSIENT.search(detail):
            return UnreadableObject(self.uri, f"cannot read it: {detail} (still failing after retries with "
                                              f"backoff; AWS_MAX_ATTEMPTS sets how many)", transient=True)
        return UnreadableObject(self.uri, f"cannot read it: {detail}")

    def _info(self) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path)
        except OSError as exc:
            raise self.unreadable(exc) from None

    def write_bytes(self, data: bytes) -> None:
        """Write whole; replaces atomically (local: temp file + rename; S3: one PUT)."""
        if self.scheme == "file":
            parent = os.path.dirname(self.path)
            os.makedirs(parent, exist_ok=True)
            temporary = f"{self.path}.tmp-{os.getpid()}"
            with open(temporary, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        else:
            with self.fs.open_output_stream(self.path, compression=None) as stream:
                stream.write(data)


class InputStream:
    """An open object: ``read``/``readinto`` as pyarrow's streams, but a failure (after pyarrow's
    retries) raises UnreadableObject naming the object instead of a bare OSError."""

    def __init__(self, location: Location, stream: Any):
        self.location, self._stream = location, stream

    def read(self, size: int | None = None) -> bytes:
        try:
            return bytes(self._stream.read(size))
        except OSError as exc:
            raise self.location.unreadable(exc) from None

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._stream.readinto(buffer))
        except OSError as exc:
            raise self.location.unreadable(exc) from None

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "InputStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class S3Options:
    """Explicit S3 settings (Dagster resources); ``None`` fields fall back to the environment."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None  # only for endpoints that want dummy keys (the local world)
    secret_key: str | None = None
    max_attempts: int | None = None  # per request, first try included (None: AWS_MAX_ATTEMPTS, else S3_MAX_ATTEMPTS)

    def with_environment(self) -> "S3Options":
        """Fill unset fields from the environment now (worker processes may see another one)."""
        return S3Options(
            endpoint_url=self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            region=self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            access_key=self.access_key, secret_key=self.secret_key, max_attempts=self.attempts())

    def attempts(self) -> int:
        """Attempts per request: this setting, else ``AWS_MAX_ATTEMPTS`` (the SDKs' own variable)."""
        if self.max_attempts is not None:
            if self.max_attempts < 1:
                raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
            return self.max_attempts
        text = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
        return int(text) if text.isdigit() and int(text) >= 1 else S3_MAX_ATTEMPTS


def s3_filesystem(settings: S3Options | None = None) -> pafs.S3FileSystem:
    settings = settings or S3Options()
    endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    options: dict[str, object] = {
        "region": region, "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=settings.attempts())}
    if settings.access_key and settings.secret_key:
        options.update(access_key=settings.access_key, secret_key=settings.secret_key)
    if endpoint:
        parsed = urlparse(endpoint)
        options.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
        # S3-compatible endpoints (moto, MinIO) want path-style addressing.
        options["force_virtual_addressing"] = False
    return pafs.S3FileSystem(**options)  # type: ignore[arg-type]


def s3_client(settings: S3Options | None = None, override: Any = None):  # type: ignore[no-untyped-def]
    """A boto3 S3 client with the same settings as ``s3_filesystem`` (for what pyarrow cannot do:
    conditional writes); ``override``, a botocore ``Config``, wins over its settings (a probe's short timeouts)."""
    import boto3
    from botocore.config import Config

    settings = (settings or S3Options()).with_environment()
    options: dict[str, object] = {"region_name": settings.region or "us-east-1"}
    if settings.access_key and settings.secret_key:
        options.update(aws_access_key_id=settings.access_key, aws_secret_access_key=settings.secret_key)
    # total_max_attempts counts the first try, as AWS_MAX_ATTEMPTS does; botocore's max_attempts does not
    config = Config(retries={"mode": "standard", "total_max_attempts": settings.attempts()})
    if settings.endpoint_url:
        options["endpoint_url"] = settings.endpoint_url
        config = config.merge(Config(s3={"addressing_style": "path"}))
    return boto3.client("s3", config=config.merge(override) if override is not None else config, **options)


def s3_failure(exc: OSError) -> tuple[str, str] | None:
    """(the object's ``s3://`` URI or "", what went wrong and what to do, with the AWS error code and
    operation) for one of pyarrow's S3 errors, e.g. ``the bucket does not exist: create it, or check
    the s3:// URI (NO_SUCH_BUCKET during PutObject)``; None for any other error."""
    text = " ".join(str(exc).split())
    found = _S3_ERROR.search(text)
    if not found:
        return None
    place = _S3_PLACE.search(text)
    uri = f"s3://{place['bucket']}/{place['key'] or ''}" if place else ""
    code, operation = found["code"], found["operation"]
    hint = _S3_HINTS.get(code, found["message"].rstrip(". ") or code.lower().replace("_", " "))
    return uri, f"{hint} ({code} during {operation})"


def s3_client_failure(exc: Exception, client: Any, operation: str) -> str | None:
    """What went wrong and what to do, with the error code and operation, for one of boto3's S3
    errors (``ClientError``, or no answer from ``client``'s endpoint during ``operation``), in
    ``s3_failure``'s words, e.g. ``the bucket does not exist: create it, or check the s3:// URI
    (NO_SUCH_BUCKET during PutObject)``; None for any other error."""
    from botocore.exceptions import ClientError, ConnectionError as NoAnswer

    if isinstance(exc, NoAnswer):
        return f"{_S3_HINTS['NETWORK_CONNECTION']} (no answer from {client.meta.endpoint_url} during {operation})"
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    code = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(error.get("Code") or "error")).upper()
    hint = _S3_HINTS.get(code, str(error.get("Message") or "").rstrip(". ") or code.lower().replace("_", " "))
    return f"{hint} ({code} during {exc.operation_name})"


def resolve(uri: str | os.PathLike[str], s3: S3Options | None = None) -> Location:
    """``s3://bucket/key`` or a local path (relative paths resolved against the CWD)."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        return Location(s3_filesystem(s3), text[len("s3://"):].rstrip("/"), "s3")
    if "://" in text and not text.startswith("file://"):
        raise ValueError(f"unsupported location {text!r}: use a local path or s3://bucket/key")
    path = text[len("file://"):] if text.startswith("file://") else text
    return Location(pafs.LocalFileSystem(), os.path.abspath(path), "file")


def resolver(s3: S3Options | None = None) -> Callable[[str], Location]:
    """``resolve`` for many objects: one S3 filesystem for them all, safe to share between threads.
    Each S3FileSystem is a client of its own (milliseconds to make, and its own connections: a TLS
    handshake per object read)."""
    shared: list[pafs.S3FileSystem] = []

    def locate(uri: str) -> Location:
        text = os.fspath(uri)
        if not text.startswith("s3://"):
            return resolve(text, s3)
        if not shared:  # two threads may both make one: either serves
            shared.append(s3_filesystem(s3))
        return Location(shared[0], text[len("s3://"):].rstrip("/"), "s3")

    return locate


def absent(uris: Iterable[str], s3: S3Options | None = None) -> list[str]:
    """Those of ``uris`` (``s3://`` URIs or local paths) that name no object or file, in their
    order. One S3 client for all, their HEAD requests on OBJECT_THREADS threads. Raises OSError
    when one cannot be asked about (access denied, say)."""
    locate = resolver(s3)
    wanted = [(uri, locate(uri)) for uri in uris]
    found = on_threads([location for _, location in wanted], Location.exists)
    return [uri for (uri, _), exists in zip(wanted, found) if not exists]


def remove_quietly(uris: Iterable[str], s3: S3Options | None = None) -> None:
    """Best effort: delete these objects or files (one that cannot be deleted is left: files no
    snapshot references are orphans that maintenance removes). One S3 client for all, their
    DELETE requests on OBJECT_THREADS threads."""
    locate = resolver(s3)
    locations = []
    for uri in uris:
        try:
            locations.append(locate(uri))
        except (OSError, ValueError):
            pass
    delete_quietly(locations)


def delete_quietly(locations: Iterable[Location]) -> int:
    """Best effort: delete these objects or files (on OBJECT_THREADS threads when on S3). Returns
    how many were deleted."""
    def delete(location: Location) -> bool:
        try:
            location.fs.delete_file(location.path)
            return True
        except OSError:
            return False  # an orphan for maintenance

    return sum(on_threads(list(locations), delete))


def on_threads(locations: list[Location], work: Callable[[Location], T]) -> list[T]:
    """``work`` of each of ``locations``, in their order: on OBJECT_THREADS threads when one is on
    S3 (each a round trip there: thousands one after another take minutes), else on this thread.
    The first exception ``work`` raises is raised here, once every call has ended."""
    if len(locations) < 2 or all(location.scheme == "file" for location in locations):
        return [work(location) for location in locations]
    from ddb_assets.exports.thread_pool import io_threads

    with io_threads(min(OBJECT_THREADS, len(locations)), "s3-objects") as pool:
        return list(pool.map(work, locations))
