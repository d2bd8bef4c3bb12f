"""The code location: ``workspace.yaml`` points here.

Definitions are built lazily (``@dg.definitions``) from the YAML configuration named by
``$DDB_ASSETS_CONFIG`` (default: the packaged local profile), so nothing is read at import time.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from ddb_assets.aws.resources import DuckDBEngineResource, DynamoDBResource, LakeResource
from ddb_assets.defs.factory import table_definitions
from ddb_assets.settings import Settings, load_settings


def build_resources(settings: Settings) -> dict[str, Any]:
    local = settings.profile == "local"
    aws = settings.aws
    if settings.query_engine.kind != "duckdb":
        raise NotImplementedError("the athena query engine is not wired into the Dagster definitions yet; "
                                  "use query_engine.kind: duckdb")
    return {
        "dynamodb": DynamoDBResource(region_name=aws.region, endpoint_url=aws.endpoint_url, local_credentials=local),
        "s3": S3Resource(region_name=aws.region, endpoint_url=aws.endpoint_url,
                         **({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"} if local else {})),
        "lake": LakeResource(root=settings.lake_root, region_name=aws.region, endpoint_url=aws.endpoint_url,
                             local_credentials=local),
        "query_engine": DuckDBEngineResource(database=settings.query_engine.database),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    per_table = [table_definitions(settings, table) for table in settings.tables]
    return dg.Definitions.merge(*per_table, dg.Definitions(resources=build_resources(settings)))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_settings())
