"""A job run of a cloud Spark service, run here as a local ``spark-submit`` (what local/glue_jobs.py
and local/emr_serverless_jobs.py share).

The script and the files it names come from the world's S3 (moto's backend, in this process); the
run gets the world's endpoint and dummy keys in its environment (``AWS_ENDPOINT_URL``, ...), so it
reads and writes the world's S3 as the job would AWS's; the world's own Python, which has the
package, runs the driver and the executors. The run ends with the world (lake/lifetime.py), as a
job run ends with its account.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

MASTER = "local[2]"


def world_object(account_id: str, region: str, uri: str) -> bytes | None:
    """The bytes of ``uri`` (``s3://bucket/key``) in the world's S3; None when it is not there."""
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        return bytes(s3_backends[account_id][get_partition(region)].get_object(bucket, key).value)
    except Exception:  # noqa: BLE001 - no such bucket or key
        return None


class LocalSparkRun:
    """One ``spark-submit --master local[2]`` of a job's script, its output in ``folder``
    (``stdout``: the Python driver's output, as spark-submit relays it; ``stderr``: Spark's log)."""

    def __init__(self, folder: Path, process: subprocess.Popen | None, failure: str | None = None):
        self.folder, self.process, self.failure = folder, process, failure

    @classmethod
    def start(cls, script: bytes, script_name: str, name: str, arguments: Sequence[str], endpoint: str,
              region: str, submit_options: Sequence[str] = (), environment: dict[str, str] | None = None,
              files: dict[str, bytes] | None = None) -> "LocalSparkRun":
        """Start ``script`` (saved as ``script_name``) with ``arguments``; ``submit_options``:
        more spark-submit options, where ``{folder}`` stands for the run's folder, into which
        ``files`` (name: bytes) are written first; ``environment``: more variables of the driver.
        A run that cannot start (no spark-submit) is a run that failed, with the reason."""
        from ddb_assets.lake.shards.spark import spark_submit_path

        folder = Path(tempfile.mkdtemp(prefix="ddb-assets-spark-run-"))
        path = folder / script_name
        path.write_bytes(script)
        for file_name, data in (files or {}).items():
            (folder / file_name).write_bytes(data)
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=region, AWS_REGION=region,
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, **(environment or {}))
        try:
            submit = spark_submit_path(None)
        except Exception as exc:  # noqa: BLE001 - reported as the service reports a run that could not start
            return cls(folder, None, str(exc))
        command = [sys.executable, "-m", "ddb_assets.lake.lifetime", str(os.getpid()), str(int(signal.SIGTERM)),
                   submit, "--master", MASTER, "--conf", "spark.ui.enabled=false", "--name", name,
                   *(option.replace("{folder}", str(folder)) for option in submit_options), str(path), *arguments]
        with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=folder)
        return cls(folder, process)

    def status(self) -> int | None:
        """None while it runs, then its exit status (1 for a run that never started)."""
        if self.process is None:
            return 1
        return self.process.poll()

    def output(self, stream: str) -> str:
        """What the run wrote to ``stream`` (``stdout`` or ``stderr``) so far."""
        try:
            return (self.folder / stream).read_text(errors="replace")
        except OSError:
            return ""

    def error_message(self) -> str:
        """The run's error as the services give it: the last line of the script's traceback
        (spark-submit relays the Python driver's stderr on its stdout), else of Spark's log."""
        if self.failure is not None:
            return self.failure
        for stream in ("stdout", "stderr"):
            lines = [line.strip() for line in self.output(stream).splitlines() if line.strip()]
            for line in reversed(lines):
                if "Error" in line.split(":", 1)[0] or "Exception" in line.split(":", 1)[0]:
                    return line
        lines = [line.strip() for line in self.output("stderr").splitlines() if line.strip()]
        return lines[-1] if lines else "the job run failed"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def remove(self) -> None:
        """Forget the run's folder (kept for a run that failed, for its output)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def spark_run_of(job_run: Any) -> LocalSparkRun | None:
    """The local run behind a moto job run (None: not one of ours)."""
    return getattr(job_run, "_ddb_assets_run", None)


__all__ = ["LocalSparkRun", "MASTER", "spark_run_of", "world_object"]
