"""The on-disk format of DynamoDB exports to S3: manifests, checksums and item decoders.

Plain Python over Arrow: nothing here imports Dagster or boto3 (see docs/architecture.md).
"""
