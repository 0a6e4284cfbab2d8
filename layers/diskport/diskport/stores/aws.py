"""boto3 clients and resources, made once per process with the retry policy the service wants.

Only the stores call these: a store takes its client or table as a parameter and defaults to these, so
tests and local mode can hand in their own. What an error of theirs means is `aws_errors`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# "standard" retries back off with jitter on throttling and 5xx; adaptive mode also rate-limits the
# client itself, which keeps a burst of convert workers under the EBS and S3 request quotas.
CLIENT_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)


@cache
def client(service: str) -> Any:
    config = _SERVICE_CONFIGS.get(service, CLIENT_CONFIG)
    return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]


# EBS direct: a connection for every writer thread of a convert worker (botocore keeps 10 by default).
_SERVICE_CONFIGS = {"ebs": CLIENT_CONFIG.merge(Config(max_pool_connections=64))}


@cache
def dynamodb_table(name: str) -> Any:
    return boto3.session.Session().resource("dynamodb", config=CLIENT_CONFIG).Table(name)


def forget_clients() -> None:
    """Drop the cached clients, for a process whose endpoints or credentials change (tests, local mode)."""
    client.cache_clear()
    dynamodb_table.cache_clear()
