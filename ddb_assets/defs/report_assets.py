"""Report tables: one asset per SQL file in query/reports, written to the lake's catalog with a preview."""


import dagster as dg

from ddb_assets.aws.resources import LakeResource, QueryEngineResource
from ddb_assets.defs.names import TableNames
from ddb_assets.lake.report_tables import write_report
from ddb_assets.query.reports import Report, load_reports


def build_report_assets(names: TableNames) -> list[dg.AssetsDefinition]:
    return [_report_asset(names, report) for report in load_reports(names.settings.report_dirs)]


def _report_asset(names: TableNames, report: Report) -> dg.AssetsDefinition:
    engine_kind = names.settings.query_engine.kind

    @dg.asset(key=names.key(report.name), deps=[names.parquet_key], kinds={engine_kind, "iceberg"},
              group_name=names.group, owners=names.table.owners, description=report.description)
    def report_asset(context: dg.AssetExecutionContext, lake: LakeResource,
                     query_engine: QueryEngineResource) -> dg.MaterializeResult:
        source = lake.table(names.name)
        if source is None:
            raise dg.Failure(f"the lake table {names.name} has no snapshot yet: materialize {names.parquet_key.to_user_string()} first")
        engine = query_engine.engine()
        try:
            engine.register_table(names.name, source)
            sql = report.sql(engine.table_reference(names.name))
            result = engine.query(sql, measure=True)  # records the bytes the engine read
        finally:
            engine.close()
        name = names.report_table(report.name)
        table = write_report(lake.catalog(), lake.namespace, name, lake.location(names.report_folder(report.name)).uri,
                             result.table, properties={"ddb_assets.report": report.name,
                                                       "ddb_assets.source_table": names.name})
        context.log.info(f"{report.name}: {result.table.num_rows} rows -> {lake.namespace}.{name}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": result.table.num_rows,
            "dagster/uri": table.location(),
            "dagster/table_name": f"{lake.namespace}.{name}",
            "metadata_location": table.metadata_location,
            "source_snapshot_id": str(source.current_snapshot().snapshot_id) if source.current_snapshot() else "",
            "preview": dg.MetadataValue.md(result.markdown(20)),
            "sql": dg.MetadataValue.md(f"```sql\n{sql.strip()}\n```"),
            **({"bytes_scanned": result.bytes_scanned} if result.bytes_scanned is not None else {}),
        })

    return report_asset
