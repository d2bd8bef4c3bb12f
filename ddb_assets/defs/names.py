"""Asset keys, partition sets and job/sensor names of one configured table, in one place."""


from dataclasses import dataclass

import dagster as dg

from ddb_assets.settings import Settings, TableSettings


@dataclass(frozen=True)
class TableNames:
    settings: Settings
    table: TableSettings

    @property
    def name(self) -> str:
        return self.table.lake_name

    @property
    def group(self) -> str:
        return self.name

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset])

    @property
    def source_key(self) -> dg.AssetKey:
        return self.key("dynamodb_table")

    @property
    def pitr_export_key(self) -> dg.AssetKey:
        return self.key("pitr_export")

    @property
    def incremental_export_key(self) -> dg.AssetKey:
        return self.key("incremental_export")

    @property
    def raw_export_key(self) -> dg.AssetKey:
        return self.key("raw_export")

    @property
    def parquet_key(self) -> dg.AssetKey:
        return self.key("parquet")

    @property
    def export_partitions(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=f"{self.name}__exports")

    @property
    def value_partitions(self) -> dg.DynamicPartitionsDefinition:
        attribute = self.table.partition_by or "all"
        return dg.DynamicPartitionsDefinition(name=f"{self.name}__{attribute}")

    @property
    def reports_job(self) -> str:
        return f"{self.name}_reports_job"

    @property
    def maintenance_job(self) -> str:
        return f"{self.name}_maintenance_job"

    @property
    def lake_path(self) -> str:
        return self.name

    def report_table(self, report: str) -> str:
        """The report's Iceberg table in the lake's namespace."""
        return f"{self.name}_{report}"

    def report_folder(self, report: str) -> str:
        """The report table's location, under the lake root."""
        return f"reports/{self.name}/{report}"
