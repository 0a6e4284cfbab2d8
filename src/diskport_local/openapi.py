"""The API's OpenAPI document, generated from the functions' own routes and models.

Each API function (`functions/<x>/app.py`) has a Powertools resolver, `app`, whose route annotations are
the request and response models (`diskport.domain.requests`, `diskport.api.models`). Powertools' own
`OpenAPIMerge` merges their documents into one, refusing two functions that claim the same operation, and
the validation error Powertools would describe (422) is replaced by what the service really answers: the
IMS error body with the HTTP statuses it uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server
from diskport.api.models import ErrorBody

from diskport_emulator import LocalStack

TITLE = "diskport - IMS-compatible data disk image import"
DESCRIPTION = (
    "The Image Management Service (IMS) calls for importing a data disk image from a virtual disk file in a "
    "bucket, and following the import job. Deployed, every request is signed with AWS SigV4 (service "
    "execute-api); the caller's AWS account is the project. Local mode performs no authentication."
)
_POWERTOOLS_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")

# What each kind of failure looks like to a caller; all carry {"error": {"code": "IMG.xxxx", "message": ...}}.
# Every IMG code answers 400, as IMS's error-code table gives it (flow control and IMG.0061 included).
_ERROR_STATUSES = {
    "400": "The request breaks an IMS rule, or could not be carried out (error.code says which).",
    "401": "The request is not signed (deployed stacks only).",
    "404": "No such job, image or route for this project.",
    "500": "The function itself failed (API Gateway's answer).",
}
_BODY_STATUSES = {
    "413": "The request body is larger than 10 MB.",
    "415": "The request body is not JSON.",
}


def openapi_document(stack: LocalStack, handler_module: Callable[[str], ModuleType]) -> dict[str, Any]:
    """One OpenAPI 3.1 document for every HTTP route `template.yaml` declares, from each function's handler module."""
    merge = OpenAPIMerge(
        title=TITLE,
        version=_package_version(),
        description=DESCRIPTION,
        servers=[Server(url="/")],
        security_schemes={
            "sigv4": APIKey.model_validate(
                {
                    "in": APIKeyIn.header,
                    "name": "Authorization",
                    "description": "AWS Signature Version 4, service execute-api (deployed stacks).",
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
            )
        },
        security=[{"sigv4": []}],
        on_conflict="error",
    )
    for function in sorted({route.function for route in stack.api_routes()}):
        resolver = getattr(handler_module(function), "app", None)
        if resolver is not None:
            merge.add_schema(json.loads(resolver.get_openapi_json_schema(title=TITLE)))
    document: dict[str, Any] = json.loads(merge.get_openapi_json_schema())
    _describe_ims_errors(document)
    return document


def _describe_ims_errors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            statuses = {**_ERROR_STATUSES, **(_BODY_STATUSES if "requestBody" in operation else {})}
            for status, description in statuses.items():
                responses.setdefault(status, {"description": description, "content": error_content})
    for name in _POWERTOOLS_VALIDATION_SCHEMAS:
        schemas.pop(name, None)


def _package_version() -> str:
    try:
        return version("diskport")
    except PackageNotFoundError:
        return "0.0.0"
