"""The code location: ``workspace.yaml`` points here.

Definitions are built lazily (``@dg.definitions``) from the YAML configuration named by
``$DDB_ASSETS_CONFIG`` (default: the packaged local profile), so nothing is read at import time.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from ddb_assets.aws.resources import (
    AthenaEngineResource,
    DuckDBEngineResource,
    DynamoDBResource,
    LakeResource,
    QueryEngineResource,
)
from ddb_assets.defs.factory import table_definitions
from ddb_assets.settings import Settings, load_settings


def build_resources(settings: Settings) -> dict[str, Any]:
    local = settings.profile == "local"
    aws = settings.aws
    # An AWS profile without a region takes it from the deployment's AWS_REGION, resolved at
    # launch (the UI shows the variable's name, never a value).
    region: Any = aws.region if aws.region else dg.EnvVar("AWS_REGION")
    engine = settings.query_engine
    if engine.kind == "athena":
        query_engine: QueryEngineResource = AthenaEngineResource(
            database=settings.catalog.namespace, workgroup=engine.workgroup, output_location=engine.output_location,
            region_name=region, endpoint_url=aws.endpoint_url, local_credentials=local)
    else:
        query_engine = DuckDBEngineResource(database=engine.database)
    return {
        "dynamodb": DynamoDBResource(region_name=region, endpoint_url=aws.endpoint_url, local_credentials=local),
        "s3": S3Resource(region_name=region, endpoint_url=aws.endpoint_url,
                         **({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"} if local else {})),
        "lake": LakeResource(root=settings.lake_root, region_name=region, endpoint_url=aws.endpoint_url,
                             local_credentials=local, catalog_kind=settings.catalog.kind,
                             catalog_uri=settings.catalog.uri, namespace=settings.catalog.namespace),
        "query_engine": query_engine,
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    per_table = [table_definitions(settings, table) for table in settings.tables]
    # Locally every step runs in the run's own process: the multiprocess default starts a Python
    # process per step (seconds each, importing Dagster and the lake), which dominated the local
    # world's small runs. Conversions still use their own worker processes (lake/convert.py).
    executor = dg.in_process_executor if settings.profile == "local" else None
    return dg.Definitions.merge(*per_table, dg.Definitions(resources=build_resources(settings), executor=executor))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_settings())
