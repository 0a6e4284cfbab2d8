"""Uploading an image file to the watched bucket starts an import (docs/uploads.md).

The stack is the template's, in moto: the bucket's ObjectCreated notification really lands in the upload
queue, and `UploadQueue.deliver()` plays the Lambda event source mapping: it receives a batch, hands it to
the trigger function as an SQS event, and deletes the records the function did not report as failed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import S3SqsEventNotificationRecordModel
from diskport.domain.uploads import job_id_of, uploads_in
from diskport.settings import get_settings
from diskport.stores import aws
from diskport.stores.jobs import Job, JobStore
from diskport.stores.uploaded_objects import UploadedObject

from diskport_emulator.template import LOCAL_ACCOUNT_ID

EVENTS = Path(__file__).resolve().parents[2] / "events"
UPLOAD_PROJECT_ID = LOCAL_ACCOUNT_ID  # UPLOAD_PROJECT_ID in template.yaml is the stack's account
GIB = 1024**3


@dataclass
class Delivery:
    """One invocation of the trigger: the records handed over and what the function answered."""

    records: list[dict[str, Any]]
    response: dict[str, Any]

    @property
    def failed_message_ids(self) -> list[str]:
        return [failure["itemIdentifier"] for failure in self.response["batchItemFailures"]]


class UploadQueue:
    """The upload queue and its dead-letter queue, with the trigger function consuming the queue."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.sqs = boto3.client("sqs")
        self.url = self.sqs.get_queue_url(QueueName=stack.local.physical_name("UploadQueue"))["QueueUrl"]
        dead_letter_queue = stack.local.physical_name("UploadDeadLetterQueue")
        self.dead_letter_url = self.sqs.get_queue_url(QueueName=dead_letter_queue)["QueueUrl"]
        self.arn = stack.local.arn("UploadQueue")
        self._received: set[str] = set()

    def receive(self) -> list[dict[str, Any]]:
        # A visibility timeout of 0 stands for "the 360 s have passed": a failed record is due again at once.
        answer = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        )
        records = [self._lambda_record(message) for message in answer.get("Messages", [])]
        self._received.update(record["receiptHandle"] for record in records)
        return records

    def deliver(self, records: list[dict[str, Any]] | None = None) -> Delivery:
        """Hand a batch (by default the next one in the queue) to the trigger, then delete what succeeded."""
        records = self.receive() if records is None else records
        function = "UploadTriggerFunction"
        response = self.stack.lambdas.handler(function)({"Records": records}, self.stack.lambdas.context(function))
        delivery = Delivery(records, response)
        for record in records:
            # Records made up by a test (not received from the queue) have nothing to delete.
            received = record["receiptHandle"] in self._received
            if received and record["messageId"] not in delivery.failed_message_ids:
                self._received.discard(record["receiptHandle"])
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"])
        return delivery

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def waiting(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[str]:
        answer = self.sqs.receive_message(QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10)
        return [message["Body"] for message in answer.get("Messages", [])]

    def _lambda_record(self, message: dict[str, Any]) -> dict[str, Any]:
        """An SQS message as the event source mapping hands it to Lambda."""
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": "us-east-1",
        }


@pytest.fixture
def uploads(stack: Any) -> UploadQueue:
    """The upload queue of a fresh stack, past S3's test event."""
    queue = UploadQueue(stack)
    queue.deliver()
    assert queue.waiting() == 0
    return queue


@pytest.fixture
def bucket(stack: Any) -> str:
    return str(stack.local.physical_name("WatchedBucket"))


@pytest.fixture(scope="module")
def qcow2_of_50_gib(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A qcow2 file of a few hundred KiB whose virtual disk is 50 GiB (nothing written to it)."""
    path = tmp_path_factory.mktemp("images") / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "50G"], check=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def qcow2_with_backing_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("backing")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "base.qcow2"), "1G"], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(folder / "top.qcow2")],
        check=True,
        cwd=folder,
    )
    return (folder / "top.qcow2").read_bytes()


def jobs_of(stack: Any) -> list[dict[str, Any]]:
    return list(stack.table("JobsTable").scan()["Items"])


def job_seen_through_the_api(stack: Any, job_id: str) -> dict[str, Any]:
    answer = stack.call_api("GET", f"/v1/{UPLOAD_PROJECT_ID}/jobs/{job_id}", project_id=UPLOAD_PROJECT_ID)
    assert answer.status == 200, answer.body
    return dict(answer.body)


def wait_for_execution_to_end(stack: Any, job_id: str, timeout_seconds: float = 60) -> None:
    executions = stack.local.arn("ImportDataImageStateMachine").replace(":stateMachine:", ":execution:")
    step_functions = boto3.client("stepfunctions")
    deadline = time.monotonic() + timeout_seconds
    while step_functions.describe_execution(executionArn=f"{executions}:{job_id}")["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"the import of job {job_id} still runs after {timeout_seconds} s"
        time.sleep(0.05)


def tags_of(bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
    version = {"VersionId": version_id} if version_id else {}
    tag_set = boto3.client("s3").get_object_tagging(Bucket=bucket, Key=key, **version)["TagSet"]
    return {tag["Key"]: tag["Value"] for tag in tag_set}


def upload(bucket: str, key: str, body: bytes, metadata: dict[str, str] | None = None) -> str:
    answer = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})
    return str(answer.get("VersionId", ""))


# ---------------------------------------------------------------------------------------------- happy path


def test_an_uploaded_image_file_gets_one_import_job_named_after_it(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given a qcow2 file whose virtual disk is 50 GiB, uploaded without any metadata
    upload(bucket, "disks/fedora-data1.qcow2", qcow2_of_50_gib)

    # When its notification reaches the trigger
    delivery = uploads.deliver()

    # Then the record succeeded and the queue is empty
    assert delivery.failed_message_ids == []
    assert uploads.waiting() == 0
    # and one job exists, started by the upload, with the defaults of the upload convention
    (job,) = jobs_of(stack)
    assert job["status"] == "INIT"
    assert job["origin"] == "upload"
    assert job["project_id"] == UPLOAD_PROJECT_ID
    assert job["request"] == {
        "name": "fedora-data1",
        "image_url": f"{bucket}:disks/fedora-data1.qcow2",
        "os_type": "Linux",
        "min_disk": 50,
    }
    # and its execution runs, named after the job
    (execution,) = stack.executions()
    assert execution["name"] == job["job_id"]
    # and the owner sees the job through the job API
    seen = job_seen_through_the_api(stack, job["job_id"])
    assert seen["status"] == "INIT"
    assert seen["entities"]["image_name"] == "fedora-data1"


def test_the_job_id_is_tagged_on_the_uploaded_file(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given a file that already carries a tag of its owner
    boto3.client("s3").put_object(Bucket=bucket, Key="disks/data2.qcow2", Body=qcow2_of_50_gib, Tagging="team=storage")

    # When it is imported
    uploads.deliver()

    # Then the file names its job, and keeps its own tag
    (job,) = jobs_of(stack)
    assert tags_of(bucket, "disks/data2.qcow2") == {"team": "storage", "diskport-job-id": job["job_id"]}


def test_a_small_disk_gets_the_smallest_min_disk_ims_allows(
    stack: Any, uploads: UploadQueue, bucket: str, tmp_path: Path
) -> None:
    # Given a raw disk of 1 MiB
    upload(bucket, "small.img", bytes(1024 * 1024))

    # When
    uploads.deliver()

    # Then min_disk is 40 GB, IMS's floor
    (job,) = jobs_of(stack)
    assert job["request"]["min_disk"] == 40
    assert job["request"]["name"] == "small"


def test_the_import_parameters_come_from_the_object_metadata(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given an upload that sets every field of the convention; the name is RFC 2047 encoded (S3 metadata is ASCII)
    encoded_name = "=?UTF-8?B?" + base64.b64encode("Données système 1".encode()).decode() + "?="
    upload(
        bucket,
        "disks/anything.qcow2",
        qcow2_of_50_gib,
        metadata={
            "ims-name": encoded_name,
            "ims-description": "Data disk of the build farm",
            "ims-os-type": "Windows",
            "ims-min-disk": "64",
            "ims-tags": "team.storage, env.prod",
        },
    )

    # When
    uploads.deliver()

    # Then the job's request is what the metadata said
    (job,) = jobs_of(stack)
    assert job["status"] == "INIT"
    assert job["request"] == {
        "name": "Données système 1",
        "description": "Data disk of the build farm",
        "os_type": "Windows",
        "image_url": f"{bucket}:disks/anything.qcow2",
        "min_disk": 64,
        "tags": ["team.storage", "env.prod"],
    }


def test_a_url_encoded_key_is_read_as_the_file_name_it_stands_for(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given a key with non-ASCII letters and a '+', which S3 writes in the event as %XX escapes
    key = "disks/été+hiver-données.qcow2"
    upload(bucket, key, qcow2_of_50_gib)

    # When
    uploads.deliver()

    # Then the job names the object by its real key, and the name keeps the letters IMS allows
    (job,) = jobs_of(stack)
    assert job["request"]["image_url"] == f"{bucket}:{key}"
    assert job["request"]["name"] == "été_hiver-données"
    assert tags_of(bucket, key)["diskport-job-id"] == job["job_id"]


def test_an_upload_is_announced_to_the_trigger_in_the_structure_aws_documents(
    uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given an image file uploaded to the watched bucket
    version = upload(bucket, "disks/as in aws.qcow2", qcow2_of_50_gib)

    # When its notification is taken from the upload queue, as the event source mapping hands it to Lambda
    (record,) = uploads.receive()

    # Then the record validates as Powertools' model of S3 events in SQS, naming the version that was written
    (s3_record,) = S3SqsEventNotificationRecordModel.model_validate(record).body.Records
    assert s3_record.eventName == "ObjectCreated:Put"
    assert s3_record.s3.bucket.name == bucket
    assert s3_record.s3.object is not None
    assert s3_record.s3.object.versionId == version
    assert s3_record.s3.object.sequencer
    # and the trigger reads it as that version of that file
    etag = boto3.client("s3").head_object(Bucket=bucket, Key="disks/as in aws.qcow2")["ETag"].strip('"')
    assert uploads_in(record["body"]) == [
        UploadedObject(bucket=bucket, key="disks/as in aws.qcow2", version_id=version, etag=etag)
    ]


def test_an_event_naming_a_version_imports_that_version(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given two versions of one file, the first with its own name in the metadata
    first_version = upload(bucket, "disks/fedora-data1+v2.qcow2", qcow2_of_50_gib, {"ims-name": "first"})
    upload(bucket, "disks/fedora-data1+v2.qcow2", qcow2_of_50_gib, {"ims-name": "second"})
    uploads.sqs.purge_queue(QueueUrl=uploads.url)  # their own notifications: this test delivers the sample event
    # and the event S3 sends for the first version (events/upload_object_created.json, as in AWS)
    event = json.loads((EVENTS / "upload_object_created.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["bucket"]["name"] = bucket
    body["Records"][0]["s3"]["object"]["versionId"] = first_version
    event["Records"][0]["body"] = json.dumps(body)

    # When that event is delivered
    delivery = uploads.deliver(event["Records"])

    # Then the job imports the first version, and that version carries the job id
    assert delivery.failed_message_ids == []
    (job,) = jobs_of(stack)
    assert job["request"]["name"] == "first"
    assert tags_of(bucket, "disks/fedora-data1+v2.qcow2", first_version) == {"diskport-job-id": job["job_id"]}
    assert tags_of(bucket, "disks/fedora-data1+v2.qcow2") == {}


# ---------------------------------------------------------------------------------------------- exactly once


def test_s3s_test_event_starts_nothing(stack: Any) -> None:
    # Given a fresh stack: S3 has sent its test event to the queue
    queue = UploadQueue(stack)

    # When it is delivered
    delivery = queue.deliver()

    # Then it was the test event, it succeeded, and nothing was started
    (record,) = delivery.records
    assert json.loads(record["body"])["Event"] == "s3:TestEvent"
    assert delivery.failed_message_ids == []
    assert jobs_of(stack) == []
    assert stack.executions() == []
    assert queue.waiting() == 0


def test_the_same_event_delivered_three_times_gives_one_job(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given one upload whose notification SQS hands over twice in one batch
    upload(bucket, "disks/once.qcow2", qcow2_of_50_gib)
    (record,) = uploads.receive()
    twice = [record, {**record, "messageId": str(uuid.uuid4())}]

    # When the batch is delivered, and then the same event once more, later
    first = uploads.deliver(twice)
    second = uploads.deliver([{**record, "messageId": str(uuid.uuid4())}])

    # Then every delivery succeeded, and there is one job and one execution
    assert first.failed_message_ids == [] and second.failed_message_ids == []
    (job,) = jobs_of(stack)
    (execution,) = stack.executions()
    assert execution["name"] == job["job_id"]


def test_a_repeat_after_the_idempotency_record_expired_still_finds_the_same_job(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given an upload imported once, whose idempotency record has since expired (TTL) and been removed
    upload(bucket, "disks/late.qcow2", qcow2_of_50_gib)
    (record,) = uploads.receive()
    uploads.deliver([record])
    idempotency = stack.table("IdempotencyTable")
    for item in idempotency.scan()["Items"]:
        idempotency.delete_item(Key={"id": item["id"]})

    # When S3 delivers the event again
    delivery = uploads.deliver([{**record, "messageId": str(uuid.uuid4())}])

    # Then it lands on the job the upload already has
    assert delivery.failed_message_ids == []
    (job,) = jobs_of(stack)
    assert len(stack.executions()) == 1
    assert tags_of(bucket, "disks/late.qcow2")["diskport-job-id"] == job["job_id"]


# ---------------------------------------------------------------------------------------------- refused uploads


@pytest.mark.parametrize(
    ("key", "content", "metadata", "error_code", "reason_says"),
    [
        pytest.param("disks/empty.qcow2", "empty", {}, "IMG.0057", "empty", id="empty file"),
        pytest.param("disks/top.qcow2", "backing", {}, "IMG.0057", "backing", id="qcow2 with a backing file"),
        pytest.param("disks/data.qcow2", "qcow2", {"ims-os-type": "BeOS"}, "IMG.0122", "os_type", id="os type"),
        pytest.param("disks/data.qcow2", "qcow2", {"ims-min-disk": "30"}, "IMG.0055", "min_disk", id="min_disk 30"),
        pytest.param("disks/data.qcow2", "qcow2", {"ims-min-disk": "big"}, "IMG.0055", "min_disk", id="min_disk NaN"),
        pytest.param("disks/data.qcow2", "qcow2", {"ims-name": "disk#1"}, "IMG.0003", "letters", id="bad name"),
        pytest.param("disks/data.qcow2", "qcow2", {"ims-mindisk": "60"}, "IMG.0001", "ims-mindisk", id="misspelt"),
        pytest.param("my disks/data.qcow2", "qcow2", {}, "IMG.0175", "spaces", id="space in folder name"),
    ],
)
def test_an_invalid_upload_gets_one_fail_job_with_the_reason(
    stack: Any,
    uploads: UploadQueue,
    bucket: str,
    qcow2_of_50_gib: bytes,
    qcow2_with_backing_file: bytes,
    key: str,
    content: str,
    metadata: dict[str, str],
    error_code: str,
    reason_says: str,
) -> None:
    # Given an upload that breaks a rule
    body = {"empty": b"", "backing": qcow2_with_backing_file, "qcow2": qcow2_of_50_gib}[content]
    upload(bucket, key, body, metadata)

    # When its notification reaches the trigger
    delivery = uploads.deliver()

    # Then the record succeeded: nothing is retried, nothing goes to the dead-letter queue
    assert delivery.failed_message_ids == []
    assert uploads.waiting() == 0
    assert uploads.dead_letters() == []
    # and one job says why, through the job API, and no execution was started
    (job,) = jobs_of(stack)
    seen = job_seen_through_the_api(stack, job["job_id"])
    assert seen["status"] == "FAIL"
    assert seen["error_code"] == error_code
    assert reason_says in seen["fail_reason"]
    assert seen["end_time"] is not None
    assert job["origin"] == "upload"
    assert stack.executions() == []
    # and the file names the job that explains it
    assert tags_of(bucket, key)["diskport-job-id"] == job["job_id"]


def test_a_virtual_disk_larger_than_ims_allows_gets_a_fail_job(
    stack: Any, uploads: UploadQueue, bucket: str, tmp_path: Path
) -> None:
    # Given a qcow2 whose virtual disk is 3 TiB (min_disk may be at most 2048 GB)
    path = tmp_path / "huge.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "3T"], check=True)
    upload(bucket, "huge.qcow2", path.read_bytes())

    # When
    uploads.deliver()

    # Then
    (job,) = jobs_of(stack)
    assert job["status"] == "FAIL"
    assert job["error_code"] == "IMG.0055"
    assert "3072 GB" in job["fail_reason"]


def test_a_refused_upload_does_not_count_as_an_import_under_way(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given a refused upload
    upload(bucket, "bad.qcow2", b"")
    uploads.deliver()

    # Then the project has no import under way
    assert JobStore().imports_under_way(UPLOAD_PROJECT_ID) == 0


def test_a_file_deleted_before_its_notification_is_handled_gets_a_fail_job(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given a file deleted right after its upload
    upload(bucket, "disks/gone.qcow2", qcow2_of_50_gib)
    boto3.client("s3").delete_object(Bucket=bucket, Key="disks/gone.qcow2")

    # When its notification reaches the trigger
    delivery = uploads.deliver()

    # Then the job says the object is gone, and nothing is retried
    assert delivery.failed_message_ids == []
    (job,) = jobs_of(stack)
    assert job["status"] == "FAIL"
    assert job["error_code"] == "IMG.0121"
    assert "deleted or replaced" in job["fail_reason"]


def test_a_file_overwritten_before_its_notification_is_handled_gets_a_fail_job_and_the_new_content_its_own(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes, qcow2_with_backing_file: bytes
) -> None:
    # Given a file overwritten with other content right after its upload (two versions, two notifications)
    first_version = upload(bucket, "disks/twice.qcow2", qcow2_of_50_gib)
    second_version = upload(bucket, "disks/twice.qcow2", qcow2_with_backing_file)

    # When both notifications reach the trigger
    while uploads.waiting():
        assert uploads.deliver().failed_message_ids == []

    # Then the first version's job says the file was replaced, and the second version has its own job
    version_of = {
        tags_of(bucket, "disks/twice.qcow2", version)["diskport-job-id"]: version
        for version in (first_version, second_version)
    }
    by_version = {version_of[job["job_id"]]: job for job in jobs_of(stack)}
    assert by_version[first_version]["status"] == "FAIL"
    assert by_version[first_version]["error_code"] == "IMG.0121"
    assert "deleted or replaced" in by_version[first_version]["fail_reason"]
    # (the second content is a qcow2 with a backing file: the engine's refusal shows it was that content read)
    assert by_version[second_version]["error_code"] == "IMG.0057"


# ---------------------------------------------------------------------------------------------- failures and retries


def test_a_batch_with_one_poisoned_record_reports_just_that_record(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given a batch of two uploads and, between them, a message that is not an S3 notification
    upload(bucket, "first.qcow2", qcow2_of_50_gib)
    uploads.send("this is not an S3 event")
    upload(bucket, "second.qcow2", qcow2_of_50_gib)
    records = uploads.receive()
    assert len(records) == 3
    poisoned = next(record for record in records if record["body"] == "this is not an S3 event")

    # When the batch is delivered
    delivery = uploads.deliver(records)

    # Then only the poisoned record is reported failed, and both uploads have their job
    assert delivery.failed_message_ids == [poisoned["messageId"]]
    assert sorted(job["request"]["name"] for job in jobs_of(stack)) == ["first", "second"]
    assert uploads.waiting() == 1


def test_a_record_that_keeps_failing_ends_in_the_dead_letter_queue_after_five_attempts(
    stack: Any, uploads: UploadQueue
) -> None:
    # Given a message the trigger cannot read
    uploads.send("this is not an S3 event")

    # When SQS delivers it as often as the queue allows (maxReceiveCount in template.yaml)
    redrive = stack.local.resolve(stack.local.resources["UploadQueue"]["Properties"]["RedrivePolicy"])
    for _ in range(redrive["maxReceiveCount"]):
        assert len(uploads.deliver().failed_message_ids) == 1

    # Then it is no longer delivered, and waits in the dead-letter queue the alarm watches
    assert uploads.receive() == []
    assert uploads.dead_letters() == ["this is not an S3 event"]
    alarm = stack.local.resolve(stack.local.resources["UploadDeadLetterAlarm"]["Properties"])
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": stack.local.physical_name("UploadDeadLetterQueue")}]


def test_a_throttled_attempt_is_retried_through_sqs_and_then_gives_one_job(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given an upload, and DynamoDB refusing reads of the Jobs table as throttled
    upload(bucket, "disks/busy.qcow2", qcow2_of_50_gib)
    with stack.lambdas.acting_as("UploadTriggerFunction"):  # the function's own client
        jobs_client = aws.dynamodb_table(get_settings().jobs_table).meta.client

    def throttle(**_: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds the limit"}
        return SimpleNamespace(status_code=400, headers={}, content=b""), {"Error": error}

    # When the notification is delivered
    jobs_client.meta.events.register("before-call.dynamodb.GetItem", throttle)
    try:
        first = uploads.deliver()
    finally:
        jobs_client.meta.events.unregister("before-call.dynamodb.GetItem", throttle)

    # Then the record is reported failed, for SQS to deliver again, and no job exists yet
    assert len(first.failed_message_ids) == 1
    assert jobs_of(stack) == []
    assert uploads.waiting() == 1

    # When the table has recovered and SQS delivers the record again
    second = uploads.deliver()

    # Then the upload has its one job
    assert second.failed_message_ids == []
    (job,) = jobs_of(stack)
    assert job["status"] == "INIT"
    assert len(stack.executions()) == 1
    assert uploads.dead_letters() == []


def test_uploads_beyond_the_projects_imports_under_way_wait_in_the_queue(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack that runs one import at a time, and one upload already under way
    monkeypatch.setenv("MAX_ACTIVE_JOBS", "1")
    get_settings.cache_clear()
    upload(bucket, "disks/first.qcow2", qcow2_of_50_gib)
    uploads.deliver()

    # When a second file is uploaded
    upload(bucket, "disks/second.qcow2", qcow2_of_50_gib)
    delivery = uploads.deliver()

    # Then its message is reported failed, to come back later, and it has no job yet
    assert len(delivery.failed_message_ids) == 1
    assert [job["request"]["name"] for job in jobs_of(stack)] == ["first"]
    assert uploads.waiting() == 1

    # When the first import has ended and the message comes back
    JobStore().mark_failed(jobs_of(stack)[0]["job_id"], error_code="IMG.0061", fail_reason="ended for the test")
    assert uploads.deliver().failed_message_ids == []

    # Then the second upload has its job
    assert sorted(job["request"]["name"] for job in jobs_of(stack)) == ["first", "second"]


def test_a_job_recorded_by_an_attempt_cut_short_is_started_by_the_next_delivery(
    stack: Any, uploads: UploadQueue, bucket: str, qcow2_of_50_gib: bytes
) -> None:
    # Given an upload whose first attempt recorded its job and then ended (a timeout) before starting it
    upload(bucket, "disks/cut.qcow2", qcow2_of_50_gib)
    (record,) = uploads.receive()
    (announced,) = uploads_in(record["body"])
    JobStore().create(Job(job_id=job_id_of(announced), project_id=UPLOAD_PROJECT_ID, request={}, origin="upload"))
    assert stack.executions() == []

    # When SQS delivers the notification again
    delivery = uploads.deliver([record])

    # Then the job's execution runs, and it is still the one job
    assert delivery.failed_message_ids == []
    (job,) = jobs_of(stack)
    (execution,) = stack.executions()
    assert execution["name"] == job["job_id"]
    assert tags_of(bucket, "disks/cut.qcow2")["diskport-job-id"] == job["job_id"]


# ---------------------------------------------------------------------------------------------- end to end


def test_an_uploaded_file_is_imported_to_the_end(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any
) -> None:
    # Given a qcow2 file uploaded to the watched bucket, with no metadata
    stack = importer.stack
    queue = UploadQueue(stack)
    queue.deliver()  # S3's test event
    image_file = image_files["qcow2"]
    importer.upload(image_file.path, "disks/pattern-data.qcow2")

    # When its notification reaches the trigger and the import runs to its end
    assert queue.deliver().failed_message_ids == []
    (job,) = jobs_of(stack)
    wait_for_execution_to_end(stack, job["job_id"])

    # Then the job succeeded, as its owner sees it through the job API
    seen = job_seen_through_the_api(stack, job["job_id"])
    assert seen["status"] == "SUCCESS", seen
    assert seen["entities"]["image_name"] == "pattern-data"
    # and the image holds the file's disk, byte for byte
    answer = stack.call_api(
        "GET", "/v2/cloudimages", query={"id": seen["entities"]["image_id"]}, project_id=UPLOAD_PROJECT_ID
    )
    (image,) = answer.body["images"]
    assert image["status"] == "active"
    assert image["min_disk"] == 40
    assert importer.snapshot_blocks(image["diskport_snapshot_id"]) == oracle_blocks(image_file.oracle)
    # and the file names its job
    assert tags_of(stack.local.physical_name("WatchedBucket"), "disks/pattern-data.qcow2") == {
        "diskport-job-id": job["job_id"]
    }
