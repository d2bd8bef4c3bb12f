"""EMR Serverless job runs of the emr_serverless runner's job really run, as a local ``spark-submit``.

moto's EMR Serverless only records a job run (SUCCESS at once, whatever the entry point). Here, in
the moto process, ``StartJobRun`` of a ``sparkSubmit`` job driver whose ``entryPoint`` (in the
world's S3) carries the mark of ``lake/shards/glue_job.py`` starts that script with

    spark-submit --master local[2] --conf spark.ui.enabled=false [the run's sparkSubmitParameters,
        translated] SCRIPT [its entryPointArguments]

with the world's endpoint and dummy keys in its environment (local/spark_jobs.py, shared with
Glue job runs). Of sparkSubmitParameters, ``spark.submit.pyFiles`` (and ``--py-files``) objects
are fetched from the world's S3 and given to spark-submit as local files, as EMR Serverless
fetches them; ``spark.emr-serverless.driverEnv.NAME=VALUE`` sets NAME in the driver's
environment (how dagster-aws's Pipes client passes its context); the Python environment's
settings (``spark.archives``, ``PYSPARK_PYTHON``...) are dropped, as the world's own Python runs
the driver and the executors; other ``--conf`` pairs pass through.

``GetJobRun`` and ``ListJobRuns`` answer SUBMITTED until the run is seen running, RUNNING while it
runs, then SUCCESS, or FAILED with ``stateDetails`` (the last line of the script's error), as AWS
does; ``CancelJobRun`` stops it (CANCELLED). When the run's ``configurationOverrides`` enable
CloudWatch logging, its finished driver's stdout and stderr go to CloudWatch Logs where EMR
Serverless puts them (``/aws/emr-serverless`` or the configured group, stream
``[prefix]/applications/APP/jobs/RUN/SPARK_DRIVER/stdout``), for Pipes to read. ``GetDashboardForJobRun``
answers with the run's local output folder; ``ListJobRuns`` of an application that has run
nothing yet answers an empty list, as AWS does. Other job runs keep moto's behaviour.
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import PurePosixPath
from typing import Any

from ddb_assets.local.glue_jobs import MARK
from ddb_assets.local.spark_jobs import LocalSparkRun, spark_run_of, world_object

DRIVER_ENV = "spark.emr-serverless.driverEnv."
# The Python environment's settings: the world's own Python runs the job.
DROPPED = ("spark.archives", "spark.executorEnv.PYSPARK_PYTHON", "spark.pyspark.python",
           "spark.pyspark.driver.python")
DEFAULT_LOG_GROUP = "/aws/emr-serverless"
FINAL = ("SUCCESS", "FAILED", "CANCELLED")
_INSTALL_LOCK = threading.Lock()
_installed = False
_request = threading.local()  # the endpoint of the StartJobRun being handled on this thread


def _submit_options(parameters: str, fetch: Any) -> tuple[list[str], dict[str, str], dict[str, bytes]]:
    """sparkSubmitParameters as (spark-submit options, driver environment, files to put in the
    run's folder). ``fetch(uri)``: an object of the world's S3, or None."""
    words = shlex.split(parameters or "")
    options: list[str] = []
    environment: dict[str, str] = {}
    files: dict[str, bytes] = {}
    py_files: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        value = words[index + 1] if index + 1 < len(words) else ""
        if word in ("--conf", "--py-files", "--archives"):
            index += 2
        else:
            options.append(word)
            index += 1
            continue
        if word == "--archives":
            continue
        if word == "--py-files":
            key, conf = "spark.submit.pyFiles", value
        else:
            key, _, conf = value.partition("=")
        if key.startswith(DRIVER_ENV):
            name = key[len(DRIVER_ENV):]
            if not name.startswith("PYSPARK"):
                environment[name] = conf
        elif key == "spark.submit.pyFiles":
            for uri in filter(None, conf.split(",")):
                data = fetch(uri)
                if data is None:  # as EMR Serverless, which cannot start a run without its files
                    raise FileNotFoundError(f"spark.submit.pyFiles: {uri} does not exist")
                files[PurePosixPath(uri).name] = data
                py_files.append("{folder}/" + PurePosixPath(uri).name)
        elif key not in DROPPED and not key.startswith("spark.emr-serverless."):
            options += ["--conf", value]
    if py_files:
        options += ["--py-files", ",".join(py_files)]
    return options, environment, files


def _start(backend: Any, job_run: Any, script: bytes, endpoint: str) -> None:
    submit = (job_run.job_driver or {}).get("sparkSubmit") or {}
    fetch = lambda uri: world_object(backend.account_id, backend.region_name, uri)  # noqa: E731
    try:
        options, environment, files = _submit_options(submit.get("sparkSubmitParameters") or "", fetch)
    except (ValueError, FileNotFoundError) as exc:
        job_run.state, job_run.state_details = "FAILED", str(exc)
        return
    job_run._ddb_assets_run = LocalSparkRun.start(
        script, PurePosixPath(submit["entryPoint"]).name, job_run.name or f"emr-serverless {job_run.id}",
        [str(a) for a in submit.get("entryPointArguments") or []], endpoint, backend.region_name,
        submit_options=options, environment=environment, files=files)
    job_run.state, job_run.state_details = "SUBMITTED", None


def _refresh(backend: Any, job_run: Any) -> None:
    """The job run's state from its local run (a run that ended is final)."""
    run = spark_run_of(job_run)
    if run is None or job_run.state in FINAL:
        return
    status = run.status()
    if status is None:
        job_run.state = "RUNNING"
        return
    job_run.state, job_run.state_details = ("SUCCESS", None) if status == 0 else ("FAILED", run.error_message())
    job_run.total_execution_duration_seconds = int(time.monotonic() - job_run._ddb_assets_started)
    _ship_logs(backend, job_run, run)
    if status == 0:
        run.remove()  # the script and its output are kept only for a run that failed


def _ship_logs(backend: Any, job_run: Any, run: LocalSparkRun) -> None:
    """The driver's stdout and stderr to CloudWatch Logs, where EMR Serverless puts them, when the
    run enables CloudWatch logging."""
    from moto.logs.models import logs_backends

    monitoring = (job_run.configuration_overrides or {}).get("monitoringConfiguration") or {}
    cloudwatch = monitoring.get("cloudWatchLoggingConfiguration") or {}
    if cloudwatch.get("enabled") is not True:
        return
    logs = logs_backends[backend.account_id][backend.region_name]
    group = cloudwatch.get("logGroupName") or DEFAULT_LOG_GROUP
    if group not in logs.groups:
        logs.create_log_group(group, {})
    stream = f"{cloudwatch.get('logStreamNamePrefix') or ''}/applications/{job_run.application_id}/jobs/{job_run.id}/SPARK_DRIVER"
    now = int(time.time() * 1000)
    for name in ("stdout", "stderr"):
        lines = [line for line in run.output(name).splitlines() if line]
        logs.groups[group].create_log_stream(f"{stream}/{name}")
        if lines:
            logs.groups[group].put_log_events(f"{stream}/{name}", [{"timestamp": now, "message": line}
                                                                   for line in lines])


def install() -> None:
    """Run the emr_serverless runner's job runs for real (see the module docstring). Idempotent."""
    global _installed
    from moto.emrserverless import urls
    from moto.emrserverless.models import EMRServerlessBackend
    from moto.emrserverless.responses import EMRServerlessResponse
    from moto.core.responses import ActionResult

    with _INSTALL_LOCK:
        if _installed:
            return
        original_response = EMRServerlessResponse.start_job_run
        original_start = EMRServerlessBackend.start_job_run
        original_get = EMRServerlessBackend.get_job_run
        original_list = EMRServerlessBackend.list_job_runs
        original_cancel = EMRServerlessBackend.cancel_job_run

        def response_start_job_run(self: Any) -> Any:
            from ddb_assets.local.emulator import _server_endpoint

            _request.endpoint = _server_endpoint(self)
            try:
                return original_response(self)
            finally:
                _request.endpoint = None

        def start_job_run(self: Any, *args: Any, **kwargs: Any) -> Any:
            job_run = original_start(self, *args, **kwargs)
            entry_point = ((job_run.job_driver or {}).get("sparkSubmit") or {}).get("entryPoint") or ""
            endpoint = getattr(_request, "endpoint", None)
            script = world_object(self.account_id, self.region_name, entry_point)
            if endpoint and script is not None and MARK in script[:200]:
                job_run._ddb_assets_started = time.monotonic()
                _start(self, job_run, script, endpoint)
            return job_run

        def get_job_run(self: Any, application_id: str, job_run_id: str) -> Any:
            job_run = original_get(self, application_id, job_run_id)
            _refresh(self, job_run)
            return job_run

        def list_job_runs(self: Any, application_id: str, *args: Any, **kwargs: Any) -> Any:
            # An application with no job run yet has none (moto's answer: it does not exist).
            self.job_runs.setdefault(self.get_application(application_id).id, [])
            for job_run in self.job_runs[application_id]:
                _refresh(self, job_run)
            return original_list(self, application_id, *args, **kwargs)

        def cancel_job_run(self: Any, application_id: str, job_run_id: str) -> Any:
            run = spark_run_of(original_get(self, application_id, job_run_id))
            if run is not None:
                run.stop()
            return original_cancel(self, application_id, job_run_id)

        def get_dashboard_for_job_run(self: Any) -> Any:
            job_run = self.emrserverless_backend.get_job_run(self._get_param("applicationId"),
                                                            self._get_param("jobRunId"))
            run = spark_run_of(job_run)
            return ActionResult({"url": run.folder.as_uri() if run is not None else ""})

        EMRServerlessResponse.start_job_run = response_start_job_run  # type: ignore[method-assign]
        EMRServerlessResponse.get_dashboard_for_job_run = get_dashboard_for_job_run  # type: ignore[attr-defined]
        EMRServerlessBackend.start_job_run = start_job_run  # type: ignore[method-assign]
        EMRServerlessBackend.get_job_run = get_job_run  # type: ignore[method-assign]
        EMRServerlessBackend.list_job_runs = list_job_runs  # type: ignore[method-assign]
        EMRServerlessBackend.cancel_job_run = cancel_job_run  # type: ignore[method-assign]
        urls.url_paths["{0}/applications/(?P<applicationId>[^/]+)/jobruns/(?P<jobRunId>[^/]+)/dashboard$"] = \
            EMRServerlessResponse.dispatch
        _installed = True


__all__ = ["install"]
