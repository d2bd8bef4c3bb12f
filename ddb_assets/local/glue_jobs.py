"""Glue job runs of the glue runner's job really run, as a local ``spark-submit``.

moto's Glue only records a job run (it moves from STARTING to SUCCEEDED whatever the script). Here,
in the moto process, ``StartJobRun`` of a job whose script (``Command.ScriptLocation``, in the
world's S3) carries the mark of ``lake/shards/glue_job.py`` starts that script with

    spark-submit --master local[2] --conf spark.ui.enabled=false SCRIPT --JOB_ID .. --JOB_RUN_ID ..
        --JOB_NAME .. [the run's arguments: the job's defaults, then StartJobRun's]

as Glue passes them, with the world's endpoint and dummy keys in its environment
(``AWS_ENDPOINT_URL``, ...), so the job reads and writes the world's S3. ``GetJobRun`` (and
``GetJobRuns``) answer RUNNING while it runs, then SUCCEEDED, or FAILED with an ``ErrorMessage``
(the last line of the script's error), as AWS does. The job's ``--additional-python-modules`` and
``--extra-py-files`` are not installed: the world's own Python, which has the package, runs the
script and the executors. Other jobs keep moto's behaviour.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

MARK = b"ddb-assets-glue-job/1"
MASTER = "local[2]"
_INSTALL_LOCK = threading.Lock()
_installed = False
_request = threading.local()  # the endpoint of the StartJobRun being handled on this thread


def _script(backend: Any, job: Any) -> bytes | None:
    """The job's script from the world's S3, when it is there."""
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    location = (job.command or {}).get("ScriptLocation") or ""
    if not location.startswith("s3://"):
        return None
    bucket, _, key = location[len("s3://"):].partition("/")
    try:
        s3 = s3_backends[backend.account_id][get_partition(backend.region_name)]
        return bytes(s3.get_object(bucket, key).value)
    except Exception:  # noqa: BLE001 - no such bucket or key: not ours, moto's behaviour stands
        return None


def _start(backend: Any, job: Any, job_run: Any, script: bytes, endpoint: str) -> None:
    from ddb_assets.lake.shards.spark import spark_submit_path

    folder = Path(tempfile.mkdtemp(prefix="ddb-assets-glue-run-"))
    path = folder / "glue_job.py"
    path.write_bytes(script)
    arguments = ["--JOB_ID", f"j_{job.name}", "--JOB_RUN_ID", job_run.job_run_id, "--JOB_NAME", job.name]
    for key, value in (job_run.arguments or {}).items():
        arguments += [key, str(value)]
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=backend.region_name,
               AWS_REGION=backend.region_name, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    log = folder / "output.log"
    try:
        submit = spark_submit_path(None)
    except Exception as exc:  # noqa: BLE001 - reported as Glue reports a run that could not start
        job_run._ddb_assets_failure = str(exc)
        return
    command = [sys.executable, "-m", "ddb_assets.lake.lifetime", str(os.getpid()), str(int(signal.SIGTERM)),
               submit, "--master", MASTER, "--conf", "spark.ui.enabled=false", "--name", f"glue {job.name}",
               str(path), *arguments]
    with open(log, "wb") as out:
        # Ends with the world (lake/lifetime.py), as a job run ends with its account.
        job_run._ddb_assets_process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                                       stderr=subprocess.STDOUT, env=env, cwd=folder)
    job_run._ddb_assets_log = log


def _error_message(log: Path) -> str:
    """The script's error as Glue's ErrorMessage gives it: the last line of the traceback."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "the job run failed"
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0] or "Exception" in line.split(":", 1)[0]:
            return line
    return lines[-1] if lines else "the job run failed"


def _state(job_run: Any) -> tuple[str, str | None]:
    failure = getattr(job_run, "_ddb_assets_failure", None)
    if failure is not None:
        return "FAILED", failure
    process = job_run._ddb_assets_process
    status = process.poll()
    if status is None:
        return "RUNNING", None
    if status == 0:
        # the script and its log are kept only for a run that failed
        shutil.rmtree(job_run._ddb_assets_log.parent, ignore_errors=True)
        return "SUCCEEDED", None
    return "FAILED", _error_message(job_run._ddb_assets_log)


def install() -> None:
    """Run the glue runner's job runs for real (see the module docstring). Idempotent."""
    global _installed
    from moto.glue.models import FakeJobRun, GlueBackend
    from moto.glue.responses import GlueResponse

    with _INSTALL_LOCK:
        if _installed:
            return
        original_response = GlueResponse.start_job_run
        original_start = GlueBackend.start_job_run
        original_as_dict = FakeJobRun.as_dict
        original_advance = FakeJobRun.advance
        original_status = FakeJobRun.status

        def response_start_job_run(self: Any) -> Any:
            from ddb_assets.local.emulator import _server_endpoint

            _request.endpoint = _server_endpoint(self)
            try:
                return original_response(self)
            finally:
                _request.endpoint = None

        def start_job_run(self: Any, name: str, *args: Any, **kwargs: Any) -> str:
            run_id = original_start(self, name, *args, **kwargs)
            job = self.get_job(name)
            endpoint = getattr(_request, "endpoint", None)
            script = _script(self, job)
            if endpoint and script is not None and MARK in script[:200]:
                job_run = next(r for r in job.job_runs if r.job_run_id == run_id)
                job_run._ddb_assets_ours = True
                _start(self, job, job_run, script, endpoint)
            return run_id

        def status(self: Any) -> Any:
            if getattr(self, "_ddb_assets_ours", False):
                return _state(self)[0]
            return original_status.fget(self)  # type: ignore[attr-defined]

        def advance(self: Any) -> None:
            if not getattr(self, "_ddb_assets_ours", False):
                original_advance(self)

        def as_dict(self: Any) -> dict[str, Any]:
            document = original_as_dict(self)
            if getattr(self, "_ddb_assets_ours", False):
                state, message = _state(self)
                document["JobRunState"] = state
                document["GlueVersion"] = "5.0"
                document.pop("LogGroupName", None)  # no CloudWatch logs here: the script's output is in its log
                if message:
                    document["ErrorMessage"] = message
            return document

        GlueResponse.start_job_run = response_start_job_run  # type: ignore[method-assign]
        GlueBackend.start_job_run = start_job_run  # type: ignore[method-assign]
        FakeJobRun.status = property(status, original_status.fset)  # type: ignore[method-assign,assignment]
        FakeJobRun.advance = advance  # type: ignore[method-assign]
        FakeJobRun.as_dict = as_dict  # type: ignore[method-assign]
        _installed = True
