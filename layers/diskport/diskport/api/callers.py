"""Which project a caller acts for.

Deployed, the HTTP API signs callers in with IAM (SigV4) and the project is the caller's AWS account id:
everyone signing with credentials of one account shares that account's jobs and images, and nobody else
sees them. In local mode (and `sam local`, which performs no IAM auth) every caller is LOCAL_PROJECT_ID.
With IMS access keys (PROJECT_ID_SOURCE=access_key) every request carries an AK/SK signature and the project is
the one its access key was made for (`signatures.py`, `diskport.stores.access_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diskport.api.signatures import SignedRequest, verified_project
from diskport.errors import DiskportError
from diskport.settings import Settings, get_settings
from diskport.stores.access_keys import AccessKeyStore, cached_key, note_use_when_due


class UnauthenticatedError(DiskportError):
    code = "IMG.0067"
    http_status = 401


def project_id_of(request_context: dict[str, Any], settings: Settings | None = None) -> str:
    """The project of the caller described by an API Gateway (HTTP API) request context."""
    settings = settings or get_settings()
    if settings.project_id_source == "local":
        return settings.local_project_id
    iam = (request_context.get("authorizer") or {}).get("iam") or {}
    account_id = iam.get("accountId")
    if not account_id:
        raise UnauthenticatedError("The request is not signed with IAM credentials (SigV4).")
    return str(account_id)


def project_of_event(event: Mapping[str, Any], settings: Settings | None = None) -> str:
    """The project of the caller of an API Gateway (HTTP API) event, checking its AK/SK signature in that mode.

    The one check every API route goes through (`resolver.py` runs it before any route): SignatureRejectedError (401)
    for a request whose signature, date, key or project does not stand.
    """
    settings = settings or get_settings()
    if settings.project_id_source != "access_key":
        return project_id_of(dict(event.get("requestContext") or {}), settings)
    store = AccessKeyStore(settings)
    project_id, access_key = verified_project(
        SignedRequest.from_http_api_event(event),
        lambda access_key: cached_key(access_key, store, settings.access_key_cache_seconds),
        max_skew_seconds=settings.signature_max_skew_seconds,
        path_project_id=(event.get("pathParameters") or {}).get("project_id"),
    )
    note_use_when_due(access_key, store)
    return project_id


def operator_of_event(event: Mapping[str, Any], settings: Settings | None = None) -> str:
    """Who calls an operator route (access keys): the IAM principal, or "local" in local mode."""
    settings = settings or get_settings()
    if settings.operator_auth == "open":
        return "local"
    iam = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") or {}
    if not iam.get("accountId"):
        raise UnauthenticatedError("Access keys are managed with IAM credentials (SigV4), not with an access key.")
    return str(iam.get("userArn") or iam["accountId"])
