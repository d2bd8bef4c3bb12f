"""Which engine runs a conversion's shard tasks, and how to reach it (no engine is imported here:
``ConvertOptions`` carries these, and conversion workers unpickle them)."""

from __future__ import annotations

from dataclasses import dataclass

RUNNERS = ("local", "spark")


@dataclass(frozen=True)
class RunnerOptions:
    """``kind``: ``local`` (the process pool of lake/convert.py, the default) or ``spark`` (one
    Spark application maps the shard tasks over its executors: lake/shards/spark.py).

    ``shards``: how many shard tasks a conversion is cut into (0: about one per 256 MiB of gzip
    input, at least two and at most one per data file). ``spark_master``: spark-submit's
    ``--master`` (``local[*]``, ``spark://host:7077``, ``yarn``). ``spark_submit``: the
    spark-submit to run (default: ``$SPARK_HOME/bin/spark-submit``, else pyspark's own, else the
    one on PATH). ``spark_conf``: extra ``--conf key=value`` pairs. ``staging``: the folder (local
    or s3://) the shard specs and results pass through (default: a temporary local folder, which
    suits client deploy mode, spark-submit's default)."""

    kind: str = "local"
    shards: int = 0
    spark_master: str = "local[*]"
    spark_submit: str | None = None
    spark_conf: tuple[tuple[str, str], ...] = ()
    staging: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in RUNNERS:
            raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, not {self.kind!r}")
        if self.shards < 0:
            raise ValueError(f"shards must be 0 (automatic) or more, not {self.shards}")
