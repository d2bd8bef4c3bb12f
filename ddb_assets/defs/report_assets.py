"""Report tables: one asset per SQL file in query/reports, written to the lake with a preview."""


import io

import dagster as dg
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ddb_assets.aws.resources import QueryEngineResource, LakeResource
from ddb_assets.defs.names import TableNames
from ddb_assets.exports.storage import Location
from ddb_assets.query.reports import Report, load_reports


def build_report_assets(names: TableNames) -> list[dg.AssetsDefinition]:
    return [_report_asset(names, report) for report in load_reports(names.settings.report_dirs)]


def _report_asset(names: TableNames, report: Report) -> dg.AssetsDefinition:
    @dg.asset(key=names.key(report.name), deps=[names.parquet_key], kinds={"duckdb", "parquet"},
              group_name=names.group, owners=names.table.owners, description=report.description)
    def report_asset(context: dg.AssetExecutionContext, lake: LakeResource,
                     query_engine: QueryEngineResource) -> dg.MaterializeResult:
        engine = query_engine.engine()
        try:
            engine.register_table(names.name, lake.location(names.lake_path))
            sql = report.sql(engine.table_reference(names.name))
            if hasattr(engine, "materialize_report"):  # Athena: CTAS straight into the lake
                folder = lake.location(names.report_folder(report.name))
                outcome = engine.materialize_report(names.name, report.name, sql, folder.uri)
                _remove_other_versions(folder, outcome.location)
                result, rows, uri = outcome.preview, outcome.rows, outcome.location
            else:  # DuckDB: run here, write the Parquet ourselves
                result = engine.query(sql, measure=True)  # records the bytes the engine read
                buffer = io.BytesIO()
                pq.write_table(result.table, buffer, compression="zstd")
                target = lake.location(names.report_path(report.name))
                target.write_bytes(buffer.getvalue())
                rows, uri = result.table.num_rows, target.uri
        finally:
            engine.close()
        context.log.info(f"{report.name}: {rows} rows -> {uri}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "dagster/uri": uri,
            "preview": dg.MetadataValue.md(result.markdown(20)),
            "sql": dg.MetadataValue.md(f"```sql\n{sql.strip()}\n```"),
            **({"bytes_scanned": result.bytes_scanned} if result.bytes_scanned is not None else {}),
        })

    return report_asset


def _remove_other_versions(folder: Location, keep_uri: str) -> None:
    """Superseded CTAS outputs of this report (the Glue table already points at the new one)."""
    keep = keep_uri.rstrip("/").rsplit("/", 1)[-1]
    try:
        entries = folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
    except OSError:
        return
    for entry in entries:
        if entry.base_name == keep:
            continue
        if entry.type == pafs.FileType.Directory:
            folder.fs.delete_dir(entry.path)
        else:
            folder.fs.delete_file(entry.path)
