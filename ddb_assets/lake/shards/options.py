"""Which engine runs a conversion's shard tasks, and how to reach it (no engine is imported here:
``ConvertOptions`` carries these, and conversion workers unpickle them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNNERS = ("local", "spark", "glue", "emr_serverless")


@dataclass(frozen=True)
class RunnerOptions:
    """``kind``: ``local`` (the process pool of lake/convert.py, the default), ``spark`` (one
    Spark application maps the shard tasks over its executors: lake/shards/spark.py), ``glue``
    (an AWS Glue Spark job run per pass: lake/shards/glue.py) or ``emr_serverless`` (an EMR
    Serverless Spark job run per pass: lake/shards/emr_serverless.py).

    ``shards``: how many shard tasks a conversion is cut into (0: about one per 256 MiB of gzip
    input, at least two and at most one per data file). ``spark_master``: spark-submit's
    ``--master`` (``local[*]``, ``spark://host:7077``, ``yarn``). ``spark_submit``: the
    spark-submit to run (default: ``$SPARK_HOME/bin/spark-submit``, else pyspark's own, else the
    one on PATH). ``spark_conf``: extra ``--conf key=value`` pairs. ``staging``: the folder (local
    or s3://) the shard specs and results pass through (default: a temporary local folder, which
    suits client deploy mode, spark-submit's default; the glue and emr_serverless runners need an
    s3:// one).

    ``glue_job``: the Glue job's name (its script is the one ``ddb-assets shard package``
    uploads); ``glue_worker_type`` and ``glue_workers``: StartJobRun's ``WorkerType`` and
    ``NumberOfWorkers`` (None: the job's own); ``glue_arguments``: more job arguments
    (``--extra-py-files``, ...). ``glue_launcher``: what starts and follows a job run (None:
    boto3, polling ``GetJobRun``; the Dagster assets pass one built on dagster-aws's
    PipesGlueClient); it is not compared and never reaches a worker process.

    ``emr_application``: the EMR Serverless application's id (a Spark application, EMR 7.x);
    ``emr_role``: the job runtime role's ARN (StartJobRun's ``executionRoleArn``);
    ``emr_entry_point``: the job's script, the ``s3://`` URI ``ddb-assets shard package`` printed;
    ``emr_py_files``: ``spark.submit.pyFiles``, the package's zip it printed (None: the package
    comes with the Python environment, e.g. a ``spark.archives`` virtualenv); ``emr_spark_conf``:
    more ``--conf key=value`` pairs of sparkSubmitParameters (the virtualenv archive and its
    ``PYSPARK_PYTHON``, executor sizes, ...). ``emr_launcher``: as ``glue_launcher``, for
    StartJobRun's params and GetJobRun's ``jobRun`` (None: boto3; the Dagster assets pass one
    built on dagster-aws's PipesEMRServerlessClient)."""

    kind: str = "local"
    shards: int = 0
    spark_master: str = "local[*]"
    spark_submit: str | None = None
    spark_conf: tuple[tuple[str, str], ...] = ()
    staging: str | None = None
    glue_job: str | None = None
    glue_worker_type: str | None = None
    glue_workers: int | None = None
    glue_arguments: tuple[tuple[str, str], ...] = ()
    glue_launcher: Any = field(default=None, compare=False, repr=False)
    emr_application: str | None = None
    emr_role: str | None = None
    emr_entry_point: str | None = None
    emr_py_files: str | None = None
    emr_spark_conf: tuple[tuple[str, str], ...] = ()
    emr_launcher: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in RUNNERS:
            raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, not {self.kind!r}")
        if self.shards < 0:
            raise ValueError(f"shards must be 0 (automatic) or more, not {self.shards}")
        if self.kind == "glue":
            if not self.glue_job:
                raise ValueError("runner glue needs the Glue job's name (glue.job in the settings, --glue-job)")
            if not (self.staging or "").startswith("s3://"):
                raise ValueError("runner glue needs an s3:// staging folder the job can read and write "
                                 "(glue.staging in the settings, --staging)")
        if self.kind == "emr_serverless":
            for value, what in ((self.emr_application, "the EMR Serverless application's id (emr_serverless."
                                                        "application_id in the settings, --emr-application)"),
                                (self.emr_role, "the job runtime role's ARN (emr_serverless.execution_role_arn "
                                                "in the settings, --emr-role)"),
                                (self.emr_entry_point, "the job's script, an s3:// URI from `ddb-assets shard "
                                                       "package` (emr_serverless.entry_point in the settings, "
                                                       "--emr-entry-point)")):
                if not value:
                    raise ValueError(f"runner emr_serverless needs {what}")
            for value, option in ((self.emr_entry_point, "--emr-entry-point (emr_serverless.entry_point)"),
                                  (self.emr_py_files, "--emr-py-files (emr_serverless.py_files)")):
                if value and not value.startswith("s3://"):
                    raise ValueError(f"runner emr_serverless: {option} must be an s3:// URI the job can read "
                                     f"(`ddb-assets shard package` prints it), not {value!r}")
            if not (self.staging or "").startswith("s3://"):
                raise ValueError("runner emr_serverless needs an s3:// staging folder the job can read and write "
                                 "(emr_serverless.staging in the settings, --staging)")
