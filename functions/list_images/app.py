"""GET /v2/cloudimages (IMS "Querying Images") and GET /v2/{project_id}/images/{image_id}/tags: the caller's images."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.image_queries import ImageList, ImageQuery, list_images, query_parameters_openapi
from diskport.api.resolver import current_project, make_resolver, request_stores
from diskport.domain.image_tags import ImageTagList, check_project, image_tags
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores

app = make_resolver()


# The filters are read from the raw query, so a parameter IMS does not document is refused, not ignored.
@app.get("/v2/cloudimages", openapi_extensions={"parameters": query_parameters_openapi()})
@tracer.capture_method
def query_images(stores: Annotated[Stores, Depends(request_stores)]) -> ImageList:
    query = ImageQuery.from_parameters(app.current_event.query_string_parameters or {})
    return list_images(current_project(app), query, stores.images)


@app.get("/v2/<project_id>/images/<image_id>/tags")
@tracer.capture_method
def show_image_tags(project_id: str, image_id: str, stores: Annotated[Stores, Depends(request_stores)]) -> ImageTagList:
    check_project(project_id, current_project(app))
    return image_tags(image_id, project_id, stores.images)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
