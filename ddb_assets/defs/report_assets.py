"""Report tables: one asset per SQL file in query/reports, written to the lake with a preview."""


import io

import dagster as dg
import pyarrow.parquet as pq

from ddb_assets.aws.resources import QueryEngineResource, LakeResource
from ddb_assets.defs.names import TableNames
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
            result = engine.query(sql, measure=True)  # records the bytes the engine read
        finally:
            engine.close()
        buffer = io.BytesIO()
        pq.write_table(result.table, buffer, compression="zstd")
        target = lake.location(names.report_path(report.name))
        target.write_bytes(buffer.getvalue())
        context.log.info(f"{report.name}: {result.table.num_rows} rows -> {target.uri}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": result.table.num_rows,
            "dagster/uri": target.uri,
            "preview": dg.MetadataValue.md(result.markdown(20)),
            "sql": dg.MetadataValue.md(f"```sql\n{sql.strip()}\n```"),
            **({"bytes_scanned": result.bytes_scanned} if result.bytes_scanned is not None else {}),
        })

    return report_asset
