"""Where the upload trigger records each object version it has imported (Powertools idempotency)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from diskport.stores import aws


def idempotency_store(table_name: str) -> DynamoDBPersistenceLayer:
    """The Idempotency table, through the service's DynamoDB client and its retry policy."""
    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=aws.client("dynamodb"))
