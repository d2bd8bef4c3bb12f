"""What the runners that start one remote job run per pass (glue, emr_serverless) share: the
pass's shard specs and a round file listing them are written to the ``s3://`` staging folder, the
job run is started with the round file's URI and followed to its end, and the results are read
back: the job's ``round-N.results.json`` beside the round file (lake/shards/glue_job.py) names
the result each task wrote beside its spec, read side by side (lake/shards/rounds.py). With key
attributes, one more job run checks the written files hold each key once (lake/shards/key_round.py).

A job run that did not succeed fails the conversion with the service's own state and message; a
shard that kept failing fails it with its error. The staging folder is removed after a conversion
that did not fail on a shard; otherwise it stays, for ``ddb-assets shard run --spec URI``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import orjson

from ddb_assets.exports.storage import Location, resolve
from ddb_assets.lake.shards.key_round import duplicate_found, key_round
from ddb_assets.lake.shards.rounds import round_results, write_specs
from ddb_assets.lake.shards.spec import ShardFailed, ShardResult, ShardSpec


class StagedEngine:
    """The job runs of one conversion: ``with Engine(options, run) as engine: engine.run(specs)``
    per pass. ``options``: the conversion's ConvertOptions (its ``runner`` and ``s3``). A subclass
    says what starts one job run (``launch_round``) and how it names the job (``job``)."""

    job = "the job"

    def __init__(self, options: Any, run: str):
        self.runner, self.s3, self.run_id = options.runner, options.s3, run
        self.folder: Location = resolve(self.runner.staging, self.s3).join(run)
        self.rounds = 0

    def launch_round(self, round_uri: str) -> tuple[str, str | None]:
        """Start the job run of the round file ``round_uri`` and follow it to its end: (the run's
        name for messages, None when it succeeded or the service's state and message)."""
        raise NotImplementedError

    def __enter__(self) -> "StagedEngine":
        return self

    def run(self, specs: list[ShardSpec], options: Any = None) -> list[ShardResult]:
        """Run one pass's ``specs`` as one job run; their results. Raises ShardFailed when the job
        run did not succeed (the service's state and message) or a task kept failing."""
        uris = write_specs(self.folder, self.rounds, specs)
        results = self._round({"specs": uris})
        return round_results(results.read_bytes(), results.uri, self.s3)

    def find_duplicate_key(self, files: list[str], columns: list[str]) -> tuple[list[Any], int] | None:
        """The key check of ``files`` (the written files' URIs) on their key ``columns`` as one
        job run (lake/shards/key_round.py): (a key's values, how many items hold it) or None.
        Raises ShardFailed as ``run`` does."""
        results = self._round(key_round(files, columns, self.s3))
        return duplicate_found(results.read_bytes(), results.uri)

    def _round(self, document: dict[str, Any]) -> Location:
        """Write the next round file, run its job run to its end; where its results are."""
        number = self.rounds
        self.rounds += 1
        request = self.folder.join(f"round-{number}.json")
        request.write_bytes(orjson.dumps(document))
        name, failure = self.launch_round(request.uri)
        if failure is not None:
            raise ShardFailed(f"{name} ended {failure} (its round: {request.uri})")
        results = self.folder.join(f"round-{number}.results.json")
        if not results.exists():
            raise ShardFailed(f"{name} succeeded but wrote no {results.uri}: is the job's script the one "
                              f"`ddb-assets shard package` uploads?")
        return results

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None or not issubclass(kind, ShardFailed):
            try:
                self.folder.fs.delete_dir(self.folder.path)
            except OSError:
                pass  # staging left behind costs a few KB; the conversion's outcome stands
        # When a job run failed, the specs stay for `ddb-assets shard run`.


__all__ = ["StagedEngine"]
