"""boto3 clients and resources, made once per process (and per set of credentials) with the service's retry policy.

Only the stores call these: a store takes its client or table as a parameter and defaults to these, so
tests and local mode can hand in their own. What an error of theirs means is `aws_errors`.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# "standard" retries back off with jitter on throttling and 5xx; adaptive mode also rate-limits the
# client itself, which keeps a burst of convert workers under the EBS and S3 request quotas.
CLIENT_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)


# (access key id, secret access key, session token) of the function an invocation runs for, when one process runs
# several functions each as its own role (the in-process test runtime); None, as on Lambda: the environment's.
invocation_credentials: ContextVar[tuple[str, str, str] | None] = ContextVar("invocation_credentials", default=None)


def client(service: str) -> Any:
    credentials = invocation_credentials.get()
    with _MAKING:  # made once, even when threads ask at once: a boto3 session is not thread-safe
        return _client(service, credentials)


@cache
def _client(service: str, credentials: tuple[str, str, str] | None) -> Any:
    config = _SERVICE_CONFIGS.get(service, CLIENT_CONFIG)
    return _session(credentials).client(service, config=config)  # type: ignore[call-overload]


@cache
def _session(credentials: tuple[str, str, str] | None) -> boto3.session.Session:
    if credentials is None:
        return boto3.session.Session()
    key, secret, token = credentials
    return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)


_MAKING = threading.Lock()


# EBS direct: a connection for every writer thread of a convert worker (botocore keeps 10 by default).
_SERVICE_CONFIGS = {"ebs": CLIENT_CONFIG.merge(Config(max_pool_connections=64))}


def dynamodb_table(name: str) -> Any:
    credentials = invocation_credentials.get()
    with _MAKING:
        return _dynamodb_table(name, credentials)


@cache
def _dynamodb_table(name: str, credentials: tuple[str, str, str] | None) -> Any:
    return _dynamodb(credentials).Table(name)


@cache
def _dynamodb(credentials: tuple[str, str, str] | None) -> Any:
    return _session(credentials).resource("dynamodb", config=CLIENT_CONFIG)


def forget_clients() -> None:
    """Drop the cached clients, for a process whose endpoints or credentials change (tests, local mode)."""
    _client.cache_clear()
    _dynamodb_table.cache_clear()
    _dynamodb.cache_clear()
    _session.cache_clear()
