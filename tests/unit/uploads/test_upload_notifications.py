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


def created(
    key: str, *, event_name: str = "ObjectCreated:Put", bucket: str = "uploads", **object_fields: Any
) -> dict[str, Any]:
    """One record as S3 writes it (AWS's "Event message structure", event version 2.1)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T07:30:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "diskport-uploads",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {"key": key, "size": 196616, "eTag": "e1", "sequencer": "0055AED6DCD90281E5", **object_fields},
        },
    }


def without(record: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of the record with the field at the dotted path left out."""
    copy, holder, name = _field_of(record, path)
    del holder[name]
    return copy


def replaced(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the record with the field at the dotted path set to value."""
    copy, holder, name = _field_of(record, path)
    holder[name] = value
    return copy


def _field_of(record: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    copy: dict[str, Any] = json.loads(json.dumps(record))
    *parents, name = path.split(".")
    holder = copy
    for parent in parents:
        holder = holder[parent]
    return copy, holder, name


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
        pytest.param(notification(created("a.qcow2", bucket="elsewhere")), id="another bucket"),
    ],
)
def test_a_message_that_is_not_an_s3_notification_of_the_watched_bucket_is_refused_so_that_it_is_retried(
    body: str,
) -> None:
    with pytest.raises(RequestRejectedError) as refused:
        uploads_in(body, WATCHED)

    assert refused.value.code == "IMG.0001"


@pytest.mark.parametrize(
    "field",
    [
        "eventVersion",
        "awsRegion",
        "eventTime",
        "eventName",
        "userIdentity",
        "userIdentity.principalId",
        "requestParameters",
        "requestParameters.sourceIPAddress",
        "responseElements",
        "responseElements.x-amz-request-id",
        "responseElements.x-amz-id-2",
        "s3",
        "s3.s3SchemaVersion",
        "s3.configurationId",
        "s3.bucket",
        "s3.bucket.name",
        "s3.bucket.ownerIdentity",
        "s3.bucket.arn",
        "s3.object",
        "s3.object.key",
        "s3.object.size",
        "s3.object.eTag",
    ],
)
def test_a_record_without_a_field_aws_always_sends_is_refused_so_that_it_is_retried(field: str) -> None:
    body = notification(without(created("a.qcow2", versionId="v1"), field))

    with pytest.raises(RequestRejectedError) as refused:
        uploads_in(body, WATCHED)

    assert refused.value.code == "IMG.0001"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eventSource", "aws:sqs"),
        ("eventTime", "yesterday"),
        ("eventName", 7),
        ("requestParameters.sourceIPAddress", "not an address"),
        ("s3", "a.qcow2"),
        ("s3.bucket", "uploads"),
        ("s3.object", "a.qcow2"),
        ("s3.object.key", None),
        ("s3.object.size", -1),
        ("s3.object.versionId", 3),
    ],
)
def test_a_record_with_a_malformed_field_is_refused_so_that_it_is_retried(field: str, value: Any) -> None:
    body = notification(replaced(created("a.qcow2"), field, value))

    with pytest.raises(RequestRejectedError) as refused:
        uploads_in(body, WATCHED)

    assert refused.value.code == "IMG.0001"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(json.dumps({"Records": []}), id="no record"),
        pytest.param(json.dumps({"Records": "a.qcow2"}), id="Records not a list"),
        pytest.param(json.dumps({"Records": ["a.qcow2"]}), id="record not an object"),
        pytest.param(json.dumps({"Event": "s3:ObjectCreated:Put"}), id="an Event other than the test event"),
    ],
)
def test_a_message_whose_records_are_malformed_is_refused_so_that_it_is_retried(body: str) -> None:
    with pytest.raises(RequestRejectedError) as refused:
        uploads_in(body, WATCHED)

    assert refused.value.code == "IMG.0001"


def test_a_removal_record_as_aws_writes_it_without_size_or_etag_is_passed_over() -> None:
    removal = created("b.qcow2", event_name="ObjectRemoved:Delete")
    removed = without(without(removal, "s3.object.size"), "s3.object.eTag")

    assert uploads_in(notification(removed, created("c.qcow2", versionId="v2")), WATCHED) == [
        UploadedObject(bucket="uploads", key="c.qcow2", version_id="v2", etag="e1")
    ]
