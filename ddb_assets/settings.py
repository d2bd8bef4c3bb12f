"""The YAML configuration: which DynamoDB tables go into the lake, and where everything lives.

Validated with pydantic; errors name the file and the offending key. Read when Dagster builds the
definitions (or the CLI asks), never at import time.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from ddb_assets.lake.catalog import CatalogConfig
    from ddb_assets.lake.convert import ConvertOptions

CONFIG_ENV = "DDB_ASSETS_CONFIG"
_TABLE_NAME = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")


class ConfigError(ValueError):
    """The configuration file is missing or invalid; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsSettings(_Strict):
    region: str | None = Field("us-east-1", description="AWS region of the tables, buckets, Glue and Athena "
                                                        "(null: the AWS_REGION of the deployment).")
    endpoint_url: str | None = Field(
        None, description="Send every AWS call here instead of AWS (the local world, LocalStack, MinIO). "
                          "Unset for real AWS: the ordinary credential chain is used.")


class DuckDBSettings(_Strict):
    kind: Literal["duckdb"] = "duckdb"
    database: str = Field(":memory:", description="DuckDB database file for registered views (or :memory:).")


class AthenaSettings(_Strict):
    kind: Literal["athena"] = "athena"
    workgroup: str = Field("primary")
    output_location: str = Field(..., description="s3:// URI for Athena query results.")


class CatalogSettings(_Strict):
    kind: Literal["sql", "glue", "rest"] = Field(
        "sql", description="sql: a SQLite file (default <lake_root>/catalog.db for a local lake); glue: the AWS "
                           "Glue Data Catalog, which Athena reads; rest: an Iceberg REST catalog (uri).")
    uri: str | None = Field(None, description="sql: a SQLAlchemy URI (sqlite:///path/catalog.db); rest: the endpoint.")
    namespace: str = Field("ddb_lake", description="Catalog namespace of the lake's tables (the Glue database).")
    properties: dict[str, str] = Field(default_factory=dict,
                                       description="More pyiceberg catalog properties (REST credentials, ...).")

    @model_validator(mode="after")
    def _rest_needs_uri(self) -> "CatalogSettings":
        if self.kind == "rest" and not self.uri:
            raise ValueError("a rest catalog needs its uri")
        return self

    def config(self) -> "CatalogConfig":
        from ddb_assets.lake.catalog import CatalogConfig

        return CatalogConfig(kind=self.kind, uri=self.uri, namespace=self.namespace, properties=dict(self.properties))


class MaintenanceSettings(_Strict):
    expire_after_days: float = Field(7, ge=0, description="Maintenance expires snapshots older than this many days, "
                                                                 "keeping at least keep_snapshots (0: all but those).")
    keep_snapshots: int = Field(10, ge=1, description="Snapshots always kept, however old.")
    orphan_grace_hours: float = Field(24, ge=0, description="Remove unreferenced files, and abort "
                                                            "incomplete multipart uploads, older than this (a run "
                                                            "still writing is younger).")
    small_file_bytes: int = Field(32 << 20, ge=0, description="Compact partitions holding several files smaller "
                                                              "than this, or files with position deletes "
                                                              "(merge-on-read), into one (0: no compaction).")
    schedule: str | None = Field("0 3 * * *", description="Cron schedule of the maintenance job (null: none).")


WINDOWS = {"15m": "*/15 * * * *", "30m": "*/30 * * * *", "1h": "0 * * * *", "2h": "0 */2 * * *",
           "3h": "0 */3 * * *", "4h": "0 */4 * * *", "6h": "0 */6 * * *", "8h": "0 */8 * * *",
           "12h": "0 */12 * * *", "24h": "0 0 * * *"}


class IncrementalSettings(_Strict):
    window: Literal["15m", "30m", "1h", "2h", "3h", "4h", "6h", "8h", "12h", "24h"] = Field(
        "1h", description="Length of each incremental export's window (AWS allows 15 minutes to 24 hours).")
    start: str = Field(..., description="ISO-8601 UTC time the first window starts: the time of the full export "
                                        "the table was made from (the chain continues from there).")
    view: Literal["NEW_AND_OLD_IMAGES", "NEW_IMAGE"] = Field("NEW_AND_OLD_IMAGES",
                                                             description="ExportViewType of the windows' exports.")
    allow_overlap: bool = Field(False, description="Apply windows that overlap the table's mark, by write time.")
    merge_mode: Literal["copy-on-write", "merge-on-read"] | None = Field(
        None, description="How windows are merged: copy-on-write rewrites the data files holding changed keys; "
                          "merge-on-read writes Iceberg position-delete files (compaction folds them). Default: "
                          "the table's write.merge.mode, else copy-on-write.")
    future_windows: int = Field(0, ge=0, le=1000, description="Windows past the current one that Dagster lists "
                                                               "(for a local world whose clock runs ahead).")
    max_lag_minutes: int | None = Field(None, ge=1, description="The freshness check fails when the table's "
                                        "high-water mark is older than this (default: two windows plus an hour).")
    reconcile_schedule: str | None = Field(None, description="Cron schedule of the reconciliation check (a full "
                                           "export at the mark, compared item by item); off when absent.")

    @field_validator("start")
    @classmethod
    def _iso(cls, value: str) -> str:
        from datetime import datetime

        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("start must be an ISO-8601 time, e.g. 2026-11-30T00:00:00Z") from None
        return value

    @property
    def cron(self) -> str:
        return WINDOWS[self.window]

    @property
    def window_seconds(self) -> int:
        return int(self.window[:-1]) * (60 if self.window.endswith("m") else 3600)

    @property
    def max_lag_seconds(self) -> int:
        return self.max_lag_minutes * 60 if self.max_lag_minutes else 2 * self.window_seconds + 3600


class SparkSettings(_Strict):
    master: str = Field("local[*]", description="spark-submit's --master: local[N], spark://HOST:7077, yarn "
                                                "(EMR on EC2).")
    submit: str | None = Field(None, description="The spark-submit to run (default: $SPARK_HOME's, else "
                                                 "pyspark's, else the one on PATH).")
    conf: dict[str, str] = Field(default_factory=dict, description="Extra --conf key=value pairs "
                                                                   "(spark.executor.memory, ...).")
    shards: int = Field(0, ge=0, description="Shard tasks per conversion (0: about one per 256 MiB of gzip "
                                             "input, at least two, at most one per data file).")
    staging: str | None = Field(None, description="Folder (local or s3://) the shard specs and results pass "
                                                  "through (default: a temporary local folder, for local[N] "
                                                  "masters only: on a cluster the executors write each "
                                                  "shard's result there, so give a folder they reach, "
                                                  "such as s3://).")


class GlueSettings(_Strict):
    job: str | None = Field(None, description="The AWS Glue job (Glue 5.x, Spark, Python 3.11) whose script is "
                                              "the one `ddb-assets shard package` uploads.")
    staging: str | None = Field(None, description="s3:// folder the shard specs and results pass through (the "
                                                  "job's role reads and writes it).")
    worker_type: str | None = Field(None, description="StartJobRun's WorkerType: G.1X, G.2X, ... (default: "
                                                      "the job's).")
    workers: int | None = Field(None, ge=2, description="StartJobRun's NumberOfWorkers (default: the job's).")
    shards: int = Field(0, ge=0, description="Shard tasks per conversion (0: about one per 256 MiB of gzip "
                                             "input, at least two, at most one per data file).")
    arguments: dict[str, str] = Field(default_factory=dict, description="More job arguments, e.g. "
                                                                        "--additional-python-modules: the "
                                                                        "wheel's s3:// URI.")


class EmrServerlessSettings(_Strict):
    application_id: str | None = Field(None, description="The EMR Serverless application (Spark, EMR 7.x) that "
                                                         "runs the job.")
    execution_role_arn: str | None = Field(None, description="The job runtime role's ARN (StartJobRun's "
                                                             "executionRoleArn): reads the export, writes the "
                                                             "table's files and the staging folder.")
    entry_point: str | None = Field(None, description="The job's script, the s3:// URI `ddb-assets shard package` "
                                                      "printed.")
    py_files: str | None = Field(None, description="spark.submit.pyFiles: the package's zip `ddb-assets shard "
                                                   "package` printed (omit when the application's Python has "
                                                   "the package).")
    staging: str | None = Field(None, description="s3:// folder the shard specs and results pass through (the "
                                                  "job's role reads and writes it).")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="More --conf key=value pairs of "
                                                                         "sparkSubmitParameters: the virtualenv "
                                                                         "archive (spark.archives) and its "
                                                                         "PYSPARK_PYTHON, executor sizes, ...")
    shards: int = Field(0, ge=0, description="Shard tasks per conversion (0: about one per 256 MiB of gzip "
                                             "input, at least two, at most one per data file).")


class TableSettings(_Strict):
    table: str = Field(..., description="DynamoDB table name or ARN.")
    name: str | None = Field(None, description="Name in the lake and in asset keys (default: the table's name).")
    export_bucket: str
    export_prefix: str | None = Field(None, description="S3 prefix for exports (default exports/<name>).")
    export_format: Literal["DYNAMODB_JSON", "ION"] = "DYNAMODB_JSON"
    partition_by: str | None = Field(
        "year", description="ATTR (identity), year|month|day|hour(ATTR[, epoch_seconds|epoch_millis|iso8601]) "
                            "or bucket(N, ATTR); null: unpartitioned.")
    naming: Literal["snake", "glue"] = "snake"
    max_depth: int = Field(3, ge=1, le=16, description="Map levels flattened into columns; deeper maps are JSON text.")
    dictionary_keys: int = Field(64, ge=1, description="A map with more distinct keys is kept as one JSON column.")
    compression: Literal["zstd", "lz4", "snappy", "gzip", "none"] = Field(
        "zstd", description="Parquet codec: zstd (smallest files), snappy for readers without zstd, lz4, gzip, none.")
    key_attributes: list[str] = Field(default_factory=list,
                                      description="The table's key attributes (partition key, then sort key): "
                                                  "conversions refuse an item lacking one and a full export "
                                                  "holding a key twice; also the null/unique check's (default "
                                                  "there: the table's key schema).")
    wait_for_export: bool | None = Field(None, description="Wait for exports in the pitr_export asset "
                                                           "(default: yes locally, no on AWS).")
    enable_pitr: bool = Field(False, description="Turn point-in-time recovery on if it is off (else fail clearly).")
    owners: list[str] = Field(default_factory=list, description="Asset owners: emails or team:name.")
    incremental: IncrementalSettings | None = Field(
        None, description="Incremental exports of time windows, merged into the lake table (off when absent).")
    history: bool = Field(False, description="Keep the change history <name>_changes: one row per change of each "
                                             "incremental export merged (operation, write time, new and old images).")

    @field_validator("table")
    @classmethod
    def _table_name_or_arn(cls, value: str) -> str:
        if value.startswith("arn:"):
            if ":table/" not in value:
                raise ValueError("an ARN must look like arn:aws:dynamodb:<region>:<account>:table/<name>")
            return value
        if not _TABLE_NAME.match(value):
            raise ValueError("a table name has 3-255 characters of a-z, A-Z, 0-9, '_', '-', '.'")
        return value

    @field_validator("partition_by")
    @classmethod
    def _partition_by(cls, value: str | None) -> str | None:
        from ddb_assets.lake.partitioning import PartitionBy, PartitionError

        try:
            PartitionBy.parse(value)
        except PartitionError as exc:
            raise ValueError(str(exc)) from None
        return value or None

    @property
    def lake_name(self) -> str:
        base = self.name or self.table.rsplit("/", 1)[-1]
        return re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_")

    @property
    def prefix(self) -> str:
        return self.export_prefix or f"exports/{self.lake_name}"


class Settings(_Strict):
    profile: Literal["local", "aws"] = "local"
    lake_root: str = Field(..., min_length=1, description="Where tables are published: a local folder or "
                                                          "s3://bucket/prefix (never empty: that would be the "
                                                          "current folder).")
    aws: AwsSettings = Field(default_factory=AwsSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    query_engine: DuckDBSettings | AthenaSettings = Field(default_factory=DuckDBSettings, discriminator="kind")
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    tables: list[TableSettings] = Field(..., min_length=1)
    sensor_interval_seconds: int = Field(30, ge=5)
    convert_workers: int = Field(0, ge=0, description="Conversion worker processes (0: one per core, or "
                                                      "none for an export under 20,000 items).")
    convert_json_reader: Literal["arrow-rs", "pyarrow"] = Field(
        "arrow-rs", description="JSON parser of the conversion: arrow-rs (less CPU; pyarrow's reader takes any "
                                "piece it cannot be shown to read exactly) or pyarrow.")
    convert_work_dir: str | None = Field(None, description="Local folder for the parsed items between the "
                                                           "conversion's two stages (default: TMPDIR), used when "
                                                           "raw_export's profile is not there for a one-pass "
                                                           "conversion; needs up to about 0.8x an export's "
                                                           "decompressed size.")
    runner: Literal["local", "spark", "glue", "emr_serverless"] = Field(
        "local", description="Who converts full exports: local (worker processes here), spark (shard tasks in "
                             "one Spark application; see spark), glue (AWS Glue job runs; see glue) or "
                             "emr_serverless (EMR Serverless job runs; see emr_serverless). Incremental exports "
                             "merge locally.")
    spark: SparkSettings = Field(default_factory=SparkSettings)
    glue: GlueSettings = Field(default_factory=GlueSettings)
    emr_serverless: EmrServerlessSettings = Field(default_factory=EmrServerlessSettings)
    report_dirs: list[str] = Field(default_factory=list, description="Folders of extra report SQL files "
                                                                     "({table} is the lake table).")

    @model_validator(mode="after")
    def _unique_names(self) -> "Settings":
        names = [t.lake_name for t in self.tables]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two tables map to the same lake name: {', '.join(duplicates)} (set `name`)")
        return self

    @model_validator(mode="after")
    def _remote_runners_have_what_they_need(self) -> "Settings":
        if self.runner == "glue":
            if not self.glue.job:
                raise ValueError("runner glue needs glue.job: the Glue job's name (see `ddb-assets shard package`)")
            if not (self.glue.staging or "").startswith("s3://"):
                raise ValueError("runner glue needs glue.staging: an s3:// folder the job's role reads and writes")
        if self.runner == "emr_serverless":
            emr = self.emr_serverless
            for value, key, what in ((emr.application_id, "application_id", "the EMR Serverless application's id"),
                                     (emr.execution_role_arn, "execution_role_arn", "the job runtime role's ARN"),
                                     (emr.entry_point, "entry_point", "the job's script (see `ddb-assets shard "
                                                                      "package`)")):
                if not value:
                    raise ValueError(f"runner emr_serverless needs emr_serverless.{key}: {what}")
            if not (emr.staging or "").startswith("s3://"):
                raise ValueError("runner emr_serverless needs emr_serverless.staging: an s3:// folder the job's "
                                 "role reads and writes")
        return self

    @model_validator(mode="after")
    def _athena_reads_glue(self) -> "Settings":
        if self.query_engine.kind == "athena" and self.catalog.kind != "glue":
            raise ValueError("query_engine athena reads the Glue Data Catalog: set catalog.kind: glue")
        return self

    def wait_for_export(self, table: TableSettings) -> bool:
        return table.wait_for_export if table.wait_for_export is not None else self.profile == "local"

    def convert_options(self, table: TableSettings, **overrides: Any) -> "ConvertOptions":
        """The conversion options of one table: the CLI and the Dagster assets share this model."""
        from ddb_assets.lake.convert import ConvertOptions
        from ddb_assets.lake.shards.options import RunnerOptions

        if self.runner == "glue":
            glue = self.glue
            runner = RunnerOptions(kind="glue", shards=glue.shards, staging=glue.staging, glue_job=glue.job,
                                   glue_worker_type=glue.worker_type, glue_workers=glue.workers,
                                   glue_arguments=tuple(sorted(glue.arguments.items())))
        elif self.runner == "emr_serverless":
            emr = self.emr_serverless
            runner = RunnerOptions(kind="emr_serverless", shards=emr.shards, staging=emr.staging,
                                   emr_application=emr.application_id, emr_role=emr.execution_role_arn,
                                   emr_entry_point=emr.entry_point, emr_py_files=emr.py_files,
                                   emr_spark_conf=tuple(emr.spark_conf.items()))
        else:
            runner = RunnerOptions(kind=self.runner, shards=self.spark.shards, spark_master=self.spark.master,
                                   spark_submit=self.spark.submit, spark_conf=tuple(sorted(self.spark.conf.items())),
                                   staging=self.spark.staging)
        values: dict[str, Any] = dict(partition_by=table.partition_by, naming=table.naming, max_depth=table.max_depth,
                                      dictionary_keys=table.dictionary_keys, compression=table.compression,
                                      workers=self.convert_workers, work_dir=self.convert_work_dir,
                                      json_reader=self.convert_json_reader,
                                      table_name=table.lake_name, catalog=self.catalog.config(),
                                      history=table.history, runner=runner,
                                      key_attributes=tuple(table.key_attributes))
        values.update(overrides)
        return ConvertOptions(**values)


def default_config_path() -> Path:
    return Path(str(resources.files("ddb_assets") / "config" / "local.yaml"))


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The configuration file ``load_settings(path)`` reads: ``path``, else $DDB_ASSETS_CONFIG, else
    the packaged local profile (as given: relative stays relative, as messages name it)."""
    return Path(path or os.environ.get(CONFIG_ENV) or default_config_path())


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: it keeps the last one
    silently, so ``namespace: a`` then ``namespace: b`` would read as b with no word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # Keys written in this mapping (a merge key's ``<<: *anchor`` entries may be overridden).
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key_node.value!r} is given twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate a config file (default: $DDB_ASSETS_CONFIG, else the packaged local profile)."""
    chosen = config_path(path)
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        named_by = f" (named by {CONFIG_ENV})" if not path and os.environ.get(CONFIG_ENV) else ""
        raise ConfigError(f"{chosen}: cannot read the configuration{named_by} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{chosen}: not UTF-8 text, so not a YAML configuration") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        # One line: PyYAML's message spans several, with a caret drawing of the spot.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{chosen}: not valid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{chosen}: the configuration is a mapping of keys (lake_root, tables, ...), "
                          f"not a {type(document).__name__}")
    unset: list[str] = []
    document = _expand(document, (), unset)
    if unset:
        raise ConfigError(f"{chosen}: " + "; ".join(unset))
    try:
        return Settings.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{chosen}: " + "; ".join(_problem(e) for e in exc.errors())) from None


def _problem(error: Any) -> str:
    """One pydantic error as ``key.path: what is wrong (got VALUE)``, on one line."""
    loc = tuple(error["loc"])
    message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        if known:
            message += f" (known keys here: {', '.join(known)})"
    elif isinstance(error.get("input"), (str, int, float, bool)) and len(repr(error["input"])) <= 80:
        message += f" (got {error['input']!r})"
    return f"{'.'.join(str(p) for p in loc) or '(top level)'}: {message}"


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys of the model at ``loc`` (best effort: [] where it cannot be told)."""
    import typing

    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue  # a list item: the model is the list's element, found below
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            # A discriminated union's tag (query_engine.athena): the member of that kind.
            members = [m for m in typing.get_args(model) if getattr(m, "model_fields", {}).get("kind") is not None
                       and m.model_fields["kind"].default == part]
            if not members:
                return []
            model = members[0]
            continue
        model = field.annotation
        while typing.get_origin(model) is list:
            model = typing.get_args(model)[0]
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _expand(value: object, where: tuple[Any, ...], unset: list[str]) -> object:
    """``${VAR}`` and ``${VAR:-default}`` from the environment, in string values only (``:-``: the
    default also when VAR is empty, as the shell's). An unset VAR without a default expands to
    nothing and is added to ``unset`` as ``key.path: ...``: the caller refuses the file, since an
    empty value would quietly mean something else (an empty lake_root is the current folder)."""
    if isinstance(value, dict):
        return {k: _expand(v, (*where, k), unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*where, i), unset) for i, v in enumerate(value)]
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, has_default, default = match.group(1).partition(":-")
            if has_default:
                return os.environ.get(name) or default
            if name not in os.environ:
                key = ".".join(str(p) for p in where) or "(top level)"
                unset.append(f"{key}: the environment variable {name} is not set (in {match.group(0)}; set it, or "
                             f"give a default: ${{{name}:-DEFAULT}})")
                return ""
            return os.environ[name]
        return re.sub(r"\$\{([^}]+)\}", substitute, value)
    return value
