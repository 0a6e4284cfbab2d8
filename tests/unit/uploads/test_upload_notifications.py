"""Reading the watched bucket's S3 event notifications out of SQS messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from diskport.domain.uploads import uploads_in
from diskport.errors import RequestRejectedError
from diskport.settings import Settings
from diskport.stores.uploaded_objects import UploadedObject

EVENTS = Path(__file__).resolve().parents[3] / "events"
WATCHED = Settings.model_validate({"WATCHED_BUCKET": "uploads"})
SAMPLE_WATCHED = Settings.model_validate({"WATCHED_BUCKET": "diskport-watchedbucket"})


def notification(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def created(key: str, *, event_name: str = "ObjectCreated:Put", **object_fields: Any) -> dict[str, Any]:
    return {
        "eventName": event_name,
        "s3": {"bucket": {"name": "uploads"}, "object": {"key": key, "eTag": "e1", **object_fields}},
    }


def test_the_sample_event_names_one_version_of_one_file() -> None:
    # events/upload_object_created.json, as S3 writes it for a versioned bucket
    body = json.loads((EVENTS / "upload_object_created.json").read_text())["Records"][0]["body"]

    assert uploads_in(body, SAMPLE_WATCHED) == [
        UploadedObject(
            bucket="diskport-watchedbucket",
            key="disks/fedora-data1+v2.qcow2",
            version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
            etag="0c7e9c8e1a0d2b7bd4a6a5d2b9c3f0aa",
        )
    ]


def test_s3s_test_event_announces_nothing() -> None:
    body = json.loads((EVENTS / "upload_s3_test_event.json").read_text())["Records"][0]["body"]

    assert uploads_in(body, SAMPLE_WATCHED) == []


@pytest.mark.parametrize(
    ("key_in_event", "key"),
    [
        ("disks/fedora+data1.qcow2", "disks/fedora data1.qcow2"),
        ("disks/a%2Bb.qcow2", "disks/a+b.qcow2"),
        ("d%C3%A9j%C3%A0/vu.qcow2", "déjà/vu.qcow2"),
        ("100%25.raw", "100%.raw"),
    ],
)
def test_keys_are_decoded_from_the_form_encoding_s3_uses_in_events(key_in_event: str, key: str) -> None:
    (upload,) = uploads_in(notification(created(key_in_event)), WATCHED)

    assert upload.key == key


def test_every_created_object_of_a_message_is_announced_and_other_events_are_not() -> None:
    body = notification(
        created("a.qcow2", event_name="ObjectCreated:CompleteMultipartUpload", versionId="v7"),
        created("b.qcow2", event_name="ObjectRemoved:Delete"),
        created("c.qcow2", event_name="ObjectCreated:Copy"),
    )

    assert [(upload.key, upload.version_id) for upload in uploads_in(body, WATCHED)] == [
        ("a.qcow2", "v7"),
        ("c.qcow2", None),
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("not json", id="not JSON"),
        pytest.param("[]", id="not an object"),
        pytest.param("{}", id="no Records"),
        pytest.param(json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}), id="record without s3"),
        pytest.param(notification(created("a.qcow2", eTag="")), id="neither version id nor ETag"),
        pytest.param(
            notification(
                {**created("a.qcow2"), "s3": {"bucket": {"name": "elsewhere"}, "object": {"key": "a", "eTag": "e"}}}
            ),
            id="another bucket",
        ),
    ],
)
def test_a_message_that_is_not_an_s3_notification_of_the_watched_bucket_is_refused_so_that_it_is_retried(
    body: str,
) -> None:
    with pytest.raises(RequestRejectedError) as refused:
        uploads_in(body, WATCHED)

    assert refused.value.code == "IMG.0001"
