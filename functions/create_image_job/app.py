"""POST /v1/cloudimages/dataimages/action (and its /v2.1/ alias): accept an import and answer its job id."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.models import CreateJobResponse
from diskport.api.resolver import current_project, make_resolver, request_stores
from diskport.domain.imports import start_import
from diskport.domain.requests import CreateDataImageRequest
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores

app = make_resolver()


@app.post("/v1/cloudimages/dataimages/action")
@app.post("/v2.1/cloudimages/dataimages/action")  # the SDK's create_data_image_in_safe_mode: the same request
@tracer.capture_method
def create_data_image(
    request: Annotated[CreateDataImageRequest, Body()], stores: Annotated[Stores, Depends(request_stores)]
) -> CreateJobResponse:
    job = start_import(request, current_project(app), stores)
    logger.set_correlation_id(job.job_id)
    logger.info("Import accepted", extra={"image_url": request.image_url, "min_disk": request.min_disk})
    metrics.add_metric(name="JobsCreated", unit="Count", value=1)
    return CreateJobResponse(job_id=job.job_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
