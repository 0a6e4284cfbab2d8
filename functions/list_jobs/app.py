"""GET /v1/cloudimages/jobs: the project's import jobs, newest first (a diskport extension; IMS has no such route)."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.job_views import DEFAULT_JOBS_LIMIT, MAX_JOBS_LIMIT, list_jobs
from diskport.api.models import JobList
from diskport.api.resolver import current_project, make_resolver, request_stores
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores

app = make_resolver()


@app.get(
    "/v1/cloudimages/jobs",
    summary="List the project's import jobs, newest first (diskport extension, not part of IMS)",
)
@tracer.capture_method
def query_jobs(
    stores: Annotated[Stores, Depends(request_stores)],
    limit: Annotated[int, Query(ge=1, le=MAX_JOBS_LIMIT, description="Jobs per page.")] = DEFAULT_JOBS_LIMIT,
    marker: Annotated[
        str | None, Query(min_length=1, description="The id of the last job of the previous page.")
    ] = None,
) -> JobList:
    return list_jobs(current_project(app), stores.jobs, limit=limit, marker=marker)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
