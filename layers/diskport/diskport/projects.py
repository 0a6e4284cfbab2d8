"""Which project a caller acts for.

Deployed, the HTTP API signs callers in with IAM (SigV4) and the project is the caller's AWS account id:
everyone signing with credentials of one account shares that account's jobs and images, and nobody else
sees them. In local mode (and `sam local`, which performs no IAM auth) every caller is LOCAL_PROJECT_ID.
"""

from __future__ import annotations

from typing import Any

from diskport.errors import DiskportError
from diskport.settings import Settings, get_settings


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


def bucket_owner_for(project_id: str, bucket: str, settings: Settings | None = None) -> str | None:
    """The AWS account that must own `bucket` for this project to import from it: the project itself, deployed.

    The service's role may read every source bucket (the watched bucket, SourceBuckets) for every caller; asking
    S3 to check the bucket's owner (ExpectedBucketOwner) keeps one account from importing another's files
    through the service. A bucket the operator listed in SourceBuckets is read whoever owns it: an HTTP API has
    no resource policy, so every caller signs in with the stack's own account, and a partner's bucket listed
    there would otherwise never import. In local mode there are no accounts: None, no check.
    """
    settings = settings or get_settings()
    if settings.project_id_source == "local" or not (len(project_id) == 12 and project_id.isdigit()):
        return None
    if bucket in settings.source_bucket_names:
        return None
    return project_id
