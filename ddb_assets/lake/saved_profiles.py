"""Export profiles kept beside a table, so that converting an export needs no spill.

The Dagster ``raw_export`` asset reads every item of an export to validate and profile it; the
``parquet`` asset then converts the same export. With the profile saved here, the conversion plans
its schema up front and runs in one pass (``lake.convert``), instead of reading the export into a
local work folder first. Every conversion saves its export's profile here too, and the next
export of the table is planned from the stored schema and the newest profile (one pass; two stages
only if its items need another plan). Layout: ``<table root>/_profiles/<export id>.json``; the newest few are kept.
"""

from __future__ import annotations

import pyarrow.fs as pafs

from ddb_assets.exports.storage import Location
from ddb_assets.lake.profile import Profile, profile_from_json, profile_to_json

FOLDER = "_profiles"
KEEP = 8  # export ids begin with the export's time in milliseconds: the newest sort last


def profile_location(root: Location, export_id: str) -> Location:
    return root.join(FOLDER, f"{export_id}.json")


def save_profile(root: Location, export_id: str, profile: Profile) -> Location:
    location = profile_location(root, export_id)
    location.write_bytes(profile_to_json(profile, export_id))
    _prune(root)
    return location


def load_profile(root: Location, export_id: str) -> Profile | None:
    """The saved profile of this export, or None (never saved, pruned, or unreadable)."""
    location = profile_location(root, export_id)
    try:
        if not location.exists():
            return None
        data = location.read_bytes()
    except OSError:
        return None
    try:
        saved_for, profile = profile_from_json(data, obj=location.uri)
    except ValueError:
        return None  # an unreadable file costs a two-stage conversion, not a failure
    return profile if saved_for == export_id else None


def latest_profile(root: Location, other_than: str = "") -> tuple[str, Profile] | None:
    """(export id, profile) of the newest readable profile saved beside the table (export ids sort
    by time), other than ``other_than``'s; None when there is none."""
    folder = root.join(FOLDER)
    try:
        entries = folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
    except OSError:
        return None
    ids = sorted((e.base_name[:-len(".json")] for e in entries
                  if e.type == pafs.FileType.File and e.base_name.endswith(".json")), reverse=True)
    for export_id in ids:
        if export_id == other_than:
            continue
        profile = load_profile(root, export_id)
        if profile is not None:
            return export_id, profile
    return None


def _prune(root: Location) -> None:
    folder = root.join(FOLDER)
    try:
        entries = folder.fs.get_file_info(pafs.FileSelector(folder.path))
    except FileNotFoundError:
        return
    saved = sorted(e.path for e in entries if e.type == pafs.FileType.File and e.path.endswith(".json"))
    for path in saved[:-KEEP]:
        folder.fs.delete_file(path)
