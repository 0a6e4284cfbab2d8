"""Convert step: one chunk of the virtual disk into snapshot blocks, as a worker started beside Fetch (`slot`) or
an item of the Convert map (`chunk`); the import's last chunk to finish also seals the snapshot and registers the
image."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.observability import logger, metrics, tracer
from diskport.pipeline.convert import convert_chunk, convert_first_chunk
from diskport.pipeline.step_errors import reported_for_the_state_machine
from diskport.stores import Stores
from diskport.stores.work_files import Chunk


@logger.inject_lambda_context(correlation_id_path="job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@reported_for_the_state_machine
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job_id, stores = str(event["job_id"]), Stores()

    def seconds_left() -> float:
        return context.get_remaining_time_in_millis() / 1000

    if "slot" in event:  # started beside Fetch: the chunk comes when Fetch publishes the plan
        taken = convert_first_chunk(job_id, int(event["slot"]), stores, seconds_left=seconds_left)
        if taken is None:
            logger.info("No chunk for this worker", extra={"slot": event["slot"]})
            return {"blocks_written": 0}
        result = taken
    else:
        result = convert_chunk(job_id, Chunk.model_validate(event["chunk"]), stores, seconds_left=seconds_left)
    metrics.add_metric(name="SnapshotBlocksWritten", unit="Count", value=result.blocks_written)
    metrics.add_metric(name="ZeroBytesSkipped", unit="Bytes", value=result.bytes_skipped)
    logger.info(
        "Chunk converted", extra={"blocks_written": result.blocks_written, "bytes_skipped": result.bytes_skipped}
    )
    return result.model_dump()
