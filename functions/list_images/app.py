"""GET /v2/cloudimages: the caller's images (IMS "Querying Images"), filtered and paged."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api import current_project, make_resolver
from diskport.image_queries import DEFAULT_LIMIT, MAX_LIMIT, ImageList, list_images
from diskport.images import ImageFilters
from diskport.observability import logger, metrics, tracer

app = make_resolver()


@app.get("/v2/cloudimages")
@tracer.capture_method
def query_images(
    id: Annotated[str | None, Query(min_length=1, description="Only the image with this id.")] = None,
    name: Annotated[str | None, Query(description="Only images with this name.")] = None,
    status: Annotated[str | None, Query(description="queued, saving, active, killed or deleted.")] = None,
    image_type: Annotated[str | None, Query(alias="__imagetype", description="private for imported images.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Images per page.")] = DEFAULT_LIMIT,
    marker: Annotated[
        str | None, Query(min_length=1, description="The id of the last image of the previous page.")
    ] = None,
) -> ImageList:
    filters = ImageFilters(id=id, name=name, status=status, imagetype=image_type)
    return ImageList.model_validate(list_images(current_project(app), filters, limit=limit, marker=marker))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
