"""Profiles kept beside a table (lake/saved_profiles.py): what Dagster's parquet asset plans from."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddb_assets.exports.storage import resolve
from ddb_assets.lake.convert import ConvertOptions, profile_export
from ddb_assets.lake.saved_profiles import KEEP, load_profile, profile_location, save_profile
from ddb_assets.lake.evolution import plan_table
from ddb_assets_tests import doctor

# Pure: in-memory Arrow and local files, no local world or subprocess (make test-fast).
pytestmark = pytest.mark.fast


def test_a_saved_profile_plans_the_same_table_and_only_for_its_export(tmp_path: Path) -> None:
    export, profile = profile_export(doctor.make_export(tmp_path / "export", items=300), ConvertOptions(workers=1))
    root = resolve(tmp_path / "lake" / "reviews")
    save_profile(root, export.export_id, profile)
    loaded = load_profile(root, export.export_id)
    assert loaded is not None and loaded.items == 300
    options = ConvertOptions().schema_options
    assert plan_table(loaded, options).mapping() == plan_table(profile, options).mapping()
    assert load_profile(root, "01700000000000-00000000") is None  # never saved: two stages, no error

    # A file that is not what save_profile wrote (another version, a copy under another name, a
    # half-written one) is not trusted: the conversion takes the two stages instead of failing.
    location = profile_location(root, export.export_id)
    Path(location.path).write_bytes(b'{"format": "something else"}')
    assert load_profile(root, export.export_id) is None
    Path(location.path).write_bytes(b"{not json")
    assert load_profile(root, export.export_id) is None
    other = profile_location(root, "01700000000001-11111111")
    save_profile(root, export.export_id, profile)
    Path(other.path).write_bytes(Path(location.path).read_bytes())  # export id inside says otherwise
    assert load_profile(root, "01700000000001-11111111") is None


def test_only_the_newest_profiles_are_kept(tmp_path: Path) -> None:
    export, profile = profile_export(doctor.make_export(tmp_path / "export", items=50), ConvertOptions(workers=1))
    root = resolve(tmp_path / "lake" / "reviews")
    ids = [f"0179574{n:07d}-abcdef{n:02d}" for n in range(KEEP + 3)]  # export ids sort by time
    for export_id in ids:
        save_profile(root, export_id, profile)
    kept = sorted(p.stem for p in (tmp_path / "lake" / "reviews" / "_profiles").glob("*.json"))
    assert kept == ids[-KEEP:]
