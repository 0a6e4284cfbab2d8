"""Convert step: one chunk of the virtual disk into snapshot blocks (one item of the Convert map); the import's
last chunk to finish also seals the snapshot and registers the image."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.observability import logger, metrics, tracer
from diskport.pipeline.convert import convert_chunk
from diskport.pipeline.step_errors import reported_for_the_state_machine
from diskport.stores import Stores
from diskport.stores.work_files import Chunk


@logger.inject_lambda_context(correlation_id_path="job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@reported_for_the_state_machine
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = convert_chunk(
        str(event["job_id"]),
        Chunk.model_validate(event["chunk"]),
        Stores(),
        seconds_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    metrics.add_metric(name="SnapshotBlocksWritten", unit="Count", value=result.blocks_written)
    metrics.add_metric(name="ZeroBytesSkipped", unit="Bytes", value=result.bytes_skipped)
    logger.info(
        "Chunk converted", extra={"blocks_written": result.blocks_written, "bytes_skipped": result.bytes_skipped}
    )
    return result.model_dump()
