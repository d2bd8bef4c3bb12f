"""The live table, starting a PITR export, and validating each completed export."""


import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import dagster as dg
from pydantic import Field

from ddb_assets.aws.dynamodb_exports import ExportFailed, export_id_of
from ddb_assets.aws.resources import DynamoDBResource, LakeResource
from ddb_assets.defs.names import TableNames
from ddb_assets.defs.runners import with_pipes_launchers
from ddb_assets.exports.errors import ExportFormatError
from ddb_assets.exports.reader import open_export
from ddb_assets.exports.storage import S3Options
from ddb_assets.lake.convert import profile_export
from ddb_assets.lake.profile import Profile
from ddb_assets.lake.report import attribute_rows
from ddb_assets.lake.saved_profiles import save_profile
from ddb_assets.lake.convert import ScratchSpaceError
from ddb_assets.lake.evolution import SchemaConflict
from ddb_assets.lake.partitioning import PartitionError
from ddb_assets.lake.shards.driver import profile_in_shards
from ddb_assets.lake.staging import NotStaged, StagedExport, stage_export
from ddb_assets.lake.evolution import plan_table
from ddb_assets.wording import counted


class ExportConfig(dg.Config):
    """Run configuration of a PITR export."""

    export_time: str | None = Field(default=None, description="ISO-8601 point in time to export (default: now).")
    export_format: str | None = Field(default=None, description="DYNAMODB_JSON or ION (default: the table's setting).")
    client_token: str | None = Field(default=None, description="Idempotency token (default: derived from the run).")
    wait: bool | None = Field(default=None, description="Wait until the export completes (default: the profile's).")


def export_arn_for(names: TableNames, table_arn: str, export_id: str) -> str:
    return f"{table_arn}/export/{export_id}"


def source_spec(names: TableNames) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=names.source_key, kinds={"dynamodb"}, group_name=names.group, owners=names.table.owners,
        description=f"The live DynamoDB table `{names.table.table}` (external: exported, never scanned).",
    )


def build_pitr_export(names: TableNames) -> dg.AssetsDefinition:
    table = names.table

    @dg.asset(key=names.pitr_export_key, deps=[names.source_key], kinds={"dynamodb", "s3"}, group_name=names.group, owners=names.table.owners,
              description=f"A point-in-time export of `{table.table}` to s3://{table.export_bucket}/{table.prefix}/ "
                          "(ExportTableToPointInTime: no read capacity used).")
    def pitr_export(context: dg.AssetExecutionContext, config: ExportConfig,
                    dynamodb: DynamoDBResource) -> dg.MaterializeResult:
        table_arn = dynamodb.table_arn(table.table)
        if not dynamodb.pitr_enabled(table.table) and table.enable_pitr:
            context.log.warning(f"point-in-time recovery was off for {table.table}: turning it on (enable_pitr)")
            dynamodb.enable_pitr(table.table)
        if not dynamodb.pitr_enabled(table.table):
            raise dg.Failure(f"point-in-time recovery is off for {table.table}; enable it with "
                             f"`aws dynamodb update-continuous-backups --table-name {table.table} "
                             "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true`")
        # Retries and re-executions of the same run share a token, so they return the same export.
        token = config.client_token or f"dagster-{context.run.root_run_id or context.run.run_id}"
        when = datetime.fromisoformat(config.export_time.replace("Z", "+00:00")) if config.export_time else None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        started = dynamodb.start_export(table_arn=table_arn, bucket=table.export_bucket, prefix=table.prefix,
                                        export_format=config.export_format or table.export_format,
                                        export_time=when, client_token=token)
        context.log.info(f"export started: {started['ExportArn']} ({started['ExportStatus']})")
        description = started
        wait = config.wait if config.wait is not None else names.settings.wait_for_export(table)
        if wait:
            try:
                description = dynamodb.wait_for_export(
                    started["ExportArn"],
                    on_poll=lambda d, t: context.log.info(f"export {d['ExportStatus']} after {t:.0f}s"))
            except ExportFailed as exc:
                raise dg.Failure(str(exc), metadata={"failure_code": exc.description.get("FailureCode"),
                                                     "export_arn": exc.description["ExportArn"]}) from None
        metadata: dict[str, Any] = {
            "export_arn": description["ExportArn"],
            "export_id": export_id_of(description["ExportArn"]),
            "status": description["ExportStatus"],
            "export_time": str(description.get("ExportTime")),
            "s3_location": dg.MetadataValue.url(f"s3://{table.export_bucket}/{table.prefix}/AWSDynamoDB/"
                                                f"{export_id_of(description['ExportArn'])}/"),
            "client_token": description.get("ClientToken", token),
        }
        if description.get("ItemCount") is not None:
            metadata["item_count"] = description["ItemCount"]
        return dg.MaterializeResult(metadata=metadata)

    return pitr_export


def attribute_types(profile: Profile) -> dict[str, list[str]]:
    """attribute path -> sorted descriptors: what schema-drift checks compare between exports."""
    from ddb_assets.lake.schema import path_text

    return {path_text(path): sorted(stats.descriptors) for path, stats in profile.nodes.items()}


def schema_drift(previous: dict[str, list[str]], current: dict[str, list[str]], *,
                 incremental: bool = False) -> dict[str, Any]:
    """{"new": [path], "vanished": [path], "retyped": {path: {"before", "after"}}} between two
    attribute-type maps (``attribute_types``). ``incremental``: ``current`` is an incremental
    export's, which holds only the items that changed in its window (none, in a quiet one): what it
    lacks did not vanish, and an attribute is retyped only by a descriptor ``previous`` lacks."""
    both = sorted(set(previous) & set(current))
    changed = (lambda k: not set(current[k]) <= set(previous[k])) if incremental else \
        (lambda k: previous[k] != current[k])
    return {
        "new": sorted(set(current) - set(previous)),
        "vanished": [] if incremental else sorted(set(previous) - set(current)),
        "retyped": {k: {"before": previous[k], "after": current[k]} for k in both if changed(k)},
    }


def locate_export(names: TableNames, dynamodb: DynamoDBResource, export_id: str) -> tuple[str, dict[str, Any]]:
    """(URI of manifest-summary.json, ExportDescription) for one of this table's exports."""
    from botocore.exceptions import ClientError

    arn = export_arn_for(names, dynamodb.table_arn(names.table.table), export_id)
    try:
        description = dynamodb.describe_export(arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExportNotFoundException":
            raise
        # Locally the usual case: the demo's local world (and its exports) ended with the demo.
        local = names.settings.profile == "local"
        kept = kept_copy(export_id) if local else None
        raise dg.Failure(f"export {arn} is not known to DynamoDB"
                         + (f" at {dynamodb.endpoint_url}" if dynamodb.endpoint_url else "") + ": "
                         + ("an export made in an earlier local world (`make demo`, or a restarted `make dev`) "
                            "went with it" if local else "")
                         + (f" (the demo kept a copy in {kept}, for `ddb-assets inspect` and `convert`)" if kept
                            else "")
                         + (". " if local else "")
                         + "Start a new export; the export sensor validates it and the lake table converts it") \
            from None
    if description["ExportStatus"] != "COMPLETED":
        raise dg.Failure(f"export {arn} is {description['ExportStatus']}, not COMPLETED"
                         + (f": {description.get('FailureCode')}" if description.get("FailureCode") else ""))
    return f"s3://{description['S3Bucket']}/{description['ExportManifest']}", description


def kept_copy(export_id: str, exports_root: str = "var/exports") -> str | None:
    """The folder ``ddb-assets demo`` copied export ``export_id`` to (``<exports_root>/<bucket>/<key>``,
    ending in ``AWSDynamoDB/<export id>``), if it is there; else None."""
    import glob

    found = sorted(glob.glob(os.path.join(exports_root, "**", "AWSDynamoDB", export_id), recursive=True))
    return found[0] + os.sep if found else None


@dataclass
class ValidExport:
    """Which export the lake table consumes: the newest that passed validation."""

    export_id: str | None  # None: no export passed validation yet
    passed_over: dict[str, str]  # newer exports, each with why it is not used

    def describe(self) -> str:
        chosen = f"export {self.export_id}" if self.export_id else "no export"
        if not self.passed_over:
            return f"{chosen}, the latest, passed validation"
        skipped = "; ".join(f"{k}: {v}" for k, v in self.passed_over.items())
        return f"{chosen} is the latest valid one (newer, not used: {skipped})"


@dataclass(frozen=True)
class ValidatedExport:
    """A raw_export partition that passed validation, with what the lake table needs to order it."""

    export_id: str
    export_type: str  # FULL_EXPORT | INCREMENTAL_EXPORT
    export_time: str  # a full export's time
    export_from_time: str  # an incremental export's window
    export_to_time: str

    @property
    def incremental(self) -> bool:
        return self.export_type == "INCREMENTAL_EXPORT"

    @property
    def mark(self) -> str:
        """The point in time the table holds once this export is applied."""
        return self.export_to_time if self.incremental else self.export_time


def _latest_validation(instance: dg.DagsterInstance, names: TableNames, export_id: str) -> Any:
    """The latest raw_export materialization of ``export_id``'s partition (None: not validated yet)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=names.raw_export_key, asset_partitions=[export_id]), limit=1).records
    return records[0].asset_materialization if records else None


def _passed(materialization: Any) -> bool:
    valid = materialization.metadata.get("valid")
    return valid is not None and valid.value is True


def _failure(materialization: Any) -> str:
    error = materialization.metadata.get("error")
    return f"failed validation: {error.value if error is not None else 'invalid'}"


def validated_exports(instance: dg.DagsterInstance, names: TableNames, newest_first: int = 500) -> list[ValidatedExport]:
    """The raw_export partitions whose latest validation passed, oldest first (export ids begin
    with the export's start time in milliseconds)."""
    keys = sorted(names.export_partitions.get_partition_keys(dynamic_partitions_store=instance))[-newest_first:]
    out = []
    for export_id in keys:
        materialization = _latest_validation(instance, names, export_id)
        if materialization is None or not _passed(materialization):
            continue

        def text(key: str) -> str:
            entry = materialization.metadata.get(key)
            return str(entry.value) if entry is not None and entry.value is not None else ""

        out.append(ValidatedExport(export_id, text("export_type") or "FULL_EXPORT", text("export_time"),
                                   text("export_from_time"), text("export_to_time")))
    return out


def failed_validations(instance: dg.DagsterInstance, names: TableNames, newest_first: int = 50) -> dict[str, str]:
    """The raw_export partitions among the newest ``newest_first`` whose latest validation failed:
    export id -> ``failed validation: <error>``."""
    keys = sorted(names.export_partitions.get_partition_keys(dynamic_partitions_store=instance), reverse=True)
    failed: dict[str, str] = {}
    for export_id in keys[:newest_first]:
        materialization = _latest_validation(instance, names, export_id)
        if materialization is not None and not _passed(materialization):
            failed[export_id] = _failure(materialization)
    return failed


def latest_valid_export(instance: dg.DagsterInstance, names: TableNames, newest_first: int = 50) -> ValidExport:
    """The newest raw_export partition whose latest validation passed (metadata ``valid``), and the
    newer ones passed over (failed validation, or not validated yet). Export ids begin with the
    export's start time in milliseconds, so their order is the exports' order."""
    keys = sorted(names.export_partitions.get_partition_keys(dynamic_partitions_store=instance), reverse=True)
    passed_over: dict[str, str] = {}
    for export_id in keys[:newest_first]:
        materialization = _latest_validation(instance, names, export_id)
        if materialization is None:
            passed_over[export_id] = "not validated (yet)"
        elif _passed(materialization):
            return ValidExport(export_id, passed_over)
        else:
            passed_over[export_id] = _failure(materialization)
    return ValidExport(None, passed_over)


def build_raw_export(names: TableNames) -> dg.AssetsDefinition:
    checksums = dg.AssetCheckSpec("checksums_verified", asset=names.raw_export_key, blocking=True,
                                  description="Manifests, checksums and item counts all check out (blocking: "
                                              "an invalid export fails the run, automation does not convert it, "
                                              "and the lake table keeps the latest valid export).")
    drift = dg.AssetCheckSpec("schema_drift", asset=names.raw_export_key,
                              description="Attributes new, vanished or retyped since the previous exports (the "
                                          "latest full one and the windows since; WARN). An incremental export "
                                          "holds only what changed: nothing vanishes in it.")

    @dg.asset(key=names.raw_export_key, partitions_def=names.export_partitions, deps=[names.pitr_export_key],
              kinds={"s3", "json"}, group_name=names.group, owners=names.table.owners, check_specs=[checksums, drift],
              description="One completed PITR export, validated and staged: manifests, checksums and item counts "
                          "checked, every item read once, profiled and written as the lake table's data files, "
                          "which the lake table's run commits. Partitioned by export id.")
    def raw_export(context: dg.AssetExecutionContext, dynamodb: DynamoDBResource,
                   lake: LakeResource) -> dg.MaterializeResult:
        export_id = context.partition_key
        uri, description = locate_export(names, dynamodb, export_id)
        previous = _previous_profiled(context.instance, names, export_id)
        # A shard runner's job runs (glue, emr_serverless) followed by Pipes: their messages reach this run.
        # The table's incremental settings too: an overlapping window is staged by write time as the
        # lake table's run will merge it (allow_overlap), not refused here and read again there.
        incremental = names.table.incremental
        options = with_pipes_launchers(context, names.settings.convert_options(
            names.table, s3=lake.s3_options(), catalog=lake.catalog_config(),
            allow_overlap=incremental.allow_overlap if incremental else False,
            merge_mode=incremental.merge_mode if incremental else None))
        location = lake.location(names.lake_path)
        progress = lambda kind, info: context.log.debug(f"{kind}: {info}")  # noqa: E731
        staged: StagedExport | None = None
        try:
            # The validation is the conversion's read: each data file is fetched and decompressed
            # once, checked, profiled and written as the table's data files; the lake table's run
            # commits them (lake/staging.py). On a shard runner, the shard tasks do that read on
            # the engine: this process reads the manifests only. Where staging does not apply, the
            # export is only read (by the shards, on a shard runner: never twice for a profile).
            try:
                staged = stage_export(uri, location.uri, options, progress)
                export, profile = staged.export, staged.profile
                staging = (f"{counted(staged.rows, 'upsert' if staged.incremental else 'row')} in "
                           f"{counted(len(staged.written), 'data file')}"
                           + (f" and the keys of its {counted(staged.profile.items - staged.skipped, 'change')}"
                              if staged.incremental else "")
                           + f" ({staged.path}); the lake table's run commits them"
                           if staged.record else f"not staged: {staged.note}")
            except (NotStaged, SchemaConflict, PartitionError, ScratchSpaceError) as reason:
                # Not this asset's failure: the lake table's run converts the export and reports it.
                if isinstance(reason, NotStaged) and reason.profile is not None:
                    export, profile = reason.export, reason.profile
                else:
                    export = open_export(uri, (options.s3 or S3Options()).with_environment())  # manifests
                    # An incremental export holds one window's changes: read here, as its merge is.
                    export, profile = profile_in_shards(export, options, progress) \
                        if options.runner.kind != "local" and not export.summary.incremental \
                        else profile_export(export, options, progress=progress)
                staging = f"not staged: {reason}"
        except ExportFormatError as exc:
            # Recorded (so the UI shows why), never consumed: the lake table converts the latest
            # valid export (latest_valid_export), and automation waits for a passing check.
            kept = latest_valid_export(context.instance, names).export_id
            context.log.error(f"export {export_id} is invalid: {exc}. The lake table "
                              + (f"keeps export {kept}, the latest valid one" if kept else "has no valid export yet"))
            return dg.MaterializeResult(
                metadata={"valid": False, "error": str(exc), "manifest": dg.MetadataValue.url(uri),
                          "latest_valid_export": kept or "none"},
                check_results=[
                    dg.AssetCheckResult(check_name="checksums_verified", passed=False,
                                        metadata={"error": str(exc), "object": exc.obj}),
                    dg.AssetCheckResult(check_name="schema_drift", passed=False, severity=dg.AssetCheckSeverity.WARN,
                                        metadata={"skipped": "the export is invalid"}),
                ])
        # The export's own columns (for the UI); the lake table plans against its stored schema.
        plan = plan_table(profile, options.schema_options)
        # Kept beside the table: the parquet asset then plans up front and converts in one pass.
        # Only a speed-up: if it cannot be written, the export is still valid (parquet takes the
        # two stages), so the run goes on with a warning.
        try:
            saved = save_profile(location, export_id, profile).uri
        except OSError as exc:
            saved = f"not saved ({exc})"
            context.log.warning(f"the profile of export {export_id} could not be saved beside the table, so its "
                                f"conversion will take two stages and a local work folder: {exc}")
        values = sorted(profile.partition_values)
        if values:
            context.instance.add_dynamic_partitions(names.value_partitions.name, values)
        types = attribute_types(profile)
        rows = attribute_rows(profile, plan)
        schema = dg.TableSchema(columns=[
            dg.TableColumn(name=row.attribute, type=", ".join(f"{k} {v}" for k, v in row.types.items()),
                           description=f"null {100 * row.null_fraction:.1f}%" + ("; mixed types" if row.mixed else ""))
            for row in rows if row.depth == 0])
        drift_result = _drift_check(previous, types, export.summary.incremental)
        summary = export.summary
        return dg.MaterializeResult(
            metadata={
                "valid": True,
                "export_arn": summary.export_arn,
                "export_type": summary.export_type,
                "export_time": summary.export_time or "",
                "export_from_time": summary.export_from_time or "",
                "export_to_time": summary.export_to_time or "",
                "output_format": summary.output_format,
                "dagster/row_count": summary.item_count,
                "data_files": len(export.files),
                "compressed_bytes": export.compressed_bytes,
                "manifest": dg.MetadataValue.url(uri),
                "dagster/column_schema": schema,
                "attribute_types": dg.MetadataValue.json(types),
                "partition_values": dg.MetadataValue.json(values),
                "mixed_types": dg.MetadataValue.json(plan.variants),
                "profile": saved,
                "staged": staging,
            },
            check_results=[
                dg.AssetCheckResult(check_name="checksums_verified", passed=True, metadata={
                    "data_files_verified": len(export.files),
                    "manifest_checksum_files": ", ".join(export.checksum_files_verified) or "none present"}),
                drift_result,
            ],
        )

    return raw_export


@dataclass(frozen=True)
class _Baseline:
    """What drift is measured against: the attribute types of the exports before this one, back to
    and including the latest full export (windows hold only the items they changed: the full
    export and the windows since together say which attributes the table has)."""

    export_id: str  # the newest of them
    types: dict[str, list[str]]


def _previous_profiled(instance: dg.DagsterInstance, names: TableNames, export_id: str,
                       newest_first: int = 50) -> _Baseline | None:
    """The baseline of the exports before ``export_id`` (export ids sort by time) that recorded
    attribute types, or None when none did: what drift is measured against, however often (and in
    whatever order) exports are validated."""
    keys = sorted(k for k in names.export_partitions.get_partition_keys(dynamic_partitions_store=instance)
                  if k < export_id)
    newest: str | None = None
    types: dict[str, set[str]] = {}
    for key in reversed(keys[-newest_first:]):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=names.raw_export_key, asset_partitions=[key]), limit=1).records
        materialization = records[0].asset_materialization if records else None
        if materialization is None or materialization.metadata.get("attribute_types") is None:
            continue
        newest = newest or key
        for path, descriptors in materialization.metadata["attribute_types"].value.items():
            types.setdefault(path, set()).update(descriptors)
        kind = materialization.metadata.get("export_type")
        if kind is None or kind.value != "INCREMENTAL_EXPORT":
            break  # a full export: the table's attributes then
    if newest is None:
        return None
    return _Baseline(newest, {path: sorted(descriptors) for path, descriptors in types.items()})


def _drift_check(previous: _Baseline | None, types: dict[str, list[str]], incremental: bool) -> dg.AssetCheckResult:
    if previous is None:
        return dg.AssetCheckResult(check_name="schema_drift", passed=True,
                                   metadata={"compared_with": "nothing (no earlier export profiled)"})
    drift = schema_drift(previous.types, types, incremental=incremental)
    changed = bool(drift["new"] or drift["vanished"] or drift["retyped"])
    return dg.AssetCheckResult(check_name="schema_drift", passed=not changed, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"compared_with": previous.export_id,
                                         "details": dg.MetadataValue.json(drift)})


__all__ = ["build_pitr_export", "build_raw_export", "latest_valid_export", "source_spec", "ExportConfig",
           "ValidExport", "json"]
