"""AWS clients and Dagster resources for DynamoDB, S3, Glue and Athena.

The same code talks to AWS and to the local world: only the endpoint differs (boto3 honours
``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>``).
"""
