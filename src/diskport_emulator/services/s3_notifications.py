"""S3 event notifications in the structure AWS documents, so consumers can validate them as they would in AWS.

AWS's "Event message structure" (S3 user guide) gives every record `userIdentity`,
`requestParameters.sourceIPAddress`, `responseElements` (`x-amz-request-id`, `x-amz-id-2`) and
`s3.bucket.ownerIdentity`, and the object its `sequencer` (and its `versionId` in a versioned bucket); the test
event S3 sends when a notification is configured carries `RequestId` and `HostId`. moto 5.2.5
(`moto.s3.notifications._get_s3_event`, `_get_test_event`) leaves all of these out, so a consumer that
validates records as AWS sends them (Powertools' `S3Model`) refuses every emulated upload. `install()` makes
moto write them.

The emulator does not know at this point which caller made the request, nor from where: the bucket's account
stands for both principals, and the request comes from loopback, where the emulator listens.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import time
from typing import Any

EMULATED_SOURCE_IP = "127.0.0.1"

_sequencer_lock = threading.Lock()
_last_sequencer = 0


def install() -> None:
    """Make moto's S3 notifications and test events carry the fields AWS sends (idempotent)."""
    from moto.s3 import notifications

    if getattr(notifications._get_s3_event, "documented_structure", False):
        return
    record_event = notifications._get_s3_event
    test_event = notifications._get_test_event

    @functools.wraps(record_event)
    def get_s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, list[dict[str, Any]]]:
        event = record_event(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            complete_record(record, bucket, key)
        return event

    @functools.wraps(test_event)
    def get_test_event(bucket_name: str) -> dict[str, Any]:
        return {**test_event(bucket_name), "RequestId": request_id(), "HostId": host_id()}

    get_s3_event.documented_structure = True  # type: ignore[attr-defined]
    notifications._get_s3_event = get_s3_event
    notifications._get_test_event = get_test_event


def complete_record(record: dict[str, Any], bucket: Any, key: Any) -> None:
    """Add to one of moto's records what AWS's has besides: who and where from, the request, the owner, the
    object's version and sequencer."""
    principal = principal_id(bucket.account_id)
    record["userIdentity"] = {"principalId": principal}
    record["requestParameters"] = {"sourceIPAddress": EMULATED_SOURCE_IP}
    record["responseElements"] = {"x-amz-request-id": request_id(), "x-amz-id-2": host_id()}
    record["s3"]["bucket"]["ownerIdentity"] = {"principalId": principal}
    announced = record["s3"]["object"]
    # moto names every object of an unversioned bucket "null"; AWS names a version only in a versioned bucket.
    if bucket.is_versioned:
        announced["versionId"] = key.version_id
    announced["sequencer"] = next_sequencer()


def principal_id(account_id: str) -> str:
    """An Amazon customer id for the account: opaque, upper case, the same for every event of the account."""
    return "A" + hashlib.sha256(account_id.encode()).hexdigest()[:13].upper()


def request_id() -> str:
    return os.urandom(8).hex().upper()


def host_id() -> str:
    return base64.b64encode(os.urandom(48)).decode()


def next_sequencer() -> str:
    """A hexadecimal sequencer greater than every earlier one: S3's sequencers order the events of a key."""
    global _last_sequencer
    with _sequencer_lock:
        _last_sequencer = max(_last_sequencer + 1, time.time_ns())
        return f"{_last_sequencer:018X}"
