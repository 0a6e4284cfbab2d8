"""Where moto differs from AWS in a way diskport depends on, local mode puts it right.

DynamoDB transactions: AWS runs a transaction in isolation. moto runs one by deep-copying the tables it touches
and, when any condition fails, putting the copies back: a write that another thread made to those tables in the
meantime is lost. diskport refuses an import beyond a project's limit with exactly such a failing transaction,
while other functions update jobs, so local mode makes moto's DynamoDB writes take turns.

DynamoDB applies each request to an item atomically. moto writes an item, then serializes it for the answer
outside any lock: a second writer of the same item (convert workers renewing their leases on the job item, each
in its own map entry) changes the item's maps under that serialization, which fails with "dictionary changed
size during iteration". So every DynamoDB request is answered whole, one at a time, from parsing to answer.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_DYNAMODB_WRITES = threading.RLock()
_WRITE_METHODS = ("put_item", "update_item", "delete_item", "transact_write_items")


def serialize_dynamodb_writes() -> None:
    """Make moto's DynamoDB requests, item writes and transactions run one at a time (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    for name in _WRITE_METHODS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "serialized_by_diskport", False):
            continue
        setattr(DynamoDBBackend, name, _one_at_a_time(original))
    if not getattr(DynamoHandler.call_action, "serialized_by_diskport", False):
        DynamoHandler.call_action = _one_at_a_time(DynamoHandler.call_action)  # type: ignore[method-assign]


def _one_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _DYNAMODB_WRITES:
            return method(*args, **kwargs)

    serialized.serialized_by_diskport = True  # type: ignore[attr-defined]
    return serialized
