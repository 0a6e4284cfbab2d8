"""The HTTP side shared by the API functions: one resolver setup, one mapping of errors to IMS bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from diskport.api.callers import operator_of_event, project_of_event
from diskport.api.signatures import SignatureRejectedError
from diskport.domain.requests import ims_code_of
from diskport.errors import DiskportError, RequestRejectedError
from diskport.observability import logger, metrics
from diskport.stores import Stores

CALLER_PROJECT = "caller_project"
OPERATOR = "operator"


def error_response(error: DiskportError) -> Response[str]:
    return Response(
        status_code=error.http_status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(error.to_body()),
    )


REQUEST_ID_HEADER = "X-Request-Id"


class ImsResolver(APIGatewayHttpResolver):
    """The HTTP API resolver: finds (and, with access keys, verifies) the caller first; answers `X-Request-Id`.

    Every route of every API function goes through this, including routes added later: a request whose AK/SK
    signature does not stand is answered 401 before its body is even parsed, so nothing is written.

    Every answer, a refusal included, carries the `X-Request-Id` header IMS sends. Its value is the Lambda request
    id, which the logger also writes on every line (`function_request_id`), so a request id an SDK reports (its
    exceptions' `request_id`) finds the request's logs.
    """

    for_operators = False

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        result = self._resolve_for_caller(event, context)
        request_id = getattr(context, "aws_request_id", None)
        if request_id:
            result.setdefault("headers", {})[REQUEST_ID_HEADER] = str(request_id)
        return result

    def _resolve_for_caller(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            caller = operator_of_event(event) if self.for_operators else project_of_event(event)
        except SignatureRejectedError as refused:
            logger.warning("Signature refused", extra={"code": refused.code, "reason": refused.log_reason})
            metrics.add_metric(name="SignaturesRefused", unit="Count", value=1)
            return _proxy_result(refused)
        except DiskportError as refused:  # IAM mode without IAM credentials
            logger.warning("Caller refused", extra={"code": refused.code, "reason": refused.reason})
            return _proxy_result(refused)
        # Powertools clears its context once the request is answered (a Lambda instance serves one at a time).
        self.context[OPERATOR if self.for_operators else CALLER_PROJECT] = caller
        return super().resolve(event, context)


def _proxy_result(error: DiskportError) -> dict[str, Any]:
    return {
        "statusCode": error.http_status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(error.to_body()),
        "isBase64Encoded": False,
    }


def make_resolver(*, for_operators: bool = False) -> APIGatewayHttpResolver:
    """An HTTP API resolver whose failures all answer `{"error": {"code": "IMG.xxxx", "message": ...}}`.

    Its routes serve projects (the caller's project is found, or its signature verified, first); with
    `for_operators` they serve the stack's operator instead (IAM-signed callers, whatever the Authentication).
    """
    app = ImsResolver(enable_validation=True)
    app.for_operators = for_operators

    def invalid_request(error: RequestValidationError) -> Response[str]:
        return _rejected(_rejection_of(app.current_event.body, error))

    def known_error(error: DiskportError) -> Response[str]:
        if isinstance(error, RequestRejectedError):
            return _rejected(error)
        logger.warning("Request refused", extra={"code": error.code, "reason": error.reason})
        return error_response(error)

    def undecodable_body(_: UnicodeDecodeError) -> Response[str]:
        # API Gateway base64-encodes a body that is not UTF-8, and Powertools fails decoding it before validation.
        return _rejected(RequestRejectedError("IMG.0001", "The request body is not UTF-8 encoded JSON."))

    def unsupported_content_type(_: Exception) -> Response[str]:
        rejection = RequestRejectedError("IMG.0001", "The request body must be JSON (Content-Type: application/json).")
        rejection.with_status(415)
        return _rejected(rejection)

    def unexpected_error(error: Exception) -> Response[str]:
        if app.current_event.body and not _is_json(app.current_event.headers.get("content-type", "")):
            # Powertools fails in its own ways on bodies the IMS API never takes (multipart without a boundary...).
            return unsupported_content_type(error)
        logger.exception("Unexpected error")
        return error_response(DiskportError("The service failed unexpectedly; retry later."))

    def no_route(_: Exception) -> Response[str]:
        return error_response(DiskportError("No such API route.", code="IMG.0404").with_status(404))

    # Registered by call rather than as decorators: Powertools' decorators are untyped.
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(DiskportError)(known_error)
    app.exception_handler(UnicodeDecodeError)(undecodable_body)
    app.exception_handler(RequestUnsupportedContentType)(unsupported_content_type)
    app.exception_handler(Exception)(unexpected_error)
    app.not_found(no_route)
    return app


def request_stores() -> Stores:
    """The stores one request uses: a route takes them as `stores: Annotated[Stores, Depends(request_stores)]`."""
    return Stores()


def current_project(app: APIGatewayHttpResolver) -> str:
    """The caller's project, as the resolver found it before the route ran."""
    known = app.context.get(CALLER_PROJECT)
    return str(known) if known is not None else project_of_event(app.current_event.raw_event)


def _is_json(content_type: str) -> bool:
    return content_type.strip() == "" or content_type.strip().lower().startswith("application/json")


def _rejection_of(body: str | None, error: RequestValidationError) -> RequestRejectedError:
    details = list(error.errors())
    about_body = any(tuple(detail.get("loc", ()))[:1] == ("body",) for detail in details)
    if about_body and (body is None or body.strip() == ""):
        return RequestRejectedError("IMG.0007", "The request body is empty.")
    return ims_code_of(details)


def _rejected(error: RequestRejectedError) -> Response[str]:
    metrics.add_metric(name=f"Rejected{error.code.replace('.', '')}", unit="Count", value=1)
    logger.info("Request rejected", extra={"code": error.code, "reason": error.reason})
    return error_response(error)
