"""Where convert workers announce themselves, so the PutSnapshotBlock quotas are shared by who actually runs.

A worker's lease in its import lives on the job item, renewed by the same write that counts its progress
(`JobStore.renew_chunk`). An import's lease in the account (its running workers and the rate they claim) lives on
one item of the WriterLeases table, renewed by the import's workers. Both writes answer the item as the store
left it, so each worker sees the others' claims in the order the writes were applied (`rate_control`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from botocore.exceptions import ClientError

from diskport import aws
from diskport.pipeline.rate_control import Lease

ACCOUNT_SCOPE = "account"
IMPORTS = "imports"


def leases_of(items: dict[str, Any]) -> dict[str, Lease]:
    return {name: Lease.from_item(item) for name, item in items.items() if isinstance(item, dict)}


class AccountLeases(Protocol):
    """The account's view of the imports writing snapshot blocks."""

    def renew(self, import_id: str, lease: Lease | None, *, now: float) -> dict[str, Lease]: ...


class AccountLeaseTable:
    """The imports' leases, on the WriterLeases table's item for the account; expired ones are dropped on the way."""

    def __init__(self, table: Any | None = None, table_name: str = "") -> None:
        self._table = table if table is not None else aws.dynamodb_table(table_name)
        self._expired: set[str] = set()

    def renew(self, import_id: str, lease: Lease | None, *, now: float) -> dict[str, Lease]:
        """Renew (or with None, drop) the import's lease; answers every import's lease as the item now holds."""
        names = {"#imports": IMPORTS, "#import": import_id}
        removes = [f"#imports.#gone{index}" for index, _ in enumerate(sorted(self._expired - {import_id}))]
        names.update({f"#gone{index}": name for index, name in enumerate(sorted(self._expired - {import_id}))})
        request: dict[str, Any] = {"Key": {"scope": ACCOUNT_SCOPE}, "ReturnValues": "ALL_NEW"}
        if lease is None:
            removes.append("#imports.#import")
            expression = f"REMOVE {', '.join(removes)}"
        else:
            expression = "SET #imports.#import = :lease" + (f" REMOVE {', '.join(removes)}" if removes else "")
            request["ExpressionAttributeValues"] = {":lease": _decimals(lease.to_item())}
        request.update(UpdateExpression=expression, ExpressionAttributeNames=names)
        try:
            item = self._table.update_item(**request)["Attributes"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ValidationException" or lease is None:
                raise
            # The account's first import: the item (or its map) does not exist yet.
            self._table.update_item(
                Key={"scope": ACCOUNT_SCOPE},
                UpdateExpression="SET #imports = if_not_exists(#imports, :empty)",
                ExpressionAttributeNames={"#imports": IMPORTS},
                ExpressionAttributeValues={":empty": {}},
            )
            item = self._table.update_item(**request)["Attributes"]
        leases = leases_of(_plain(item.get(IMPORTS) or {}))
        self._expired = {name for name, held in leases.items() if held.expires_at <= now}
        return leases


def _decimals(values: dict[str, float | int]) -> dict[str, Decimal | int]:
    return {key: Decimal(str(value)) if isinstance(value, float) else value for key, value in values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    return value
