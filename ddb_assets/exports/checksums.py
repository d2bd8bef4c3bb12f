"""Checksums exactly as DynamoDB exports record them (EXPORT_FORMAT.md §1.2, §1.3, §6.1)."""

from __future__ import annotations

import base64
import hashlib


def md5_base64(data: bytes) -> str:
    """Base64 (standard, padded) of the raw 16-byte MD5: the form of ``md5Checksum`` and ``.md5`` files."""
    return digest_base64(hashlib.md5(data))


def digest_base64(hasher: "hashlib._Hash") -> str:
    """The same form for a hash fed piece by piece (a streamed data file)."""
    return base64.b64encode(hasher.digest()).decode("ascii")


def single_part_etag(data: bytes) -> str:
    """The S3 multipart-style ETag of a one-part upload: ``hex(md5(md5(data)))-1``. Not an MD5 of the data."""
    return hashlib.md5(hashlib.md5(data).digest()).hexdigest() + "-1"
