"""GET /v1/cloudimages/quota: the project's private image quota and how much of it is used."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.image_quota import QuotaView, image_quota
from diskport.api.resolver import current_project, make_resolver, request_stores
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores

app = make_resolver()


@app.get("/v1/cloudimages/quota")
@tracer.capture_method
def show_image_quota(stores: Annotated[Stores, Depends(request_stores)]) -> QuotaView:
    return image_quota(current_project(app), stores.images, stores.settings)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
