"""The ``spark`` runner: one Spark application maps a conversion's shard tasks over its executors.

``spark-submit`` runs the package's own driver script (lake/shards/spark_job.py) with ``--master``
as configured (``local[*]``, a standalone cluster, YARN; EMR on EC2 is YARN), so the same code runs
on a laptop and on a cluster. One application serves every pass of a conversion (the profile pass,
then the write pass: starting an application costs seconds to minutes, and it starts while this
process opens the table). The passes go through a staging folder: this process writes a round of
shard specs (``round-N.json``), the application runs one Spark task per shard, each writing its
result beside its spec, and writes the collected records naming them (``round-N.results.json``:
lake/shards/rounds.py); with key attributes, a last round checks the written files hold each key
once (lake/shards/key_round.py); a ``stop`` round ends it. The executors need the package (and Python 3.11)
installed, and write to the staging folder: on a cluster it must be one they reach (``s3://``, or a
folder every machine shares), not the default temporary folder of this machine.

Retries are Spark's: a task that raises is retried up to ``spark.task.maxFailures`` times (1 in
local mode unless the master says ``local[N,F]``), each attempt writing files of its own
(``<run>-<attempt>-<shard>``). Bad input is not retried (it cannot get better): the shard's result
carries the error, with its object and line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from ddb_assets.exports.storage import Location, resolve
from ddb_assets.lake.shards.key_round import duplicate_found, key_round
from ddb_assets.lake.shards.rounds import round_results, write_specs
from ddb_assets.lake.shards.spec import ShardFailed, ShardResult, ShardSpec

JOB_SCRIPT = Path(__file__).with_name("spark_job.py")
POLL_SECONDS = 0.25
CLUSTER_MASTERS = ("spark://", "yarn", "k8s://", "mesos://")  # executors on other machines than this one
STOP_SECONDS = 120  # for the application to end after its stop round


def spark_submit_path(configured: str | None = None) -> str:
    """The spark-submit to run: the configured one, else ``$SPARK_HOME/bin/spark-submit``, else
    the one pyspark's wheel ships, else the one on PATH. Raises ShardFailed when there is none."""
    if configured:
        return configured
    candidates = []
    if os.environ.get("SPARK_HOME"):
        candidates.append(Path(os.environ["SPARK_HOME"]) / "bin" / "spark-submit")
    import importlib.util

    found = importlib.util.find_spec("pyspark")
    if found is not None and found.submodule_search_locations:
        candidates.append(Path(list(found.submodule_search_locations)[0]) / "bin" / "spark-submit")
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    on_path = shutil.which("spark-submit")
    if on_path:
        return on_path
    raise ShardFailed("the spark runner needs spark-submit: install the spark extra (pip install "
                      "'ddb_assets[spark]') and a Java runtime, set SPARK_HOME, or configure spark_submit")


class SparkEngine:
    """One Spark application for one conversion: ``with SparkEngine(options, run) as engine:
    engine.run(specs)`` per pass. ``options``: the conversion's ConvertOptions (its ``runner`` and
    ``s3``)."""

    def __init__(self, options: Any, run: str):
        self.runner, self.s3, self.run_id = options.runner, options.s3, run
        self.submit = spark_submit_path(self.runner.spark_submit)  # before anything is made: none, no run
        self.temporary = self.runner.staging is None
        master = self.runner.spark_master
        if self.temporary and master.startswith(CLUSTER_MASTERS):
            # The tasks write their results there: executors on other machines cannot reach this one's.
            # (A master Spark does not know is left to spark-submit, which says so.)
            raise ShardFailed(f"the spark runner with master {master} needs a staging folder its executors can "
                              f"write (the shards' results pass through it): an s3:// one, or one every machine "
                              f"shares (--staging; spark.staging in the settings)")
        staging = tempfile.mkdtemp(prefix="ddb-assets-shards-") if self.temporary else self.runner.staging
        self.staging_root = staging
        self.folder: Location = resolve(staging, self.s3).join(run)
        self.work = staging if self.temporary else tempfile.gettempdir()
        self.log = Path(tempfile.gettempdir()) / f"ddb-assets-spark-{run}.log"
        self.process: subprocess.Popen | None = None
        self.rounds = 0
        self.ended = False  # spark-submit ended before a round's results: no spec is worth rerunning
        self.key_round_failed = False  # the key check failed: a round with no spec to rerun

    def __enter__(self) -> "SparkEngine":
        if self.folder.scheme == "file":
            self.folder.fs.create_dir(self.folder.path, recursive=True)
        command = [sys.executable, "-m", "ddb_assets.lake.lifetime", str(os.getpid()), str(int(signal.SIGTERM)),
                   self.submit, "--master", self.runner.spark_master,
                   "--name", f"ddb-assets {self.run_id}"]
        for key, value in self.runner.spark_conf:
            command += ["--conf", f"{key}={value}"]
        command += [str(JOB_SCRIPT), self.folder.uri]
        with open(self.log, "wb") as out:
            # spark-submit ends with this process (lake/lifetime.py); the driver script with spark-submit.
            # In a folder of its own: Spark may leave files in its working directory.
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            env=_environment(self.runner.spark_master, self.s3, self.submit),
                                            cwd=self.work)
        return self

    def run(self, specs: list[ShardSpec], options: Any = None) -> list[ShardResult]:
        """Run one pass's ``specs``; their results. Raises ShardFailed when a task kept failing
        (its shard and error) or the application ended (spark-submit's status and log tail)."""
        uris = write_specs(self.folder, self.rounds, specs)
        results = self._round({"specs": uris})
        return round_results(self._wait_for(results), results.uri, self.s3, f"spark-submit's log: {self.log}")

    def find_duplicate_key(self, files: list[str], columns: list[str]) -> tuple[list[Any], int] | None:
        """The key check of ``files`` (the written files' URIs) on their key ``columns``, as a
        round of the application (lake/shards/key_round.py): (a key's values, how many items hold
        it) or None. Raises ShardFailed as ``run`` does."""
        try:
            results = self._round(key_round(files, columns, self.s3))
            return duplicate_found(self._wait_for(results), results.uri, f"spark-submit's log: {self.log}")
        except BaseException:
            self.key_round_failed = True
            raise

    def _round(self, document: dict[str, Any]) -> Location:
        """Publish the next round; where its results will be."""
        number = self.rounds
        self.rounds += 1
        self._publish(self.folder.join(f"round-{number}.json"), orjson.dumps(document))
        return self.folder.join(f"round-{number}.results.json")

    def _publish(self, location: Location, data: bytes) -> None:
        # Written under another name and renamed: the application never reads half a round.
        partial = location.parent().join(location.name + ".partial")
        partial.write_bytes(data)
        location.fs.move(partial.path, location.path)

    def _wait_for(self, results: Location) -> bytes:
        assert self.process is not None
        while True:
            if results.exists():  # whole: the application writes it under another name and renames it
                return results.read_bytes()
            status = self.process.poll()
            if status is not None:
                self.ended = True
                raise ShardFailed(f"spark-submit ended (status {status}) before the shards' results came back: "
                                  f"{_cause(self.log)} (its log: {self.log})")
            time.sleep(POLL_SECONDS)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                self._publish(self.folder.join(f"round-{self.rounds}.json"), orjson.dumps({"stop": True}))
            process.wait(timeout=STOP_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            process.terminate()
            process.wait()
        task_failed = kind is not None and issubclass(kind, ShardFailed) and not (self.ended or self.key_round_failed)
        # The staging folder (specs, results, what Spark left in its working directory) stays only
        # when a shard task kept failing: the error names its spec, to rerun with `ddb-assets shard
        # run`. When spark-submit itself ended, the error gives the cause and names the log, which
        # stays; bad input is reported with its object and line; a key round (its check failed, or
        # a key held twice) has no spec to rerun. A configured staging folder keeps a successful
        # run's folder (its specs and results, to look at); a failed run's goes, as its data files do.
        if self.temporary and not task_failed:
            shutil.rmtree(self.staging_root, ignore_errors=True)
        elif not self.temporary and kind is not None and not task_failed:
            try:
                self.folder.fs.delete_dir(self.folder.path)
            except OSError:
                pass  # a few KB left in the staging folder; the conversion's own error stands
        if kind is None or not issubclass(kind, ShardFailed):
            self.log.unlink(missing_ok=True)


def _environment(master: str, s3: Any, submit: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if submit is not None:
        # spark-submit runs the Spark of $SPARK_HOME when that is set: a stale one (a removed
        # install) would break the one chosen here (pyspark's own, say). It runs its own install's.
        home = Path(submit).resolve().parent.parent
        if (home / "bin" / "spark-class").is_file():
            env["SPARK_HOME"] = str(home)
    # The driver (client mode, spark-submit's default) runs on this machine, with this interpreter,
    # which has the package; so do local executors. A cluster's executors use the Python set there.
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        env.setdefault("PYSPARK_PYTHON", sys.executable)
    if s3 is not None and s3.access_key and s3.secret_key:
        # Explicit keys (the local world's dummy ones) reach the executors by their environment,
        # never through a spec file.
        env.setdefault("AWS_ACCESS_KEY_ID", s3.access_key)
        env.setdefault("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    return env


# A line saying why a JVM or Python process ended: ``Exception in thread "main" x.y.SomeException: ...``,
# ``Caused by: ...``, ``java.lang.SomeError: ...``, a Python traceback's last line ``SomeError: ...``,
# or a shell's ``spark-submit: line 27: /x/bin/spark-class: No such file or directory``.
_CAUSE = re.compile(r"^(?:Exception in thread \"[^\"]*\" |Caused by: )?(?P<cause>(?:[\w$]+\.)*[\w$]*(?:Exception|Error)"
                    r"\b.*|.*: (?:No such file or directory|command not found|Permission denied))$")


def _cause(log: Path) -> str:
    """Why spark-submit ended, in one line from its log: the first cause a JVM or Python process
    gave (Spark's own warnings and stack frames left out), else the log's last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    for line in lines:
        found = _CAUSE.match(line)
        if found and not line.startswith("at "):
            return found["cause"]
    return lines[-1] if lines else "no output"


__all__ = ["SparkEngine", "spark_submit_path"]
