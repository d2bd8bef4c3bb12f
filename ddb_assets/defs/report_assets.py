"""Report tables: one asset per SQL file in query/reports, written to the lake with a preview."""


import io

import dagster as dg
import pyarrow.parquet as pq

from ddb_assets.aws.resources import DuckDBEngineResource, LakeResource
from ddb_assets.defs.names import TableNames
from ddb_assets.query.duckdb_engine import quote_identifier
from ddb_assets.query.reports import Report, load_reports


def build_report_assets(names: TableNames) -> list[dg.AssetsDefinition]:
    return [_report_asset(names, report) for report in load_reports()]


def _report_asset(names: TableNames, report: Report) -> dg.AssetsDefinition:
    @dg.asset(key=names.key(report.name), deps=[names.parquet_key], kinds={"duckdb", "parquet"},
              group_name=names.group, description=report.description)
    def report_asset(context: dg.AssetExecutionContext, lake: LakeResource,
                     query_engine: DuckDBEngineResource) -> dg.MaterializeResult:
        engine = query_engine.engine()
        try:
            engine.register_table(names.name, lake.location(names.lake_path))
            result = engine.query(report.sql(quote_identifier(names.name)))
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
            "sql": dg.MetadataValue.md(f"```sql\n{report.sql(quote_identifier(names.name)).strip()}\n```"),
        })

    return report_asset
