"""IMS access keys: an access key id bound to one project, its secret kept under envelope encryption.

The AccessKeys table holds one item per key. The secret never sits in it in clear: each key gets its own data key
from KMS (GenerateDataKey under the stack's key, with the access key id as encryption context), the secret is
sealed with AES-256-GCM under that data key, and only the encrypted data key is stored beside the sealed secret.
Reading a secret back therefore needs kms:Decrypt on the stack's key, which the template grants to the verifying
API functions alone; the function that creates keys may only generate data keys.

Why a table and not Secrets Manager: the verifier must find a secret by access key id in one read and cache it,
`diskport access-key list` needs each key's project, creation and last use (table attributes, one Scan), revoking
is one conditional update, and a table costs nothing per key while Secrets Manager bills each secret monthly and
each read.

The secret is answered once, by `create`; nothing else returns or logs it.
"""

from __future__ import annotations

import os
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, Field

from diskport.errors import RequestRejectedError
from diskport.settings import Settings, get_settings
from diskport.stores import aws, aws_errors
from diskport.stores.items import now_iso

# Huawei Cloud access keys are 20 upper-case letters and digits, their secrets 40 letters and digits.
ACCESS_KEY_LENGTH = 20
SECRET_KEY_LENGTH = 40
_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_KEY_ALPHABET = string.ascii_letters + string.digits
PROJECT_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")
ENCRYPTION_CONTEXT_KEY = "diskport-access-key"
# A key's last use is written back at most this often, so verification writes nothing on most requests.
LAST_USED_RESOLUTION_SECONDS = 300


class AccessKeyView(BaseModel):
    """What `list` shows of a key: never its secret."""

    access_key: str
    project_id: str
    status: Literal["active", "revoked"]
    created_at: str
    last_used_at: str | None = None
    revoked_at: str | None = None


class AccessKeyList(BaseModel):
    access_keys: list[AccessKeyView]


class NewAccessKeyRequest(BaseModel):
    project_id: str = Field(
        min_length=1, max_length=64, pattern=PROJECT_ID_PATTERN.pattern, description="The project the key signs for."
    )


class CreatedAccessKey(BaseModel):
    """The one answer that carries the secret: the answer to `create`."""

    access_key: str
    secret_key: str
    project_id: str
    created_at: str


@dataclass(frozen=True)
class VerifiableKey:
    """A key as the verifier needs it: its project, whether it may sign, and its secret (in memory only)."""

    access_key: str
    project_id: str
    active: bool
    secret_key: str

    def __repr__(self) -> str:  # a stray log of this object must not print the secret
        return f"VerifiableKey(access_key={self.access_key!r}, project_id={self.project_id!r}, active={self.active})"


class UnknownAccessKeyError(RequestRejectedError):
    def __init__(self, access_key: str) -> None:
        super().__init__("IMG.0404", f"There is no access key {access_key}.")
        self.with_status(404)


def _random_text(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class AccessKeyStore:
    """The AccessKeys table and the stack's KMS key: the only code that reads or writes access keys."""

    def __init__(
        self, settings: Settings | None = None, *, table: Any = None, kms: Any = None, dynamodb: Any = None
    ) -> None:
        self._settings = settings or get_settings()
        self._table = table
        self._kms = kms
        self._dynamodb = dynamodb

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = aws.dynamodb_table(self._settings.access_keys_table)
        return self._table

    @property
    def kms(self) -> Any:
        if self._kms is None:
            self._kms = aws.client("kms")
        return self._kms

    def create(self, project_id: str) -> CreatedAccessKey:
        """A new active key for the project; the only time its secret is answered."""
        if not PROJECT_ID_PATTERN.match(project_id):
            raise RequestRejectedError("IMG.0067", "A project id is 1 to 64 letters, digits or hyphens.")
        access_key = _random_text(_ACCESS_KEY_ALPHABET, ACCESS_KEY_LENGTH)
        secret_key = _random_text(_SECRET_KEY_ALPHABET, SECRET_KEY_LENGTH)
        data_key = self.kms.generate_data_key(
            KeyId=self._settings.access_keys_kms_key,
            KeySpec="AES_256",
            EncryptionContext={ENCRYPTION_CONTEXT_KEY: access_key},
        )
        nonce = os.urandom(12)
        sealed = AESGCM(data_key["Plaintext"]).encrypt(nonce, secret_key.encode("utf-8"), access_key.encode("utf-8"))
        created_at = now_iso()
        self.table.put_item(
            Item={
                "access_key": access_key,
                "project_id": project_id,
                "status": "active",
                "created_at": created_at,
                "encrypted_data_key": data_key["CiphertextBlob"],
                "secret_nonce": nonce,
                "sealed_secret": sealed,
            },
            ConditionExpression="attribute_not_exists(access_key)",
        )
        return CreatedAccessKey(
            access_key=access_key, secret_key=secret_key, project_id=project_id, created_at=created_at
        )

    def list(self) -> list[AccessKeyView]:
        """Every key, oldest first, without secrets."""
        projection = "access_key, project_id, #status, created_at, last_used_at, revoked_at"
        request: dict[str, Any] = {
            "ProjectionExpression": projection,
            "ExpressionAttributeNames": {"#status": "status"},
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self.table.scan(**request)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        views = [AccessKeyView.model_validate(item) for item in items]
        return sorted(views, key=lambda view: (view.created_at, view.access_key))

    def revoke(self, access_key: str) -> AccessKeyView:
        """Disable the key: no request signed with it is accepted any more."""
        try:
            answer = self.table.update_item(
                Key={"access_key": access_key},
                UpdateExpression="SET #status = :revoked, revoked_at = if_not_exists(revoked_at, :now)",
                ConditionExpression="attribute_exists(access_key)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":revoked": "revoked", ":now": now_iso()},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if aws_errors.is_condition_failed(error):
                raise UnknownAccessKeyError(access_key) from None
            raise
        forget_cached_key(access_key)
        item = answer["Attributes"]
        return AccessKeyView.model_validate({name: item.get(name) for name in AccessKeyView.model_fields})

    def verifiable(self, access_key: str) -> VerifiableKey | None:
        """The key with its secret decrypted, for the verifier; None when there is no such key."""
        item = self.table.get_item(Key={"access_key": access_key}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        data_key = self.kms.decrypt(
            CiphertextBlob=bytes(item["encrypted_data_key"]),
            EncryptionContext={ENCRYPTION_CONTEXT_KEY: access_key},
        )["Plaintext"]
        sealed, nonce = bytes(item["sealed_secret"]), bytes(item["secret_nonce"])
        secret = AESGCM(data_key).decrypt(nonce, sealed, access_key.encode("utf-8"))
        return VerifiableKey(
            access_key=access_key,
            project_id=str(item["project_id"]),
            active=item.get("status") == "active",
            secret_key=secret.decode("utf-8"),
        )

    def note_use(self, access_key: str) -> None:
        """Record that the key signed a request that was accepted."""
        self.table.update_item(
            Key={"access_key": access_key},
            UpdateExpression="SET last_used_at = :now",
            ConditionExpression="attribute_exists(access_key)",
            ExpressionAttributeValues={":now": now_iso()},
        )


_last_noted: dict[str, float] = {}


def note_use_when_due(access_key: str, store: AccessKeyStore) -> None:
    """Write the key's last use after an accepted request, at most once per LAST_USED_RESOLUTION_SECONDS here."""
    now = time.monotonic()
    with _cache_lock:
        if now - _last_noted.get(access_key, -LAST_USED_RESOLUTION_SECONDS) < LAST_USED_RESOLUTION_SECONDS:
            return
        if len(_last_noted) >= MAX_CACHED_KEYS:
            _last_noted.clear()
        _last_noted[access_key] = now
    store.note_use(access_key)


# ---------------------------------------------------------------------------------------------- lookup cache
@dataclass
class _Cached:
    key: VerifiableKey | None
    expires: float


_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()
# Bounded: a flood of made-up access key ids must not grow the cache without limit.
MAX_CACHED_KEYS = 1024


def cached_key(access_key: str, store: AccessKeyStore, ttl_seconds: float) -> VerifiableKey | None:
    """The key from this instance's cache, read (and decrypted) again once `ttl_seconds` have passed.

    At steady state a warm function verifies with no DynamoDB or KMS call; unknown ids are cached too, so guessing
    costs no read per guess. A revocation reaches a warm instance within `ttl_seconds`.
    """
    now = time.monotonic()
    with _cache_lock:
        entry = _cache.get(access_key)
        if entry is not None and entry.expires > now:
            return entry.key
    key = store.verifiable(access_key)
    with _cache_lock:
        if len(_cache) >= MAX_CACHED_KEYS:
            _cache.clear()
        _cache[access_key] = _Cached(key, now + ttl_seconds)
    return key


def forget_cached_key(access_key: str | None = None) -> None:
    """Drop one key (or all) from this instance's cache."""
    with _cache_lock:
        if access_key is None:
            _cache.clear()
            _last_noted.clear()
        else:
            _cache.pop(access_key, None)
