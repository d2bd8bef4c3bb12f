"""The flattened Parquet table, partitioned by the partition attribute's values."""


import warnings
from typing import Any

import dagster as dg

from ddb_assets.aws.resources import QueryEngineResource, DynamoDBResource, LakeResource
from ddb_assets.defs.export_assets import locate_export
from ddb_assets.defs.names import TableNames
from ddb_assets.lake.convert import ConvertOptions, convert_export
from ddb_assets.lake.publish import TableMetadata
from ddb_assets.lake.saved_profiles import load_profile
from ddb_assets.query.duckdb_engine import QueryResult, quote_identifier


def build_parquet(names: TableNames) -> dg.AssetsDefinition:
    row_count = dg.AssetCheckSpec("row_count_matches_export", asset=names.parquet_key,
                                  description="Rows published from the export equal its itemCount.")
    keys = dg.AssetCheckSpec("keys_not_null_and_unique", asset=names.parquet_key,
                             description="The table's key attributes are never null and unique.")

    with warnings.catch_warnings():
        # backfill_policy is beta in 1.13 and used deliberately: single-run backfills are the point.
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
        return _parquet_asset(names, row_count, keys)


def _parquet_asset(names: TableNames, row_count: dg.AssetCheckSpec, keys: dg.AssetCheckSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=names.parquet_key,
        partitions_def=names.value_partitions,
        ins={"raw_export": dg.AssetIn(key=names.raw_export_key, partition_mapping=dg.LastPartitionMapping(),
                                      dagster_type=dg.Nothing)},
        backfill_policy=dg.BackfillPolicy.single_run(),
        # A new export (a new raw_export partition) makes every partition stale: one backfill of all.
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"parquet"}, group_name=names.group, owners=names.table.owners, check_specs=[row_count, keys],
        description=f"`{names.table.table}` as typed, flattened Parquet, partitioned by "
                    f"`{names.table.partition_by}` (hive folders), converted from the latest export and "
                    "published atomically.",
    )
    def parquet(context: dg.AssetExecutionContext, dynamodb: DynamoDBResource, lake: LakeResource,
                query_engine: QueryEngineResource) -> dg.MaterializeResult:
        export_id = context.asset_partition_key_for_input("raw_export")
        uri, _ = locate_export(names, dynamodb, export_id)
        selected = frozenset(context.partition_keys)
        everything = frozenset(names.value_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
        root = lake.location(names.lake_path)
        # raw_export read every item of this export already: with its profile the schema is
        # planned up front and the conversion is one pass, with no local work folder.
        known = load_profile(root, export_id)
        context.log.info(f"converting export {export_id} into {root.uri}: "
                         f"{'all' if selected >= everything else len(selected)} partition(s), "
                         + ("in one pass from raw_export's profile" if known is not None else
                            "in two stages (no saved profile of this export)"))
        result = convert_export(uri, root.uri, ConvertOptions(
            partition_by=names.table.partition_by, naming=names.table.naming, s3=lake.s3_options(),
            only_partitions=None if selected >= everything else selected, table_name=names.name,
            workers=names.settings.convert_workers, compression=names.table.compression,
            work_dir=names.settings.convert_work_dir),
            progress=lambda kind, info: context.log.debug(f"{kind}: {info}"), known=known)
        meta = result.metadata
        written = {p: meta.partitions[p] for p in sorted(selected) if p in meta.partitions}
        engine = query_engine.engine()
        try:
            engine.register_table(names.name, root)
            preview = engine.query(f"SELECT * FROM {engine.table_reference(names.name)} LIMIT 10")
            key_check = _keys_check(engine, names, meta, dynamodb)
        finally:
            engine.close()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": meta.rows,
                "rows_written": sum(p.rows for p in written.values()),
                "rows_per_partition": dg.MetadataValue.md(
                    "| partition | rows | bytes | files |\n|---|---|---|---|\n" + "\n".join(
                        f"| {v} | {p.rows:,} | {p.bytes:,} | {len(p.files)} |" for v, p in written.items())),
                "bytes": meta.bytes,
                "files": len(meta.files()),
                "source_export": meta.source["export_arn"],
                "export_time": meta.source["export_time"],
                "table_version": meta.version,
                "conversion": "one pass (raw_export's profile)" if result.one_pass else
                              f"two stages ({result.scratch_bytes:,} bytes of scratch)",
                "dagster/uri": root.uri,
                "dagster/column_schema": dg.TableSchema(columns=[
                    dg.TableColumn(name=c["name"], type=c["type"], description=f"from {c['attribute']} ({c['descriptor']})")
                    for c in meta.columns]),
                "mixed_types": dg.MetadataValue.json(meta.variants),
                "preview": dg.MetadataValue.md(preview.markdown(10)),
            },
            check_results=[_row_count_check(meta, result.profile.partition_values), key_check],
        )

    return parquet


def _row_count_check(meta: TableMetadata, export_values: set[str]) -> dg.AssetCheckResult:
    export_id = meta.source["export_id"]
    from_export = {v: p for v, p in meta.partitions.items() if p.export_id == export_id}
    missing = sorted(export_values - set(from_export))
    rows = sum(p.rows for p in from_export.values())
    expected = meta.source["item_count"]
    details: dict[str, Any] = {"rows_from_export": rows, "export_item_count": expected}
    if missing:
        details["partitions_not_yet_from_this_export"] = dg.MetadataValue.json(missing)
        return dg.AssetCheckResult(check_name="row_count_matches_export", passed=False,
                                   severity=dg.AssetCheckSeverity.WARN, metadata=details)
    return dg.AssetCheckResult(check_name="row_count_matches_export", passed=rows == expected, metadata=details)


def _keys_check(engine: Any, names: TableNames, meta: TableMetadata, dynamodb: DynamoDBResource) -> dg.AssetCheckResult:
    attributes = names.table.key_attributes or dynamodb.key_attributes(names.table.table)
    columns = []
    for attribute in attributes:
        match = [c["name"] for c in meta.columns if c["path"] == [attribute]]
        if not match:
            return dg.AssetCheckResult(check_name="keys_not_null_and_unique", passed=False,
                                       metadata={"problem": f"key attribute {attribute!r} has no column"})
        columns.append(quote_identifier(match[0]))
    null_test = " OR ".join(f"{c} IS NULL" for c in columns)
    table = engine.table_reference(names.name)
    # Scalar subqueries and SELECT DISTINCT: the portable subset DuckDB and Athena both run.
    result: QueryResult = engine.query(
        f"SELECT (SELECT COUNT(*) FROM {table}) AS total, "
        f"(SELECT COUNT(*) FROM {table} WHERE {null_test}) AS null_keys, "
        f"(SELECT COUNT(*) FROM (SELECT DISTINCT {', '.join(columns)} FROM {table}) keys) AS distinct_keys")
    rows = result.table.to_pylist()
    if not rows:
        return dg.AssetCheckResult(check_name="keys_not_null_and_unique", passed=False,
                                   metadata={"problem": "the query engine returned no result"})
    total, nulls, distinct = (int(rows[0][k]) for k in ("total", "null_keys", "distinct_keys"))
    return dg.AssetCheckResult(check_name="keys_not_null_and_unique", passed=nulls == 0 and distinct == total,
                               metadata={"key_attributes": ", ".join(attributes), "rows": total,
                                         "null_keys": nulls, "duplicate_keys": total - distinct})
