"""Dagster resources for DynamoDB exports, the lake's storage and the query engine.

dagster-aws has no DynamoDB resource; ``DynamoDBResource`` mirrors ``S3Resource``'s shape. All of
them build clients lazily (nothing is read or connected at definition time) and leave credentials
to the ordinary AWS chain unless ``local_credentials`` is set for the local world.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterator

import boto3
import dagster as dg
from pydantic import Field

from ddb_assets.aws import dynamodb_exports
from ddb_assets.exports.storage import Location, S3Options, resolve
from ddb_assets.lake.catalog import CatalogConfig, load_table, open_catalog
from ddb_assets.query.duckdb_engine import DuckDBEngine
from ddb_assets.query.engine import QueryEngine

LOCAL_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class DynamoDBResource(dg.ConfigurableResource):
    """DynamoDB client plus the PITR-export calls this project needs."""

    region_name: str | None = Field(default=None, description="AWS region (default: the environment's).")
    endpoint_url: str | None = Field(default=None, description="Endpoint override (the local world, LocalStack).")
    local_credentials: bool = Field(default=False, description="Use dummy keys (for the local world only).")

    def get_client(self) -> Any:
        return boto3.client("dynamodb", region_name=self.region_name, endpoint_url=self.endpoint_url,
                            **(LOCAL_KEYS if self.local_credentials else {}))

    def table_arn(self, table: str) -> str:
        return dynamodb_exports.table_arn_of(self.get_client(), table)

    def key_attributes(self, table: str) -> list[str]:
        name = table.rsplit("/", 1)[-1]
        schema = self.get_client().describe_table(TableName=name)["Table"]["KeySchema"]
        return [k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"] != "HASH")]

    def pitr_enabled(self, table: str) -> bool:
        return dynamodb_exports.pitr_enabled(self.get_client(), table.rsplit("/", 1)[-1])

    def enable_pitr(self, table: str) -> None:
        dynamodb_exports.enable_pitr(self.get_client(), table.rsplit("/", 1)[-1])

    def start_export(self, *, table_arn: str, bucket: str, prefix: str | None, export_format: str,
                     export_time: datetime | None = None, client_token: str | None = None,
                     incremental: tuple[datetime, datetime] | None = None,
                     view: str = "NEW_AND_OLD_IMAGES") -> dict[str, Any]:
        return dynamodb_exports.start_export(self.get_client(), table_arn=table_arn, bucket=bucket, prefix=prefix,
                                             export_format=export_format, export_time=export_time,
                                             client_token=client_token, incremental=incremental, view=view)

    def describe_export(self, export_arn: str) -> dict[str, Any]:
        return dynamodb_exports.describe_export(self.get_client(), export_arn)

    def list_exports(self, table_arn: str, page_size: int = 25) -> Iterator[dict[str, Any]]:
        return dynamodb_exports.list_exports(self.get_client(), table_arn, page_size)

    def wait_for_export(self, export_arn: str, *, timeout_seconds: float = 3600,
                        on_poll: Callable[[dict[str, Any], float], None] = lambda d, t: None) -> dict[str, Any]:
        return dynamodb_exports.wait_for_export(self.get_client(), export_arn, timeout_seconds=timeout_seconds,
                                                on_poll=on_poll)


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives: table locations under a local folder or ``s3://bucket/prefix``, and
    the Iceberg catalog that registers them (SQLite, Glue or REST)."""

    root: str = Field(description="Lake root: local path or s3:// URI.")
    region_name: str | None = Field(default=None)
    endpoint_url: str | None = Field(default=None, description="S3 and Glue endpoint override (the local world).")
    local_credentials: bool = Field(default=False)
    catalog_kind: str = Field(default="sql", description="sql, glue or rest.")
    catalog_uri: str | None = Field(default=None, description="sql: SQLAlchemy URI (default <root>/catalog.db); "
                                                              "rest: the endpoint.")
    namespace: str = Field(default="ddb_lake", description="Catalog namespace (the Glue database).")

    def s3_options(self) -> S3Options:
        return S3Options(endpoint_url=self.endpoint_url, region=self.region_name,
                         access_key=LOCAL_KEYS["aws_access_key_id"] if self.local_credentials else None,
                         secret_key=LOCAL_KEYS["aws_secret_access_key"] if self.local_credentials else None)

    def location(self, *parts: str) -> Location:
        return resolve(self.root, self.s3_options()).join(*parts)

    def catalog_config(self) -> CatalogConfig:
        return CatalogConfig(kind=self.catalog_kind, uri=self.catalog_uri, namespace=self.namespace)

    def catalog(self) -> Any:
        """The pyiceberg catalog (opened on each call: cheap, and safe across processes)."""
        return open_catalog(self.catalog_config(), self.location(), self.s3_options())

    def table(self, name: str) -> Any | None:
        """The lake table ``name`` (a pyiceberg Table), or None if it has never been committed.
        A look-up: a SQLite catalog file that does not exist yet is not created by it."""
        return load_table(open_catalog(self.catalog_config(), self.location(), self.s3_options(), lazy=True),
                          self.namespace, name)


class QueryEngineResource(dg.ConfigurableResource):
    """Where SQL over the lake runs: ``engine()`` returns a ``QueryEngine`` (ddb_assets/query)."""

    def engine(self) -> QueryEngine:
        raise NotImplementedError


class DuckDBEngineResource(QueryEngineResource):
    """The embedded query engine: DuckDB over the lake's published tables."""

    database: str = Field(default=":memory:", description="DuckDB database file, or :memory:.")

    def engine(self) -> DuckDBEngine:
        return DuckDBEngine(self.database)


class AthenaEngineResource(QueryEngineResource):
    """Athena over the Glue Data Catalog: tables are registered in Glue after each publication.

    Our own resource because dagster-aws's AthenaClientResource cannot set a region, an endpoint
    or a result location.
    """

    database: str = Field(description="Glue database holding the lake's tables (the catalog namespace).")
    workgroup: str = Field(default="primary")
    output_location: str | None = Field(default=None, description="s3:// URI for results (else the workgroup's).")
    region_name: str | None = Field(default=None)
    endpoint_url: str | None = Field(default=None)
    local_credentials: bool = Field(default=False)
    timeout_seconds: float = Field(default=900, description="Cancel a query still running after this long.")

    def engine(self) -> QueryEngine:
        from ddb_assets.query.athena_lake import AthenaLakeEngine

        def client(service: str) -> Any:
            return boto3.client(service, region_name=self.region_name, endpoint_url=self.endpoint_url,
                                **(LOCAL_KEYS if self.local_credentials else {}))

        return AthenaLakeEngine(athena=client("athena"), glue=client("glue"), database=self.database,
                                workgroup=self.workgroup, output_location=self.output_location,
                                timeout_seconds=self.timeout_seconds)
