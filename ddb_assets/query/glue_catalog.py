"""Register a published table in the AWS Glue Data Catalog, for Athena.

Structured Glue API calls only (no DDL strings), so odd column names or partition values cannot
break or inject into a statement. Each partition points at its current version folder
(``.../year=2015/v<version>/``): updating the partition locations after a publish is what makes a
new version visible to Athena, partition by partition, never half-written.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ddb_assets.lake.publish import TableMetadata

_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                  "Parameters": {"serialization.format": "1"}},
}


def glue_type(kind: pa.DataType) -> str:
    """Arrow type -> Glue/Hive type string."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_int64(kind):
        return "bigint"
    if pa.types.is_int32(kind):
        return "int"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    if pa.types.is_decimal(kind):
        return f"decimal({kind.precision},{kind.scale})"
    if pa.types.is_floating(kind):
        return "double"
    if pa.types.is_list(kind):
        return f"array<{glue_type(kind.value_type)}>"
    if pa.types.is_struct(kind):
        return "struct<" + ",".join(f"{f.name}:{glue_type(f.type)}" for f in kind) + ">"
    if pa.types.is_null(kind):
        return "string"
    raise ValueError(f"no Glue type for Arrow type {kind}")


def _storage(location: str, columns: list[dict[str, str]]) -> dict[str, Any]:
    return {"Columns": columns, "Location": location, **_PARQUET, "Compressed": True,
            "StoredAsSubDirectories": False}


def register_table(glue: Any, database: str, table: str, metadata: TableMetadata, root_uri: str) -> dict[str, Any]:
    """Create or update the Glue table and make its partitions match the published metadata.

    Returns what changed: ``{"created": bool, "added": [...], "updated": [...], "removed": [...]}``.
    """
    try:
        glue.create_database(DatabaseInput={"Name": database})
    except glue.exceptions.AlreadyExistsException:
        pass
    schema = metadata.arrow_schema
    columns = [{"Name": field.name, "Type": glue_type(field.type)} for field in schema]
    partition_keys = []
    if metadata.partition_column:
        partition_keys = [{"Name": metadata.partition_column,
                           "Type": "bigint" if metadata.partition_type == "int64" else "string"}]
    root = root_uri.rstrip("/")
    table_input = {
        "Name": table, "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE",
                       "ddb_assets.version": metadata.version,
                       "ddb_assets.source_export": metadata.source["export_arn"]},
        "StorageDescriptor": _storage(root + "/", columns),
        "PartitionKeys": partition_keys,
    }
    created = False
    try:
        glue.create_table(DatabaseName=database, TableInput=table_input)
        created = True
    except glue.exceptions.AlreadyExistsException:
        # Schema evolution: the table's columns follow the latest publication; every partition is
        # re-pointed below with the same columns, so Athena never sees a partition/table mismatch.
        glue.update_table(DatabaseName=database, TableInput=table_input)
    changes: dict[str, Any] = {"created": created, "added": [], "updated": [], "removed": []}
    if not metadata.partition_column:
        if metadata.partitions:
            [entry] = metadata.partitions.values()
            table_input["StorageDescriptor"] = _storage(f"{root}/{entry.version}/", columns)
            glue.update_table(DatabaseName=database, TableInput=table_input)
        return changes

    existing = {tuple(p["Values"]): p for p in _all_partitions(glue, database, table)}
    wanted = {(value,): entry for value, entry in metadata.partitions.items()}
    to_add = []
    for values, entry in wanted.items():
        storage = _storage(f"{root}/{entry.folder}/{entry.version}/", columns)
        if values not in existing:
            to_add.append({"Values": list(values), "StorageDescriptor": storage})
        elif existing[values]["StorageDescriptor"].get("Location") != storage["Location"] or \
                existing[values]["StorageDescriptor"].get("Columns") != columns:
            glue.update_partition(DatabaseName=database, TableName=table, PartitionValueList=list(values),
                                  PartitionInput={"Values": list(values), "StorageDescriptor": storage})
            changes["updated"].append(values[0])
    for start in range(0, len(to_add), 100):  # BatchCreatePartition takes 100 at a time
        glue.batch_create_partition(DatabaseName=database, TableName=table,
                                    PartitionInputList=to_add[start:start + 100])
    changes["added"] = [p["Values"][0] for p in to_add]
    stale = [list(values) for values in existing if values not in wanted]
    for start in range(0, len(stale), 25):
        glue.batch_delete_partition(DatabaseName=database, TableName=table,
                                    PartitionsToDelete=[{"Values": v} for v in stale[start:start + 25]])
    changes["removed"] = [v[0] for v in stale]
    return changes


def _all_partitions(glue: Any, database: str, table: str) -> list[dict[str, Any]]:
    partitions, token = [], None
    while True:
        page = glue.get_partitions(DatabaseName=database, TableName=table, **({"NextToken": token} if token else {}))
        partitions.extend(page.get("Partitions", []))
        token = page.get("NextToken")
        if not token:
            return partitions
