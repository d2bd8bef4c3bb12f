"""Run one shard task: read, check and profile its data files and, for a writing shard, flatten and
write them as Parquet data files of the table, with the same per-file code the local pool runs
(``lake.convert.convert_share``). Pure: no engine, no Dagster; any process with the package runs it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import replace

from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.storage import resolve
from ddb_assets.lake.convert import ConvertOptions, convert_share
from ddb_assets.lake.evolution import TablePlan
from ddb_assets.lake.plan_checks import ProfileMismatch
from ddb_assets.lake.profile import Profile
from ddb_assets.lake.shards.spec import FileRead, ShardError, ShardResult, ShardSpec

INCREMENTAL = "INCREMENTAL_EXPORT"


def run_shard(spec: ShardSpec) -> ShardResult:
    """Run ``spec`` in this process. Its files are named ``<run>-<attempt>-<shard>``, so another
    attempt of the same shard never overwrites them. Raises ExportFormatError (bad input; what the
    shard wrote is removed), ProfileMismatch, or storage errors."""
    started = time.monotonic()
    options = ConvertOptions(partition_by=spec.partition_by, dictionary_keys=spec.dictionary_keys,
                             piece_bytes=spec.piece_bytes, buffer_bytes=spec.buffer_bytes,
                             only_partitions=spec.only_partitions, s3=spec.s3.with_environment(),
                             compression=spec.target.compression if spec.target else "zstd",
                             json_reader=spec.json_reader, key_attributes=spec.key_attributes)
    files = [(f.index, f.data_file(spec.output_format, options.s3)) for f in spec.files]
    plan = TablePlan(spec.schema, spec.active) if spec.schema is not None else None
    written, reads = convert_share(spec.shard, files, options, conversion=f"{spec.run}-{spec.shard}-{spec.attempt}",
                                   export_id=spec.export_id, incremental=spec.export_type == INCREMENTAL,
                                   plan=plan, target=spec.attempt_target() if plan is not None else None)
    keys = {f.index: f.key for f in spec.files}
    return ShardResult(
        spec.shard, spec.attempt, spec.run, written,
        [FileRead(r.index, keys[r.index], r.rows, r.compressed, r.uncompressed, r.readers.arrow_rs, r.readers.pyarrow)
         for r in reads],
        Profile.merged(r.profile for r in sorted(reads, key=lambda r: r.index)),
        time.monotonic() - started, socket.gethostname())


def run_shard_document(data: bytes, *, obj: str, attempt: int | None = None) -> bytes:
    """A spec document in, a result document out (``run_shard_checked`` of the spec read from
    ``obj``). ``attempt`` overrides the spec's (an engine's task attempt number)."""
    spec = ShardSpec.from_json(data, obj=obj)
    if attempt is not None:
        spec = replace(spec, attempt=attempt)
    return run_shard_checked(spec).to_json()


def run_shard_checked(spec: ShardSpec) -> ShardResult:
    """``run_shard``, as an engine's task body runs it. Bad input is not worth a retry: it comes
    back as the result's ``error``. Any other failure (a read that kept failing included) raises,
    for the engine to retry the task."""
    started = time.monotonic()
    try:
        return run_shard(spec)
    except (ExportFormatError, ProfileMismatch) as error:
        if getattr(error, "transient", False):
            raise  # storage kept failing through its own retries (UnreadableObject): worth another attempt
        return ShardResult(spec.shard, spec.attempt, spec.run, seconds=time.monotonic() - started,
                           host=socket.gethostname(), error=ShardError.of(error))


def run_shard_at(spec_uri: str, result_uri: str | None = None) -> ShardResult:
    """``ddb-assets shard run``: the spec at ``spec_uri`` (local or s3://) run here; the result
    written to ``result_uri`` (default: beside the spec, ``<name>.result.json``) and returned."""
    spec_location = resolve(spec_uri)
    document = run_shard_document(spec_location.read_bytes(), obj=spec_location.uri)
    target = resolve(result_uri) if result_uri else resolve(result_path_for(spec_location.uri))
    target.write_bytes(document)
    return ShardResult.from_json(document, obj=target.uri)


def result_path_for(spec_uri: str) -> str:
    base = spec_uri[:-len(".json")] if spec_uri.endswith(".json") else spec_uri
    return f"{base}.result.json"
