"""The service's settings: one pydantic model, read from the environment once.

Nothing else in diskport reads `os.environ`. The template (or local mode) sets these variables.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    jobs_table: str = Field("diskport-jobs", alias="JOBS_TABLE")
    images_table: str = Field("diskport-images", alias="IMAGES_TABLE")
    projects_table: str = Field("diskport-projects", alias="PROJECTS_TABLE")
    state_machine_arn: str = Field("", alias="STATE_MACHINE_ARN")
    work_bucket: str = Field("", alias="WORK_BUCKET")
    watched_bucket: str = Field("", alias="WATCHED_BUCKET")
    idempotency_table: str = Field("", alias="IDEMPOTENCY_TABLE")
    # The SourceBuckets parameter, comma separated: buckets the operator chose to read, whoever owns them.
    source_buckets: str = Field("", alias="SOURCE_BUCKETS")
    max_active_jobs: int = Field(40, alias="MAX_ACTIVE_JOBS", ge=1)
    max_private_images: int = Field(50, alias="MAX_PRIVATE_IMAGES", ge=1)
    # "iam": the project is the AWS account of the SigV4-signed caller (deployed, IAM auth).
    # "local": every caller is LOCAL_PROJECT_ID (local mode, sam local).
    # "access_key": every request carries an IMS AK/SK signature; the project is the access key's (`api/signatures.py`).
    project_id_source: Literal["iam", "local", "access_key"] = Field("iam", alias="PROJECT_ID_SOURCE")
    local_project_id: str = Field("0123456789abcdef0123456789abcdef", alias="LOCAL_PROJECT_ID")
    # The project that owns imports started by uploads to the watched bucket (the stack's account).
    upload_project_id: str = Field("0123456789abcdef0123456789abcdef", alias="UPLOAD_PROJECT_ID")
    # Allocated bytes one convert invocation handles at most; sized to finish well inside 15 minutes.
    chunk_bytes: int = Field(8 * 1024**3, alias="CHUNK_BYTES", ge=524_288)
    # The least allocated data worth starting a convert worker for (pipeline/chunk_plan.py).
    min_chunk_bytes: int = Field(128 * 1024**2, alias="MIN_CHUNK_BYTES", ge=524_288)
    # PutSnapshotBlock requests a convert invocation keeps in flight at most: enough to carry one function's
    # ~75 MiB/s (150 requests/s) at up to ~200 ms per request.
    writers_per_chunk: int = Field(32, alias="WRITERS_PER_CHUNK", ge=1)
    # Convert workers one import runs at once (the Map's MaxConcurrency, the ConvertConcurrency parameter).
    convert_concurrency: int = Field(16, alias="CONVERT_CONCURRENCY", ge=1)
    # Convert workers the state machine starts beside Fetch (template parameter WorkersBesideFetch).
    workers_beside_fetch: int = Field(16, alias="WORKERS_BESIDE_FETCH", ge=1)
    # PutSnapshotBlock requests per second one import may send, shared by the convert workers running at the
    # moment: EBS allows 1,000 per snapshot (not adjustable); the margin absorbs a joining worker's first seconds
    # and requests EBS counts in a different second than the worker (pipeline/rate_control.py).
    snapshot_puts_per_second: float = Field(970, alias="SNAPSHOT_PUTS_PER_SECOND", gt=0)
    # The account's PutSnapshotBlock quota (the AccountPutSnapshotBlockQuota parameter; EBS's default 1,000/s),
    # shared by the imports running at the moment, and the table where the imports announce themselves for it.
    account_put_quota: float = Field(1000, alias="ACCOUNT_PUT_QUOTA", gt=0)
    writer_leases_table: str = Field("", alias="WRITER_LEASES_TABLE")
    # How often a convert worker renews its lease and records its chunk's progress.
    renew_seconds: float = Field(2.0, alias="RENEW_SECONDS", gt=0)
    snapshot_wait_seconds: float = Field(600, alias="SNAPSHOT_WAIT_SECONDS", ge=0)
    retry_base_seconds: float = Field(0.5, alias="RETRY_BASE_SECONDS", ge=0)
    # IMS access keys (`stores/access_keys.py`): their table, the KMS key their secrets are sealed under, how far the
    # X-Sdk-Date of a signed request may be from now, and how long a function instance keeps a key it looked up.
    access_keys_table: str = Field("diskport-access-keys", alias="ACCESS_KEYS_TABLE")
    access_keys_kms_key: str = Field("alias/diskport-access-keys", alias="ACCESS_KEYS_KMS_KEY")
    signature_max_skew_seconds: float = Field(900, alias="SIGNATURE_MAX_SKEW_SECONDS", gt=0)
    access_key_cache_seconds: float = Field(10, alias="ACCESS_KEY_CACHE_SECONDS", ge=0)
    # Who may create, list and revoke access keys: "iam" - callers signed in with IAM (API Gateway's IAM
    # authorizer guards those routes); "open" - anyone reaching the API (local mode, which listens on loopback).
    operator_auth: Literal["iam", "open"] = Field("iam", alias="OPERATOR_AUTH")

    @property
    def source_bucket_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.source_buckets.split(",") if name.strip())


@cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.model_validate(dict(os.environ))
