"""Which account must own a source bucket for a project to import from it."""

from __future__ import annotations

from diskport.settings import Settings


def bucket_owner_for(project_id: str, bucket: str, settings: Settings) -> str | None:
    """The AWS account that must own `bucket` for this project to import from it: the project itself, deployed.

    The service's role may read every source bucket (the watched bucket, SourceBuckets) for every caller; asking
    S3 to check the bucket's owner (ExpectedBucketOwner) keeps one account from importing another's files
    through the service. A bucket the operator listed in SourceBuckets is read whoever owns it: an HTTP API has
    no resource policy, so every caller signs in with the stack's own account, and a partner's bucket listed
    there would otherwise never import. In local mode there are no accounts: None, no check.
    """
    if settings.project_id_source != "iam" or not (len(project_id) == 12 and project_id.isdigit()):
        return None
    if bucket in settings.source_bucket_names:
        return None
    return project_id
