"""Register step: complete the snapshot, make the image active and the job SUCCESS."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.observability import logger, metrics, tracer
from diskport.pipeline.register import register_image
from diskport.pipeline.step_errors import reported_for_the_state_machine
from diskport.stores import Stores


@logger.inject_lambda_context(correlation_id_path="job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@reported_for_the_state_machine
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = register_image(str(event["job_id"]), Stores())
    metrics.add_metric(name="ImagesRegistered", unit="Count", value=1)
    return result.model_dump()
