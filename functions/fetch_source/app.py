"""Fetch step: inspect the source file, create the image record and the snapshot, write the chunk plan."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.observability import logger, metrics, tracer
from diskport.pipeline.fetch import fetch_source
from diskport.pipeline.step_errors import reported_for_the_state_machine
from diskport.stores import Stores


@logger.inject_lambda_context(correlation_id_path="job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@reported_for_the_state_machine
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = fetch_source(str(event["job_id"]), Stores())
    metrics.add_metric(name="ChunksPlanned", unit="Count", value=result.chunk_count)
    return result.model_dump()
