"""GET /v2/cloudimages: the caller's images (IMS "Querying Images"), filtered and paged."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api import current_project, make_resolver
from diskport.image_queries import list_images
from diskport.observability import logger, metrics, tracer

app = make_resolver()


@app.get("/v2/cloudimages")
@tracer.capture_method
def query_images() -> dict[str, Any]:
    return list_images(current_project(app), app.current_event.query_string_parameters or {})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
