"""DELETE /v2/images/{image_id}: delete an image and its snapshot, freeing its place in the project's quota."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends, Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.resolver import current_project, make_resolver, request_stores
from diskport.domain.image_lifecycle import DeleteImageRequest, delete_image
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores

app = make_resolver()


@app.delete("/v2/images/<image_id>", responses={204: {"description": "Done; no body."}})
@tracer.capture_method
def delete_data_image(
    image_id: str,
    stores: Annotated[Stores, Depends(request_stores)],
    request: Annotated[DeleteImageRequest | None, Body()] = None,
) -> Response[str]:
    delete_image(image_id, current_project(app), stores)
    logger.info("Image deleted", extra={"image_id": image_id})
    metrics.add_metric(name="ImagesDeleted", unit="Count", value=1)
    return Response(status_code=204, body="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
