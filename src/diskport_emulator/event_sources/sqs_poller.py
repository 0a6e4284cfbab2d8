"""Lambda's SQS event source mapping, for local mode: poll a queue, call the function with a batch.

moto can invoke a function from an SQS mapping itself, but it does so inside SendMessage, one message per
call, with made-up attributes, and it ignores ReportBatchItemFailures. This poller behaves like Lambda's:
it long-polls the queue, hands the function a real batch (each record with messageId, receiptHandle,
body, attributes, messageAttributes, md5OfBody, eventSource, eventSourceARN, awsRegion), deletes only the
messages that succeeded, and leaves the others to come back after the visibility timeout, so the queue's
redrive policy moves them to the dead-letter queue in the end. One poller per mapping, working one batch
at a time, so a message is never processed twice at once.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from diskport_emulator.template import LocalStack

# Calls the mapped function with an event: (JSON payload, whether the function failed), as Lambda answers.
EventInvoker = Callable[[dict[str, Any]], tuple[str, bool]]

# Lambda long-polls for up to 20 s; a shorter wait lets local mode stop promptly.
LONG_POLL_SECONDS = 2
SQS_MAX_MESSAGES_PER_RECEIVE = 10
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqsMapping:
    """One `Type: SQS` event of a function in `template.yaml`."""

    function: str
    queue_name: str
    queue_arn: str
    batch_size: int
    report_batch_item_failures: bool


def sqs_mappings(stack: LocalStack) -> list[SqsMapping]:
    """Every SQS event source the template gives a function."""
    mappings = []
    for function, spec in stack.resources_of_type("AWS::Serverless::Function").items():
        for event in spec.get("Properties", {}).get("Events", {}).values():
            if event["Type"] != "SQS":
                continue
            properties = stack.resolve(event["Properties"])
            queue_arn = str(properties["Queue"])
            mappings.append(
                SqsMapping(
                    function=function,
                    queue_name=queue_arn.rpartition(":")[2],
                    queue_arn=queue_arn,
                    batch_size=int(properties.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
                )
            )
    return mappings


@dataclass(frozen=True)
class BatchOutcome:
    received: int
    deleted: int


class SqsPoller:
    """Delivers one queue's messages to one function, batch by batch."""

    def __init__(self, mapping: SqsMapping, invoke: EventInvoker, sqs: Any | None = None, region: str = "") -> None:
        self.mapping = mapping
        self._invoke = invoke
        self._sqs: Any = sqs if sqs is not None else boto3.client("sqs")
        self._region = region or self._sqs.meta.region_name
        self._queue_url: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = str(self._sqs.get_queue_url(QueueName=self.mapping.queue_name)["QueueUrl"])
        return self._queue_url

    def poll_once(self, wait_seconds: int = LONG_POLL_SECONDS) -> BatchOutcome:
        """Receive one batch (waiting up to `wait_seconds`), call the function, delete what succeeded."""
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.mapping.batch_size, SQS_MAX_MESSAGES_PER_RECEIVE),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if not messages:
            return BatchOutcome(0, 0)
        event = {"Records": [self._record(message) for message in messages]}
        payload, failed = self._invoke(event)
        succeeded = self._succeeded_messages(messages, payload, failed)
        for message in succeeded:
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        if len(succeeded) < len(messages):
            logger.warning(
                "%s of %s messages failed in %s; they return after the visibility timeout",
                len(messages) - len(succeeded),
                len(messages),
                self.mapping.function,
            )
        return BatchOutcome(len(messages), len(succeeded))

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                name: _lambda_message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.mapping.queue_arn,
            "awsRegion": self._region,
        }

    def _succeeded_messages(self, messages: list[dict[str, Any]], payload: str, failed: bool) -> list[dict[str, Any]]:
        """The messages Lambda would delete after this invocation (its rules for partial batch responses)."""
        if failed:
            return []
        if not self.mapping.report_batch_item_failures:
            return messages
        try:
            result = json.loads(payload)
        except ValueError:
            return []  # an answer that is not JSON fails the whole batch
        if result is None or result == {}:
            return messages
        failures = result.get("batchItemFailures") if isinstance(result, dict) else "not an object"
        if not failures:
            return messages  # an empty or absent list means the whole batch succeeded
        if not isinstance(failures, list):
            return []
        failed_ids = {failure.get("itemIdentifier") if isinstance(failure, dict) else None for failure in failures}
        if not failed_ids <= {message["MessageId"] for message in messages}:
            return []  # an empty, null or unknown itemIdentifier fails the whole batch
        return [message for message in messages if message["MessageId"] not in failed_ids]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"sqs-{self.mapping.queue_name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=LONG_POLL_SECONDS + 5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("Polling the queue %s failed", self.mapping.queue_name)
                self._stopping.wait(LONG_POLL_SECONDS)


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as Lambda writes it into an SQS event (camelCase, with empty list fields)."""
    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": base64.b64encode(binary).decode("ascii") if binary is not None else None,
        "stringListValues": value.get("StringListValues", []),
        "binaryListValues": [base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
