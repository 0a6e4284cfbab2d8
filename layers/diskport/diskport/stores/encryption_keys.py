"""The cmk_id check: the KMS key must exist, be enabled, and be usable by the service."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from diskport.errors import EncryptionKeyError
from diskport.stores import aws, aws_errors


class EncryptionKeys:
    """KMS, for the keys that encrypt the snapshots of `cmk_id` imports."""

    def __init__(self, kms_client: Any | None = None) -> None:
        self._kms = kms_client if kms_client is not None else aws.client("kms")

    def usable_arn(self, cmk_id: str) -> str:
        """The ARN of the key cmk_id names (id, ARN or alias), or the EncryptionKeyError saying why not."""
        return usable_key_arn(cmk_id, self._kms)


def usable_key_arn(cmk_id: str, kms_client: Any) -> str:
    """The ARN of the key cmk_id names (id, ARN or alias), or the EncryptionKeyError saying why not."""
    try:
        metadata = kms_client.describe_key(KeyId=cmk_id)["KeyMetadata"]
    except ClientError as error:
        code = aws_errors.error_code(error)
        if code in ("NotFoundException", "InvalidArnException"):
            raise EncryptionKeyError(f"The KMS key '{cmk_id}' does not exist in this region.") from error
        if code in ("AccessDeniedException", "AccessDenied"):
            raise EncryptionKeyError(
                f"The service may not use the KMS key '{cmk_id}': allow it kms:DescribeKey and kms:CreateGrant.",
                code="IMG.0099",
            ) from error
        raise
    state = str(metadata.get("KeyState", ""))
    if state != "Enabled" or not metadata.get("Enabled", True):
        raise EncryptionKeyError(f"The KMS key '{cmk_id}' is {state or 'not enabled'}; enable it.", code="IMG.0097")
    if (
        metadata.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT"
        or metadata.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT"
    ):
        raise EncryptionKeyError(
            f"The KMS key '{cmk_id}' is not a symmetric encryption key; EBS snapshots need one.", code="IMG.0097"
        )
    return str(metadata["Arn"])
