"""ddb_assets: DynamoDB point-in-time exports turned into a typed, partitioned Parquet lake.

The package has no import-time side effects; Dagster definitions live in
``ddb_assets.definitions``.
"""

__version__ = "0.1.0"
