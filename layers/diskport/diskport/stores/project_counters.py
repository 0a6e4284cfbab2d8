"""The Projects table's counters, changed inside the DynamoDB transactions that write what they count.

Flow control counts each project's imports under way (`imports_under_way`, jobs.py); the image quota counts its
images that count against the quota (`images_counted`, images.py). Each change is a transaction item placed beside
the write of the job or image, so the count and what it counts are written together or not at all, and concurrent
requests can never pass a limit between a count and a write.
"""

from __future__ import annotations

from typing import Any


def increment_below(table_name: str, project_id: str, counter: str, limit: int) -> dict[str, Any]:
    """The transaction item adding one to `counter`; its condition fails when the counter is at `limit` already."""
    return {
        "Update": {
            "TableName": table_name,
            "Key": {"project_id": project_id},
            "UpdateExpression": "ADD #counter :one",
            "ConditionExpression": "attribute_not_exists(#counter) OR #counter < :limit",
            "ExpressionAttributeNames": {"#counter": counter},
            "ExpressionAttributeValues": {":one": 1, ":limit": limit},
        }
    }


def decrement(table_name: str, project_id: str, counter: str) -> dict[str, Any]:
    """The transaction item taking one from `counter`."""
    return {
        "Update": {
            "TableName": table_name,
            "Key": {"project_id": project_id},
            "UpdateExpression": "ADD #counter :minus_one",
            "ExpressionAttributeNames": {"#counter": counter},
            "ExpressionAttributeValues": {":minus_one": -1},
        }
    }
