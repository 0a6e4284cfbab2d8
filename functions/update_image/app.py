"""PATCH /v2/cloudimages/{image_id} and POST /v2/{project_id}/images/{image_id}/tags/action: change an image."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends, Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.resolver import current_project, make_resolver, request_stores
from diskport.domain.image_lifecycle import ImagePatchOperation, update_image
from diskport.domain.image_tags import TagActionRequest, change_tags, check_project
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores

app = make_resolver()


@app.patch("/v2/cloudimages/<image_id>")
@tracer.capture_method
def patch_image(
    image_id: str,
    operations: Annotated[list[ImagePatchOperation], Body()],
    stores: Annotated[Stores, Depends(request_stores)],
) -> dict[str, Any]:
    record = update_image(image_id, current_project(app), operations, stores.images)
    logger.info("Image updated", extra={"image_id": image_id, "paths": [operation.path for operation in operations]})
    metrics.add_metric(name="ImagesUpdated", unit="Count", value=1)
    return record


@app.post("/v2/<project_id>/images/<image_id>/tags/action", responses={204: {"description": "Done; no body."}})
@tracer.capture_method
def batch_tag_action(
    project_id: str,
    image_id: str,
    request: Annotated[TagActionRequest, Body()],
    stores: Annotated[Stores, Depends(request_stores)],
) -> Response[str]:
    check_project(project_id, current_project(app))
    change_tags(image_id, project_id, request, stores.images)
    logger.info("Image tags changed", extra={"image_id": image_id, "action": request.action})
    return Response(status_code=204, body="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
