"""Build a small valid export on disk, then break it in one precise way."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path

from ddb_assets.local.bulk_export import generate_folder_export


def make_export(tmp: Path, items: int = 300, files: int = 4, seed: int = 7, export_format: str = "DYNAMODB_JSON") -> Path:
    """Returns the export folder (``.../AWSDynamoDB/<export-id>``)."""
    return generate_folder_export(tmp, items=items, files=files, seed=seed, export_format=export_format).parent


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def manifest_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest-files.json").read_text().splitlines() if line]


def write_manifest_lines(folder: Path, lines: list[dict]) -> None:
    data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    (folder / "manifest-files.json").write_bytes(data)
    (folder / "manifest-files.md5").write_text(_b64md5(data))


def data_path(folder: Path, entry: dict) -> Path:
    return folder / "data" / entry["dataFileS3Key"].rsplit("/", 1)[1]


def biggest_entry(folder: Path) -> dict:
    return max(manifest_lines(folder), key=lambda e: e["itemCount"])


def replace_data(folder: Path, entry: dict, new_bytes: bytes, *, fix_checksum: bool = True) -> None:
    """Swap a data file's bytes; by default keep the manifests consistent so later checks are reached."""
    data_path(folder, entry).write_bytes(new_bytes)
    if fix_checksum:
        lines = manifest_lines(folder)
        for line in lines:
            if line["dataFileS3Key"] == entry["dataFileS3Key"]:
                line["md5Checksum"] = _b64md5(new_bytes)
        write_manifest_lines(folder, lines)


def decompressed(folder: Path, entry: dict) -> bytes:
    return gzip.decompress(data_path(folder, entry).read_bytes())


def edit_lines(folder: Path, entry: dict, edit) -> None:  # type: ignore[no-untyped-def]
    """Rewrite a data file's decompressed lines with ``edit(lines)``, keeping its checksum consistent."""
    lines = decompressed(folder, entry).split(b"\n")
    edit(lines)
    replace_data(folder, entry, gzip.compress(b"\n".join(lines)))


def summary(folder: Path) -> dict:
    return json.loads((folder / "manifest-summary.json").read_bytes())


def write_summary(folder: Path, doc: dict) -> None:
    """Rewrite manifest-summary.json (compact, no newline, as AWS writes it) and its checksum file."""
    data = json.dumps(doc, separators=(",", ":")).encode()
    (folder / "manifest-summary.json").write_bytes(data)
    (folder / "manifest-summary.md5").write_text(_b64md5(data))
