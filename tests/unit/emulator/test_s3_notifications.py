"""The emulator's S3 event notifications have the structure AWS documents, so Powertools' models accept them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model
from diskport.domain.uploads import uploads_in
from diskport.settings import Settings
from diskport.stores.uploaded_objects import UploadedObject
from moto import mock_aws

from diskport_emulator import install_strict_services


class NotifiedBucket:
    """A bucket whose ObjectCreated events go to a queue, as the watched bucket's do."""

    def __init__(self, name: str, *, versioned: bool) -> None:
        self.name = name
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        self.queue_url = self.sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"Id": "uploads", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]},
                ]
            },
        )

    def bodies(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


@pytest.fixture
def emulated_aws() -> Iterator[None]:
    install_strict_services()
    with mock_aws():
        yield


def test_the_test_event_carries_the_request_and_host_ids_aws_sends(emulated_aws: None) -> None:
    bucket = NotifiedBucket("watched", versioned=True)

    (test_event,) = bucket.bodies()

    assert {key: test_event[key] for key in ("Service", "Event", "Bucket")} == {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Bucket": "watched",
    }
    assert test_event["RequestId"] and test_event["HostId"]
    assert uploads_in(json.dumps(test_event), Settings.model_validate({"WATCHED_BUCKET": "watched"})) == []


def test_an_upload_to_a_versioned_bucket_is_announced_with_every_field_aws_documents(emulated_aws: None) -> None:
    # Given a versioned bucket notifying a queue, past its test event
    bucket = NotifiedBucket("watched", versioned=True)
    bucket.bodies()

    # When a file is uploaded to it
    put = bucket.s3.put_object(Bucket="watched", Key="disks/a b+c.qcow2", Body=b"qcow2")

    # Then its notification validates as Powertools' S3 model, naming the version that was written
    (body,) = bucket.bodies()
    (record,) = S3Model.model_validate(body).Records
    assert record.eventName == "ObjectCreated:Put"
    assert record.s3.bucket.name == "watched"
    assert record.s3.bucket.arn == "arn:aws:s3:::watched"
    assert record.s3.bucket.ownerIdentity.principalId == record.userIdentity.principalId
    assert record.responseElements.x_amz_request_id and record.responseElements.x_amz_id_2
    assert record.s3.configurationId == "uploads"
    assert record.s3.object is not None
    assert (unquote_plus(record.s3.object.key), record.s3.object.size) == ("disks/a b+c.qcow2", 5)  # form-encoded
    assert record.s3.object.versionId == put["VersionId"]
    assert record.s3.object.sequencer
    # and the trigger reads it as that version of that file
    assert uploads_in(json.dumps(body), Settings.model_validate({"WATCHED_BUCKET": "watched"})) == [
        UploadedObject(
            bucket="watched", key="disks/a b+c.qcow2", version_id=put["VersionId"], etag=put["ETag"].strip('"')
        )
    ]


def test_an_upload_to_an_unversioned_bucket_names_no_version(emulated_aws: None) -> None:
    bucket = NotifiedBucket("plain", versioned=False)
    bucket.bodies()

    put = bucket.s3.put_object(Bucket="plain", Key="a.qcow2", Body=b"qcow2")

    (body,) = bucket.bodies()
    (record,) = S3Model.model_validate(body).Records
    assert record.s3.object is not None
    assert record.s3.object.versionId is None
    assert record.s3.object.eTag == put["ETag"].strip('"')


def test_later_events_of_a_key_have_greater_sequencers(emulated_aws: None) -> None:
    bucket = NotifiedBucket("watched", versioned=True)
    bucket.bodies()

    versions = [
        bucket.s3.put_object(Bucket="watched", Key="a.qcow2", Body=content)["VersionId"]
        for content in (b"first", b"second", b"third")
    ]

    sequencer_of = {}
    for body in bucket.bodies():
        (record,) = S3Model.model_validate(body).Records
        assert record.s3.object is not None and record.s3.object.sequencer is not None
        sequencer_of[record.s3.object.versionId] = int(record.s3.object.sequencer, 16)
    assert sorted(sequencer_of, key=sequencer_of.__getitem__) == versions
