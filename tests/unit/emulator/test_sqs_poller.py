"""Local mode delivers queued messages to functions the way Lambda's SQS event source mapping does."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.sqs_poller import SqsMapping, SqsPoller, sqs_mappings

QUEUE_NAME = "uploads"
MAX_RECEIVES = 2


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queues(sqs: Any) -> dict[str, str]:
    """A queue whose messages come back after one second and go to a dead-letter queue on the second failure."""
    dead_letters = sqs.create_queue(QueueName="uploads-dlq")["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MAX_RECEIVES}),
        },
    )["QueueUrl"]
    return {"queue": queue, "dead_letters": dead_letters}


class FailingSome:
    """A function that reports the messages whose body starts with 'bad' as batch item failures."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> tuple[str, bool]:
        self.events.append(event)
        failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"].startswith("bad")]
        return json.dumps({"batchItemFailures": failures}), False


def mapping(report_batch_item_failures: bool = True, batch_size: int = 10) -> SqsMapping:
    return SqsMapping(
        function="UploadTriggerFunction",
        queue_name=QUEUE_NAME,
        queue_arn=f"arn:aws:sqs:us-east-1:123456789012:{QUEUE_NAME}",
        batch_size=batch_size,
        report_batch_item_failures=report_batch_item_failures,
    )


def bodies_in(sqs: Any, queue_url: str) -> list[str]:
    answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return sorted(message["Body"] for message in answer.get("Messages", []))


def test_the_template_upload_queue_feeds_the_upload_trigger_in_batches_with_partial_failures() -> None:
    (upload_mapping,) = sqs_mappings(LocalStack())
    assert upload_mapping.function == "UploadTriggerFunction"
    assert upload_mapping.queue_name == LocalStack().physical_name("UploadQueue")
    assert upload_mapping.queue_arn == LocalStack().arn("UploadQueue")
    assert upload_mapping.batch_size == 10
    assert upload_mapping.report_batch_item_failures is True


def test_the_function_gets_a_batch_of_records_shaped_like_lambdas_sqs_event(sqs: Any, queues: dict[str, str]) -> None:
    # Given two messages, one with an attribute
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="first")
    sqs.send_message(
        QueueUrl=queues["queue"],
        MessageBody="second",
        MessageAttributes={"origin": {"DataType": "String", "StringValue": "test"}},
    )
    function = FailingSome()
    # When the poller runs once
    outcome = SqsPoller(mapping(), function, sqs).poll_once(wait_seconds=0)
    # Then the function got both in one event, each record in Lambda's shape
    assert outcome.received == 2
    (event,) = function.events
    records = {record["body"]: record for record in event["Records"]}
    assert set(records) == {"first", "second"}
    record = records["second"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == f"arn:aws:sqs:us-east-1:123456789012:{QUEUE_NAME}"
    assert record["awsRegion"] == "us-east-1"
    assert record["md5OfBody"] == hashlib.md5(b"second").hexdigest()
    assert record["messageId"] and record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"]["origin"] == {
        "stringValue": "test",
        "binaryValue": None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }


def test_only_the_messages_that_succeeded_are_deleted(sqs: Any, queues: dict[str, str]) -> None:
    # Given a good and a bad message
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="good")
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="bad one")
    # When the function reports the bad one as a batch item failure
    outcome = SqsPoller(mapping(), FailingSome(), sqs).poll_once(wait_seconds=0)
    # Then only the good one is gone; the bad one is back after the visibility timeout
    assert (outcome.received, outcome.deleted) == (2, 1)
    time.sleep(1.1)
    assert bodies_in(sqs, queues["queue"]) == ["bad one"]


def test_a_message_that_keeps_failing_ends_in_the_dead_letter_queue(sqs: Any, queues: dict[str, str]) -> None:
    # Given a message the function always fails
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="bad forever")
    poller = SqsPoller(mapping(), FailingSome(), sqs)
    # When it has been received as often as the redrive policy allows
    for _ in range(MAX_RECEIVES):
        assert poller.poll_once(wait_seconds=0).received == 1
        time.sleep(1.1)
    # Then the next receive finds the queue empty and the message in the dead-letter queue
    assert poller.poll_once(wait_seconds=0).received == 0
    assert bodies_in(sqs, queues["dead_letters"]) == ["bad forever"]


def test_a_function_error_keeps_the_whole_batch(sqs: Any, queues: dict[str, str]) -> None:
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="one")
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="two")

    def crashing(event: dict[str, Any]) -> tuple[str, bool]:
        return json.dumps({"errorMessage": "boom", "errorType": "RuntimeError"}), True

    outcome = SqsPoller(mapping(), crashing, sqs).poll_once(wait_seconds=0)
    assert (outcome.received, outcome.deleted) == (2, 0)
    time.sleep(1.1)
    assert bodies_in(sqs, queues["queue"]) == ["one", "two"]


def test_an_answer_naming_a_message_outside_the_batch_fails_the_whole_batch(sqs: Any, queues: dict[str, str]) -> None:
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="one")

    def confused(event: dict[str, Any]) -> tuple[str, bool]:
        return json.dumps({"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}), False

    assert SqsPoller(mapping(), confused, sqs).poll_once(wait_seconds=0).deleted == 0


def test_without_report_batch_item_failures_a_returned_list_is_ignored(sqs: Any, queues: dict[str, str]) -> None:
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="bad but unreported")
    outcome = SqsPoller(mapping(report_batch_item_failures=False), FailingSome(), sqs).poll_once(wait_seconds=0)
    assert outcome.deleted == 1


def test_batches_are_no_larger_than_the_mappings_batch_size(sqs: Any, queues: dict[str, str]) -> None:
    for index in range(5):
        sqs.send_message(QueueUrl=queues["queue"], MessageBody=f"message {index}")
    function = FailingSome()
    poller = SqsPoller(mapping(batch_size=2), function, sqs)
    delivered = 0
    for _ in range(10):
        delivered += poller.poll_once(wait_seconds=0).received
        if delivered == 5:
            break
    assert delivered == 5
    assert max(len(event["Records"]) for event in function.events) <= 2


def test_a_started_poller_delivers_in_the_background_and_stops(sqs: Any, queues: dict[str, str]) -> None:
    function = FailingSome()
    poller = SqsPoller(mapping(), function, sqs)
    poller.start()
    try:
        sqs.send_message(QueueUrl=queues["queue"], MessageBody="later")
        deadline = time.monotonic() + 10
        while not function.events and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        poller.stop()
    assert [record["body"] for event in function.events for record in event["Records"]] == ["later"]


@pytest.mark.parametrize(
    ("answer", "deleted"),
    [
        ("null", 1),
        ("{}", 1),
        ('{"batchItemFailures": []}', 1),
        ('{"batchItemFailures": null}', 1),
        ("not json", 0),
        ('"a string"', 0),
        ('{"batchItemFailures": [{"itemIdentifier": ""}]}', 0),
        ('{"batchItemFailures": [{"itemIdentifier": null}]}', 0),
        ('{"batchItemFailures": [{"wrongKey": "x"}]}', 0),
    ],
)
def test_partial_batch_answers_follow_lambdas_rules(
    sqs: Any, queues: dict[str, str], answer: str, deleted: int
) -> None:
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="one")

    def answering(event: dict[str, Any]) -> tuple[str, bool]:
        return answer, False

    assert SqsPoller(mapping(), answering, sqs).poll_once(wait_seconds=0).deleted == deleted
