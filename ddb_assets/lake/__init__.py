"""The lake: schema inference over every item, flattening, partitioned Parquet and atomic publish.

Plain Python over Arrow: nothing here imports Dagster or boto3.
"""
