"""Where convert workers announce themselves, so the PutSnapshotBlock quotas are shared by who actually runs.

A worker's lease in its import lives on the job item, renewed by the same write that counts its progress
(`JobStore.renew_chunk`). An import's lease in the account (its running workers and the rate they claim) lives on
one item of the WriterLeases table, renewed by the import's workers. Both writes answer the item as the store
left it, so each worker sees the others' claims in the order the writes were applied (`rate_control`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from diskport.stores import aws, aws_errors
from diskport.stores.items import decimals, plain

ACCOUNT_SCOPE = "account"
IMPORTS = "imports"


@dataclass(frozen=True)
class Lease:
    """A holder's announcement: `weight` writers claiming `rate` requests/s, written at `renewed_at`, alive until
    `expires_at`; the holder first announced itself at `since`."""

    rate: float
    expires_at: float
    weight: int = 1
    since: float = 0.0
    renewed_at: float = 0.0

    def to_item(self) -> dict[str, float | int]:
        return {
            "rate": round(self.rate, 3),
            "expires_at": round(self.expires_at, 3),
            "weight": self.weight,
            "since": round(self.since, 3),
            "renewed_at": round(self.renewed_at, 3),
        }

    @classmethod
    def from_item(cls, item: Mapping[str, object]) -> Lease:
        def number(name: str, default: float = 0.0) -> float:
            return float(str(item.get(name, default)))

        return cls(
            rate=number("rate"),
            expires_at=number("expires_at"),
            weight=int(number("weight", 1)),
            since=number("since"),
            renewed_at=number("renewed_at"),
        )


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
            request["ExpressionAttributeValues"] = {":lease": decimals(lease.to_item())}
        request.update(UpdateExpression=expression, ExpressionAttributeNames=names)
        try:
            item = self._table.update_item(**request)["Attributes"]
        except ClientError as error:
            if aws_errors.error_code(error) != "ValidationException" or lease is None:
                raise
            # The account's first import: the item (or its map) does not exist yet.
            self._table.update_item(
                Key={"scope": ACCOUNT_SCOPE},
                UpdateExpression="SET #imports = if_not_exists(#imports, :empty)",
                ExpressionAttributeNames={"#imports": IMPORTS},
                ExpressionAttributeValues={":empty": {}},
            )
            item = self._table.update_item(**request)["Attributes"]
        leases = leases_of(plain(item.get(IMPORTS) or {}))
        self._expired = {name for name, held in leases.items() if held.expires_at <= now}
        return leases
