"""Starts an import for each image file uploaded to the watched bucket (S3 → SQS → this function).

Each SQS record is handled on its own: a record that fails is reported back alone (ReportBatchItemFailures),
so SQS delivers it again and, after the queue's maxReceiveCount, moves it to the dead-letter queue, while
the rest of the batch is done. Each object version is imported once, however often its event arrives.
"""

# No `from __future__ import annotations` here: the idempotency serializer reads the return annotation at runtime.

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.domain.uploads import IDEMPOTENCY_EXPIRY_SECONDS, UploadImport, import_upload, uploads_in
from diskport.observability import logger, metrics, tracer
from diskport.settings import get_settings
from diskport.stores import Stores
from diskport.stores.idempotency import idempotency_store
from diskport.stores.uploaded_objects import UploadedObject

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
persistence_layer = idempotency_store(get_settings().idempotency_table)
# One object version, one import: the key is the bucket, the key and the version id (the ETag when unversioned).
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version_id || etag]",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=IDEMPOTENCY_EXPIRY_SECONDS,
)


@idempotent_function(  # type: ignore[untyped-decorator]  # Powertools leaves this decorator untyped
    data_keyword_argument="upload",
    persistence_store=persistence_layer,
    config=idempotency_config,
    output_serializer=PydanticSerializer,
)
def import_once(upload: UploadedObject) -> UploadImport:
    return import_upload(upload, Stores())


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    for upload in uploads_in(record.body):
        started = import_once(upload=upload)
        logger.info(
            "Upload imported as a job",
            extra={"location": upload.location, "version": upload.version_id or upload.etag, **started.model_dump()},
        )
        metrics.add_metric(name="UploadEventsHandled", unit="Count", value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency_config.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
