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
script and the executors (local/spark_jobs.py, shared with EMR Serverless job runs). Other jobs
keep moto's behaviour.
"""

from __future__ import annotations

import threading
from typing import Any

from ddb_assets.local.spark_jobs import LocalSparkRun, spark_run_of, world_object

MARK = b"ddb-assets-glue-job/1"
_INSTALL_LOCK = threading.Lock()
_installed = False
_request = threading.local()  # the endpoint of the StartJobRun being handled on this thread


def _start(backend: Any, job: Any, job_run: Any, script: bytes, endpoint: str) -> None:
    arguments = ["--JOB_ID", f"j_{job.name}", "--JOB_RUN_ID", job_run.job_run_id, "--JOB_NAME", job.name]
    for key, value in (job_run.arguments or {}).items():
        arguments += [key, str(value)]
    job_run._ddb_assets_run = LocalSparkRun.start(script, "glue_job.py", f"glue {job.name}", arguments, endpoint,
                                                  backend.region_name)


def _state(job_run: Any) -> tuple[str, str | None]:
    run = spark_run_of(job_run)
    assert run is not None
    status = run.status()
    if status is None:
        return "RUNNING", None
    if status == 0:
        run.remove()  # the script and its output are kept only for a run that failed
        return "SUCCEEDED", None
    return "FAILED", run.error_message()


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
            script = world_object(self.account_id, self.region_name, (job.command or {}).get("ScriptLocation") or "")
            if endpoint and script is not None and MARK in script[:200]:
                job_run = next(r for r in job.job_runs if r.job_run_id == run_id)
                _start(self, job, job_run, script, endpoint)
            return run_id

        def status(self: Any) -> Any:
            if spark_run_of(self) is not None:
                return _state(self)[0]
            return original_status.fget(self)  # type: ignore[attr-defined]

        def advance(self: Any) -> None:
            if spark_run_of(self) is None:
                original_advance(self)

        def as_dict(self: Any) -> dict[str, Any]:
            document = original_as_dict(self)
            if spark_run_of(self) is not None:
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
