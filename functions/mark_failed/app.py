"""MarkFailed: end a failed import (from the state machine's Catch or the EventBridge rule on failed executions)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.observability import logger, metrics, tracer
from diskport.pipeline.failure import FailedImport, mark_import_failed
from diskport.stores import Stores


@logger.inject_lambda_context(correlation_id_path="job_id || detail.name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = mark_import_failed(FailedImport.from_event(event), Stores())
    if outcome.error_code:
        metrics.add_metric(name=f"ImportsFailed{outcome.error_code.replace('.', '')}", unit="Count", value=1)
    return outcome.model_dump()
