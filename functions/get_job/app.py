"""GET /v1/{project_id}/jobs/{job_id} and GET /v1/cloudimages/job/{job_id}: the state of an import job."""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.job_views import find_job, job_progress_view, job_view
from diskport.api.models import JobProgressView, JobView
from diskport.api.resolver import current_project, make_resolver, request_stores
from diskport.errors import RequestRejectedError
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores

app = make_resolver()


@app.get("/v1/<project_id>/jobs/<job_id>")
@tracer.capture_method
def show_job(project_id: str, job_id: str, stores: Annotated[Stores, Depends(request_stores)]) -> JobView:
    if project_id != current_project(app):
        raise RequestRejectedError("IMG.0067", f"Project {project_id} is not the project of your credentials.")
    logger.set_correlation_id(job_id)
    return job_view(find_job(job_id, project_id, stores.jobs))


@app.get("/v1/cloudimages/job/<job_id>")
@tracer.capture_method
def show_job_progress(job_id: str, stores: Annotated[Stores, Depends(request_stores)]) -> JobProgressView:
    logger.set_correlation_id(job_id)
    return job_progress_view(find_job(job_id, current_project(app), stores.jobs))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
