"""What committing and discarding a staged conversion asks of S3 (lake/staging.py), counted on the
local world's S3 (moto's request recorder over HTTP) behind a proxy that holds each response 50 ms,
as a distant endpoint would: one request per staged file, and those requests overlapping (one after
another, 16,000 staged files took 15-25 minutes on S3)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import pytest
import requests

from ddb_assets.exports.storage import S3Options
from ddb_assets.lake.catalog import CatalogConfig
from ddb_assets.lake.convert import ConvertOptions
from ddb_assets.lake.staging import commit_staged, discard, stage_export
from ddb_assets.local.world import LocalWorld
from ddb_assets_tests.conftest import unique
from ddb_assets_tests.faulty_proxy import FaultyProxy
from ddb_assets_tests.test_schema_rules import export_of

PARTITIONS = 40  # a staged data file each: more than the threads that ask about them (16)


class _Requests:
    """moto's request recorder, through the world's HTTP API: (method, key) of each request."""

    def __init__(self, endpoint: str):
        self.api = f"{endpoint}/moto-api/recorder"

    def start(self) -> None:
        requests.post(f"{self.api}/reset-recording", timeout=10).raise_for_status()
        requests.post(f"{self.api}/start-recording", timeout=10).raise_for_status()

    def stop(self, bucket: str) -> Counter:
        """Stop recording; the requests since ``start`` of objects in ``bucket``, by (method, key)."""
        requests.post(f"{self.api}/stop-recording", timeout=10).raise_for_status()
        counts: Counter = Counter()
        for line in requests.get(f"{self.api}/download-recording", timeout=60).text.splitlines():
            entry = json.loads(line)
            path = unquote(urlparse(entry["url"]).path).lstrip("/")  # path-style: bucket/key
            if path.startswith(f"{bucket}/"):
                counts[entry["method"], path.split("/", 1)[1]] += 1
        return counts


@pytest.fixture
def recorder(world: LocalWorld) -> Iterator[_Requests]:
    recording = _Requests(world.endpoint)
    yield recording
    requests.post(f"{recording.api}/stop-recording", timeout=10)
    requests.post(f"{recording.api}/reset-recording", timeout=10)


@pytest.fixture
def proxy(world: LocalWorld) -> Iterator[FaultyProxy]:
    host, port = world.endpoint.removeprefix("http://").split(":")
    with FaultyProxy((host, int(port))) as started:
        started.hold = 0.05
        yield started


def _staged(tmp_path: Path, s3: Any, name: str) -> tuple[Any, str, str, ConvertOptions]:
    """An export of one item per partition staged beside an S3 table: (the staged conversion,
    the source, the lake bucket, the options)."""
    lake = unique("lake")
    s3.create_bucket(Bucket=lake)
    items = [{"region": {"S": f"r{i:02d}"}, "v": {"N": str(i)}} for i in range(PARTITIONS)]
    source = str(export_of(tmp_path / name, items))
    options = ConvertOptions(workers=1, partition_by="region",
                             catalog=CatalogConfig(uri=f"sqlite:///{tmp_path / f'{name}.db'}"))
    staged = stage_export(source, f"s3://{lake}/t", options)
    assert len(staged.written) == PARTITIONS
    return staged, source, lake, options


def _keys(staged: Any, lake: str) -> set[str]:
    return {w.path.removeprefix(f"s3://{lake}/") for w in staged.written}


def test_a_staged_commit_asks_once_per_file_through_one_client(aws_env: dict[str, str], s3: Any, tmp_path: Path,
                                                               recorder: _Requests, proxy: FaultyProxy,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    staged, _, lake, options = _staged(tmp_path, s3, "export")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # this run's S3 requests through the proxy
    recorder.start()

    result = commit_staged(staged, f"s3://{lake}/t", options)

    counts = recorder.stop(lake)
    assert result.commit.rows == PARTITIONS
    keys = _keys(staged, lake)
    # each staged file asked about once (is it still there?), none read: the statistics are staged
    assert {key: counts["HEAD", key] for key in keys} == {key: 1 for key in keys}
    assert not any(counts["GET", key] for key in keys)
    assert proxy.most_in_flight > 4  # the HEADs overlap (one at a time before: 1)


def test_discarding_a_staged_conversion_deletes_each_file_once_through_one_client(
        aws_env: dict[str, str], s3: Any, tmp_path: Path, recorder: _Requests, proxy: FaultyProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    staged, _, lake, _ = _staged(tmp_path, s3, "export")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    recorder.start()

    discard(staged, S3Options().with_environment())

    counts = recorder.stop(lake)
    keys = _keys(staged, lake)
    assert {key: counts["DELETE", key] for key in keys} == {key: 1 for key in keys}
    left = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lake)
            for o in page.get("Contents", [])}
    # the record and staged files gone (pyarrow leaves empty "folder/" markers)
    assert not left & keys and [key for key in left if not key.endswith("/")] == []
    assert proxy.most_in_flight > 4  # the DELETEs overlap (one at a time before: 1)


def test_a_staged_commit_with_a_file_gone_is_stale_and_removes_the_rest(aws_env: dict[str, str], s3: Any,
                                                                        tmp_path: Path) -> None:
    from ddb_assets.lake.staging import StagingStale

    staged, _, lake, options = _staged(tmp_path, s3, "export")
    gone = sorted(_keys(staged, lake))[7]
    s3.delete_object(Bucket=lake, Key=gone)
    with pytest.raises(StagingStale, match=rf"1 of its {PARTITIONS} data files are gone \(e.g. s3://{lake}/{gone}\)"):
        commit_staged(staged, f"s3://{lake}/t", options)
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=lake).get("Contents", [])}
    assert not left & _keys(staged, lake)
