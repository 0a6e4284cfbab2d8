"""POST/GET /diskport/access-keys and DELETE /diskport/access-keys/{access_key}: the operator's IMS access keys.

Called with the operator's IAM credentials (`diskport access-key create|list|revoke --endpoint ...`). The secret
of a new key is in the answer to its creation and nowhere else: not in the logs, not in `list`.
"""

# No `from __future__ import annotations` here: the event handler reads the route annotations at runtime.

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from diskport.api.resolver import OPERATOR, make_resolver, request_stores
from diskport.observability import logger, metrics, tracer
from diskport.stores import Stores
from diskport.stores.access_keys import AccessKeyList, AccessKeyView, NewAccessKeyRequest

app = make_resolver(for_operators=True)


@app.post("/diskport/access-keys")
@tracer.capture_method
def create_access_key(
    request: Annotated[NewAccessKeyRequest, Body()], stores: Annotated[Stores, Depends(request_stores)]
) -> Response[str]:
    created = stores.access_keys.create(request.project_id)
    logger.info(
        "Access key created",
        extra={"access_key": created.access_key, "project_id": created.project_id, "operator": app.context[OPERATOR]},
    )
    metrics.add_metric(name="AccessKeysCreated", unit="Count", value=1)
    return Response(201, content_types.APPLICATION_JSON, created.model_dump_json())


@app.get("/diskport/access-keys")
@tracer.capture_method
def list_access_keys(stores: Annotated[Stores, Depends(request_stores)]) -> AccessKeyList:
    return AccessKeyList(access_keys=stores.access_keys.list())


@app.delete("/diskport/access-keys/<access_key>")
@tracer.capture_method
def revoke_access_key(access_key: str, stores: Annotated[Stores, Depends(request_stores)]) -> AccessKeyView:
    revoked = stores.access_keys.revoke(access_key)
    logger.info(
        "Access key revoked",
        extra={"access_key": access_key, "project_id": revoked.project_id, "operator": app.context[OPERATOR]},
    )
    return revoked


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
