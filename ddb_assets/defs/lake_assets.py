"""The lake table: the latest valid export, flattened into an Iceberg table, partitioned by the
partition attribute's values (one Dagster partition per Iceberg partition)."""


import warnings
from typing import Any

import dagster as dg
from pydantic import Field

from ddb_assets.aws.resources import DynamoDBResource, LakeResource, QueryEngineResource
from ddb_assets.defs.export_assets import (ValidatedExport, failed_validations, latest_valid_export, locate_export,
                                          validated_exports)
from ddb_assets.defs.names import TableNames
from ddb_assets.defs.runners import with_pipes_launchers
from ddb_assets.lake.commit import current_result, high_water_mark, instant
from ddb_assets.lake.convert import ConvertResult, convert_export, stored_schema
from ddb_assets.lake.record import FULL, SUMMARY_PREFIX, lineage
from ddb_assets.lake.schema import Column
from ddb_assets.lake.saved_profiles import load_profile
from ddb_assets.lake.staging import StagingStale, commit_staged, discard_superseded, load_staged
from ddb_assets.lake.tables import partition_rows
from ddb_assets.query.engine import QueryEngine
from ddb_assets.query.result import QueryResult, quote_identifier


class LakeTableConfig(dg.Config):
    """Run configuration of a lake table materialization."""

    rebuild: bool = Field(default=False, description="Re-plan the table's schema from scratch (new field ids) and "
                                                     "replace every data file with the latest valid full export's, "
                                                     "in one commit; then merge again, in window order and in the "
                                                     "same run, the valid incremental exports after it, so the "
                                                     "table ends at the same high-water mark, re-planned.")


def build_parquet(names: TableNames) -> dg.AssetsDefinition:
    row_count = dg.AssetCheckSpec("row_count_matches_export", asset=names.parquet_key,
                                  description="Rows committed from the export equal its itemCount.")
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
        # A new export (a new raw_export partition) makes every partition stale: one backfill of all;
        # but only once it passed validation (raw_export's blocking check).
        automation_condition=(dg.AutomationCondition.eager()
                              & dg.AutomationCondition.all_deps_blocking_checks_passed()).with_label(
            "eager, once the export passed validation"),
        kinds={"iceberg", "parquet"}, group_name=names.group, owners=names.table.owners,
        check_specs=[row_count, keys],
        description=f"`{names.table.table}` as an Apache Iceberg table of typed, flattened Parquet, partitioned by "
                    f"`{names.table.partition_by}`: the latest export that passed validation, converted and "
                    "committed as one snapshot.",
    )
    def parquet(context: dg.AssetExecutionContext, config: LakeTableConfig, dynamodb: DynamoDBResource,
                lake: LakeResource, query_engine: QueryEngineResource) -> dg.MaterializeResult:
        # Never the last partition as such: an export that failed validation is passed over.
        valid = latest_valid_export(context.instance, names)
        if valid.export_id is None:
            raise dg.Failure(f"no export of {names.table.table} has passed validation yet ("
                             + ("; ".join(f"{k}: {v}" for k, v in valid.passed_over.items()) or "none registered")
                             + "): materialize raw_export for a completed export first")
        if valid.passed_over:
            context.log.warning(f"latest valid export: {valid.describe()}")
        selected = frozenset(context.partition_keys)
        everything = frozenset(names.value_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
        whole = selected >= everything or config.rebuild
        location = lake.location(names.lake_path)
        current = lake.table(names.name)
        validated = validated_exports(context.instance, names)
        chain = exports_to_apply(validated, current, config.rebuild)
        if not chain:
            # Nothing newer than what the table holds: a backfill converts the latest full export
            # again, unless incremental exports (or a newer export) brought the table past it.
            latest_full = next((e for e in reversed(validated) if not e.incremental), None)
            mark, held = high_water_mark(current) if current is not None else (None, None)
            if latest_full is None or (mark is not None and instant(mark) > instant(latest_full.export_time)):
                if held:  # staged conversions of older exports will never be committed now
                    discard_superseded(location, held, lake.s3_options())
                # Nothing to do is a success, whatever partitions were asked for: they hold the
                # newest state; converting the older full export into some of them would undo
                # the windows' changes there (rebuild: true re-converts the whole table).
                return _up_to_date(context, names, current, latest_full, dynamodb, query_engine, valid.describe(),
                                   validated)
            chain = [latest_full]
        if any(e.incremental for e in chain) and not whole:
            raise dg.Failure(f"incremental export(s) {', '.join(e.export_id for e in chain if e.incremental)} change "
                             f"the whole table: materialize every partition of {names.parquet_key.to_user_string()} "
                             f"(automation does)")
        results: list[ConvertResult] = []
        for position, export in enumerate(chain):
            uri, _ = locate_export(names, dynamodb, export.export_id)
            # raw_export read this export already: it staged the data files (and an incremental
            # export's change keys), or saved its profile (the schema planned up front: one pass).
            staged = load_staged(location, export.export_id)
            known = load_profile(location, export.export_id)
            context.log.info(f"{'merging' if export.incremental else 'converting'} export {export.export_id} into "
                             f"{location.uri}" + (f" (window {export.export_from_time} to {export.export_to_time})"
                                                  if export.incremental else
                                                  f": {'all' if whole else len(selected)} partition(s)")
                             + ((", merging the upserts and change keys raw_export staged" if export.incremental
                                 else ", committing the data files raw_export staged") if staged is not None else
                                ", in one pass from raw_export's profile" if known is not None else
                                ", in two stages (no saved profile of this export)"))
            options = names.settings.convert_options(
                names.table, s3=lake.s3_options(), catalog=lake.catalog_config(),
                rebuild=config.rebuild and position == 0,
                allow_overlap=names.table.incremental.allow_overlap if names.table.incremental else False,
                merge_mode=names.table.incremental.merge_mode if names.table.incremental else None,
                only_partitions=None if whole or export.incremental else selected)
            # Glue and EMR Serverless job runs followed by dagster-aws's Pipes clients: the jobs'
            # messages reach this run.
            options = with_pipes_launchers(context, options)
            progress = lambda kind, info: context.log.debug(f"{kind}: {info}")  # noqa: E731
            try:
                result = None
                if staged is not None:
                    try:
                        result = commit_staged(staged, location.uri, options, progress)
                    except StagingStale as stale:
                        context.log.warning(f"{stale}; reading export {export.export_id} again")
                results.append(result or convert_export(uri, location.uri, options, known=known, progress=progress))
            except Exception as exc:
                blocked = [e.export_id for e in chain[position + 1:]]
                applied = [r.export.export_id for r in results]
                raise dg.Failure(
                    f"export {export.export_id} could not be applied: {exc}"
                    + _failed_in_the_gap(exc, failed_validations(context.instance, names), current)
                    + (f"; applied before it: {', '.join(applied)}" if applied else "")
                    + (f"; waiting behind it: {', '.join(blocked)}" if blocked else ""),
                    metadata={"failed_export": export.export_id, "applied": dg.MetadataValue.json(applied),
                              "blocked": dg.MetadataValue.json(blocked)}) from exc
            for warning in (results[-1].merge.warnings if results[-1].merge else []):
                context.log.warning(warning)
            if results[-1].history_error:
                # The merge is committed; the next run appends what the history lacks (later
                # windows wait, so the history stays in window order).
                blocked = [e.export_id for e in chain[position + 1:]]
                raise dg.Failure(results[-1].history_error + (f"; waiting behind it: {', '.join(blocked)}"
                                                               if blocked else ""),
                                 metadata={"failed_export": export.export_id,
                                           "blocked": dg.MetadataValue.json(blocked)})
        result = results[-1]
        export_id = result.export.export_id
        # Exports older than what the table now holds are never applied: their staged files go.
        discard_superseded(location, max(r.export.export_id for r in results), lake.s3_options())
        table = result.commit.table
        rows_now = partition_rows(table)
        for partition in context.partition_keys:
            # Each partition's event carries its own rows (not the whole table's).
            context.add_asset_metadata({"dagster/row_count": rows_now.get(partition, 0)}, partition_key=partition)
        preview, key_check = _preview_and_keys(query_engine, names, table, result.plan.columns, dynamodb)
        written = result.partitions
        commit = result.commit
        unchanged = all(r.unchanged for r in results)
        return dg.MaterializeResult(
            metadata={
                **({"up_to_date": f"{names.name} is up to date: it holds export {export_id} "
                                  f"({result.export.summary.export_time}) already, so nothing was converted and no "
                                  f"snapshot was made. Run config rebuild: true converts it again."}
                   if unchanged else {}),
                "table_rows": commit.rows,
                "rows_written": sum(p["rows"] for p in written.values()),
                "rows_per_partition": dg.MetadataValue.md(
                    "| partition | rows | bytes | files |\n|---|---|---|---|\n" + "\n".join(
                        f"| {v} | {p['rows']:,} | {p['bytes']:,} | {p['files']} |" for v, p in written.items())),
                "files_added": commit.added,  # data and position-delete files, as `ddb-assets history` counts
                "delete_files_added": commit.delete_files,
                "files_replaced": commit.removed,
                "snapshot_id": str(commit.snapshot_id),
                "metadata_location": commit.metadata_location,
                "source_export": result.export.summary.export_arn,
                "export_id": export_id,
                "exports_applied": dg.MetadataValue.json([r.export.export_id for r in results]),
                "high_water_mark": high_water_mark(table)[0] or "",
                "merged": dg.MetadataValue.json([{"export_id": r.export.export_id, "upserts": r.merge.upserts,
                                                  "deletes": r.merge.deletes, "deletes_missing": r.merge.deletes_missing,
                                                  "files_rewritten": r.merge.files_rewritten,
                                                  "merge_mode": r.merge.merge_mode,
                                                  "delete_files": r.merge.delete_files}
                                                 for r in results if r.merge is not None]),
                "history_appended": dg.MetadataValue.json([{"export_id": export_id_, "changes": rows}
                                                            for r in results if r.history is not None
                                                            for export_id_, rows in r.history.appended]),
                "latest_valid_export": valid.describe(),
                "export_time": result.export.summary.export_time or "",
                "schema_changes": dg.MetadataValue.json(commit.schema_changes),
                "vanished_attributes": dg.MetadataValue.json(result.plan.vanished),
                "conversion": f"none: the table holds export {export_id} already (run config rebuild: true "
                              f"converts it again)" if result.unchanged else
                              f"read by raw_export, not here: its staged "
                              f"{'upserts and change keys merged' if result.merge else 'data files committed'} "
                              f"({result.path})" if result.staged else result.path,
                "scratch_bytes": result.scratch_bytes,
                "json_parse": result.parse_path,
                "dagster/uri": result.location,
                "dagster/table_name": result.table,
                "dagster/column_schema": _column_schema(result.plan.columns),
                "mixed_types": dg.MetadataValue.json(result.plan.variants),
                "preview": dg.MetadataValue.md(preview.markdown(10)),
            },
            check_results=[_row_count_check(result, whole, rows_now), key_check],
        )

    return parquet


def _up_to_date(context: dg.AssetExecutionContext, names: TableNames, table: Any,
                latest_full: ValidatedExport | None, dynamodb: DynamoDBResource,
                query_engine: QueryEngineResource, latest_valid: str,
                validated: list[ValidatedExport]) -> dg.MaterializeResult:
    """A run with nothing to apply: the table is past the latest valid full export (windows merged
    on top of it, or a newer export committed outside this Dagster instance). Succeeds with no
    snapshot; the checks are evaluated on the table as it is. ``validated``: this instance's valid
    exports, oldest first (the newest one, when the table's mark is later than its time, is named
    as passed over)."""
    mark, held = high_water_mark(table)
    summaries = list(lineage(table))
    base = next((s for s in reversed(summaries) if s.get(f"{SUMMARY_PREFIX}export-type", FULL) == FULL
                 and s.get(f"{SUMMARY_PREFIX}export-id")), {})
    base_id = base.get(f"{SUMMARY_PREFIX}export-id")
    if base_id and base_id != held:
        holding = f"export {held}, applied after full export {base_id}"
    elif latest_full is not None:
        holding = f"export {held}, newer than {latest_full.export_id}, the latest valid full export here"
    else:
        holding = f"export {held}; no full export here has passed validation"
    newest = validated[-1] if validated else None
    # The mark can be ahead of every export made now (`demo --incremental`'s clock runs ahead, or a
    # clock was wrong): then the newest valid export is older than what the table holds.
    passed_over = (f" The newest validated export, {newest.export_id} (changes up to {newest.mark}), was passed "
                   f"over: it is older than the table's mark {mark}; exports are applied again once they are "
                   f"later than {mark}." if newest is not None and newest.export_id != held and newest.mark and mark
                   and instant(newest.mark) < instant(mark) else "")
    text = (f"{names.name} is up to date: it holds changes up to {mark} ({holding}); no export newer than that has "
            f"passed validation, so nothing was converted and no snapshot was made.{passed_over} Run config "
            f"rebuild: true converts the latest valid full export again and merges the windows after it.")
    context.log.info(text)
    rows_now = partition_rows(table)
    for partition in context.partition_keys:
        context.add_asset_metadata({"dagster/row_count": rows_now.get(partition, 0)}, partition_key=partition)
    commit = current_result(table)
    stored = stored_schema(table)
    planned = stored.columns if stored is not None else []
    preview, key_check = _preview_and_keys(query_engine, names, table, planned, dynamodb)
    rows: dict[str, Any] = {"table_rows": commit.rows, "held_export": held or "", "applied_this_run": "nothing"}
    if base_id and base_id == held:  # the table is one full export: its rows are that export's items
        expected = int(base.get(f"{SUMMARY_PREFIX}item-count") or 0)
        rows["export_item_count"] = expected
        row_check = dg.AssetCheckResult(check_name="row_count_matches_export", passed=commit.rows == expected,
                                        metadata=rows)
    else:  # windows merged on top: the rows are the full export's changed by them, no export's count
        row_check = dg.AssetCheckResult(check_name="row_count_matches_export", passed=True, metadata=rows)
    return dg.MaterializeResult(
        metadata={
            "up_to_date": text,
            "table_rows": commit.rows,
            "files_added": 0,
            "delete_files_added": 0,
            "files_replaced": 0,
            "snapshot_id": str(commit.snapshot_id),
            "metadata_location": commit.metadata_location,
            "export_id": held or "",
            "exports_applied": dg.MetadataValue.json([]),
            "high_water_mark": mark or "",
            "latest_valid_export": latest_valid,
            "conversion": "none: up to date",
            "dagster/uri": table.location(),
            "dagster/table_name": ".".join(table.name()),
            "dagster/column_schema": _column_schema(planned),
            "preview": dg.MetadataValue.md(preview.markdown(10)),
        },
        check_results=[row_check, key_check],
    )


def _column_schema(planned: list[Column]) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name=c.name, type=str(c.type_), description=f"from {c.attribute} ({c.descriptor}), field id "
                                                                   f"{c.field_id}")
        for c in planned])


def _failed_in_the_gap(exc: Exception, failed: dict[str, str], table: Any) -> str:
    """For a window refused for a gap: the exports started after the table's mark that failed
    validation (the gap's window is most likely among them: exported, but invalid), so the
    message leads to the bad file rather than to exporting the window again."""
    from ddb_assets.aws.dynamodb_exports import export_started_ms
    from ddb_assets.lake.guards import ChainError

    if not isinstance(exc, ChainError) or "are missing" not in str(exc) or table is None:
        return ""
    table.refresh()
    mark = high_water_mark(table)[0]
    if mark is None:
        return ""
    after = instant(mark) * 1000
    since = [f"{export_id} ({why})" for export_id, why in sorted(failed.items())
             if (export_started_ms(export_id) or 0) > after]
    return (f"; exported since the mark but invalid (fix or export the window again): {'; '.join(since)}"
            if since else "")


def exports_to_apply(validated: list[ValidatedExport], table: Any, rebuild: bool = False) -> list[ValidatedExport]:
    """The valid exports the table has not applied yet, in the order to apply them: the newest full
    export newer than the table's high-water mark (it replaces the table), then every incremental
    export ending after the mark it leaves, in window order. A gap among them is found by the merge
    (ChainError), which stops the chain there: later windows wait. ``rebuild``: the newest full
    export whatever the mark, then every incremental export after it, applied or not (the rebuild
    replaces the state that held them: lake/record.py ``lineage``)."""
    from ddb_assets.lake.guards import applied_exports

    mark = high_water_mark(table)[0] if table is not None and not rebuild else None
    newest_full = next((e for e in reversed(validated) if not e.incremental and e.export_time
                        and (mark is None or instant(e.export_time) > instant(mark))), None)
    chain = [newest_full] if newest_full is not None else []
    base = newest_full.export_time if newest_full is not None else mark
    if base is None:
        return chain
    incremental = [e for e in validated if e.incremental and e.export_to_time
                   and instant(e.export_to_time) > instant(base)]
    if incremental and table is not None and not rebuild:
        applied = applied_exports(table)  # one walk of the table's chain for them all
        incremental = [e for e in incremental if e.export_id not in applied]
    return chain + sorted(incremental, key=lambda e: (instant(e.export_from_time), e.export_id))


def _row_count_check(result: ConvertResult, whole: bool, rows_now: dict[str, int]) -> dg.AssetCheckResult:
    if result.export.summary.incremental:  # its lines are changes, not the table's rows
        merge = result.merge  # None: the table had applied it already
        return dg.AssetCheckResult(check_name="row_count_matches_export", passed=True, metadata={
            "merged_export": result.export.export_id, "upserts": merge.upserts if merge else 0,
            "deletes": merge.deletes if merge else 0, "table_rows": result.commit.rows})
    expected = result.export.summary.item_count
    # An export the table held already was not read again: the table's rows are that export's.
    written = result.commit.rows if result.unchanged else sum(w.rows for w in result.written)
    details: dict[str, Any] = {"rows_from_export": written, "export_item_count": expected,
                               "table_rows": result.commit.rows}
    if not whole:  # a partial backfill: the other partitions still hold an earlier export's rows
        details["partitions_not_rewritten"] = dg.MetadataValue.json(sorted(set(rows_now) - set(result.partitions)))
        return dg.AssetCheckResult(check_name="row_count_matches_export", passed=False,
                                   severity=dg.AssetCheckSeverity.WARN, metadata=details)
    return dg.AssetCheckResult(check_name="row_count_matches_export", passed=written == expected, metadata=details)


def _preview_and_keys(query_engine: QueryEngineResource, names: TableNames, table: Any, planned: list[Column],
                      dynamodb: DynamoDBResource) -> tuple[QueryResult, dg.AssetCheckResult]:
    """The table's first 10 rows and its keys check, read through the query engine."""
    engine = query_engine.engine()
    try:
        engine.register_table(names.name, table)
        preview = engine.query(f"SELECT * FROM {engine.table_reference(names.name)} LIMIT 10")
        return preview, _keys_check(engine, names, planned, dynamodb)
    finally:
        engine.close()


def _keys_check(engine: QueryEngine, names: TableNames, planned: list[Column],
                dynamodb: DynamoDBResource) -> dg.AssetCheckResult:
    attributes = names.table.key_attributes or dynamodb.key_attributes(names.table.table)
    columns = []
    for attribute in attributes:
        match = [c.name for c in planned if c.path == (attribute,) and c.encoding != "time"]
        if not match:
            return dg.AssetCheckResult(check_name="keys_not_null_and_unique", passed=False,
                                       metadata={"problem": f"key attribute {attribute!r} has no column"})
        columns.append(quote_identifier(match[0]))
    null_test = " OR ".join(f"{c} IS NULL" for c in columns)
    table = engine.table_reference(names.name)
    # Scalar subqueries and SELECT DISTINCT: the portable subset DuckDB and Athena both run.
    answer: QueryResult = engine.query(
        f"SELECT (SELECT COUNT(*) FROM {table}) AS total, "
        f"(SELECT COUNT(*) FROM {table} WHERE {null_test}) AS null_keys, "
        f"(SELECT COUNT(*) FROM (SELECT DISTINCT {', '.join(columns)} FROM {table}) keys) AS distinct_keys")
    rows = answer.table.to_pylist()
    if not rows:
        return dg.AssetCheckResult(check_name="keys_not_null_and_unique", passed=False,
                                   metadata={"problem": "the query engine returned no result"})
    total, nulls, distinct = (int(rows[0][k]) for k in ("total", "null_keys", "distinct_keys"))
    return dg.AssetCheckResult(check_name="keys_not_null_and_unique", passed=nulls == 0 and distinct == total,
                               metadata={"key_attributes": ", ".join(attributes), "rows": total,
                                         "null_keys": nulls, "duplicate_keys": total - distinct})
