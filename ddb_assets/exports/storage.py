"""Local paths and ``s3://`` URIs as one kind of place, through pyarrow's filesystems.

S3 honours the standard endpoint settings (``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``), so
the same code reads AWS and any S3-compatible endpoint such as the local world.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs


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
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def read_bytes(self) -> bytes:
        # compression=None: pyarrow would otherwise gunzip ".gz" files behind our back.
        with self.fs.open_input_stream(self.path, compression=None) as stream:
            return bytes(stream.read())

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


@dataclass(frozen=True)
class S3Options:
    """Explicit S3 settings (Dagster resources); ``None`` fields fall back to the environment."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None  # only for endpoints that want dummy keys (the local world)
    secret_key: str | None = None

    def with_environment(self) -> "S3Options":
        """Fill unset fields from the environment now (worker processes may see another one)."""
        return S3Options(
            endpoint_url=self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            region=self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            access_key=self.access_key, secret_key=self.secret_key)


def s3_filesystem(settings: S3Options | None = None) -> pafs.S3FileSystem:
    settings = settings or S3Options()
    endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    options: dict[str, object] = {"region": region}
    if settings.access_key and settings.secret_key:
        options.update(access_key=settings.access_key, secret_key=settings.secret_key)
    if endpoint:
        parsed = urlparse(endpoint)
        options.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
        # S3-compatible endpoints (moto, MinIO) want path-style addressing.
        options["force_virtual_addressing"] = False
    return pafs.S3FileSystem(**options)  # type: ignore[arg-type]


def s3_client(settings: S3Options | None = None):  # type: ignore[no-untyped-def]
    """A boto3 S3 client with the same settings as ``s3_filesystem`` (for what pyarrow cannot do:
    conditional writes)."""
    import boto3
    from botocore.config import Config

    settings = (settings or S3Options()).with_environment()
    options: dict[str, object] = {"region_name": settings.region or "us-east-1"}
    if settings.access_key and settings.secret_key:
        options.update(aws_access_key_id=settings.access_key, aws_secret_access_key=settings.secret_key)
    if settings.endpoint_url:
        options.update(endpoint_url=settings.endpoint_url, config=Config(s3={"addressing_style": "path"}))
    return boto3.client("s3", **options)


def resolve(uri: str | os.PathLike[str], s3: S3Options | None = None) -> Location:
    """``s3://bucket/key`` or a local path (relative paths resolved against the CWD)."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        return Location(s3_filesystem(s3), text[len("s3://"):].rstrip("/"), "s3")
    if "://" in text and not text.startswith("file://"):
        raise ValueError(f"unsupported location {text!r}: use a local path or s3://bucket/key")
    path = text[len("file://"):] if text.startswith("file://") else text
    return Location(pafs.LocalFileSystem(), os.path.abspath(path), "file")
