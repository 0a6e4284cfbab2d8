"""GET /v1/cloudimages/quota: the project's private image quota and how much of it is used."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api import current_project, make_resolver
from diskport.image_quota import QuotaView, image_quota
from diskport.observability import logger, metrics, tracer

app = make_resolver()


@app.get("/v1/cloudimages/quota")
@tracer.capture_method
def show_image_quota() -> QuotaView:
    return image_quota(current_project(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
