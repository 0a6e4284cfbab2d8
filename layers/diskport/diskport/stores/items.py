"""DynamoDB items as the stores write and read them: numbers, timestamps and update expressions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def now_iso() -> str:
    """A timestamp as IMS writes them: `2024-11-06T06:27:03.742Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decimals(value: Any) -> Any:
    """Floats as the Decimals DynamoDB takes."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: decimals(inner) for key, inner in value.items()}
    return value


def plain(value: Any) -> Any:
    """DynamoDB's Decimals back to ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [plain(inner) for inner in value]
    return value


def set_attributes(assignments: dict[str, Any]) -> dict[str, Any]:
    """The UpdateExpression that sets each attribute to its value, with its name and value placeholders."""
    return {
        "UpdateExpression": "SET " + ", ".join(f"#f{index} = :v{index}" for index in range(len(assignments))),
        "ExpressionAttributeNames": {f"#f{index}": name for index, name in enumerate(assignments)},
        "ExpressionAttributeValues": {f":v{index}": value for index, value in enumerate(assignments.values())},
    }
