"""Create the sample table and export bucket in a (local or real) AWS account."""

from __future__ import annotations

from typing import Any

from ddb_assets.aws.dynamodb_exports import enable_pitr
from ddb_assets.local.sample_data import PARTITION_KEY, SORT_KEY


def create_reviews_table(client: Any, name: str, *, pitr: bool = True) -> str:
    """Create the reviews-shaped table (on-demand), optionally with PITR on; returns its ARN."""
    arn = client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                   {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                              {"AttributeName": SORT_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )["TableDescription"]["TableArn"]
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if pitr:
        enable_pitr(client, name)
    return str(arn)


def ensure_bucket(client: Any, bucket: str, region: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return
    if region == "us-east-1":
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
