"""The local HTTP front: what API Gateway does for the deployed stack, for every route in `template.yaml`.

moto does not run API Gateway integrations, so this front matches a request to the template's routes,
builds the HTTP API (payload 2.0) proxy event, calls the route's function and turns its answer back into
an HTTP response. It also serves the OpenAPI document at `/openapi.json`. Local mode has no IAM: the
functions run with PROJECT_ID_SOURCE=local, so every caller is the local project.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from diskport.errors import DiskportError
from diskport.observability import logger

from diskport_emulator.event_sources.http_api_events import http_api_event
from diskport_emulator.template import ApiRoute
from diskport_local import api_page

# API Gateway HTTP APIs refuse request bodies over 10 MB.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
OPENAPI_PATH = "/openapi.json"

# Calls a function by logical id: (JSON payload, whether the function failed), as Lambda answers.
FunctionInvoker = Callable[[str, dict[str, Any]], tuple[str, bool]]


@dataclass(frozen=True)
class FrontRequest:
    method: str
    target: str  # the path and query exactly as the client sent them
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class FrontResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


def ims_error_response(error: DiskportError) -> FrontResponse:
    return FrontResponse(
        error.http_status, {"content-type": "application/json"}, json.dumps(error.to_body()).encode("utf-8")
    )


class ApiFront:
    """Routes requests to the template's API functions the way API Gateway's Lambda proxy integration does."""

    def __init__(
        self,
        routes: list[ApiRoute],
        invoke: FunctionInvoker,
        openapi_document: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.routes = routes
        self._invoke = invoke
        self._openapi_document = openapi_document

    def answer(self, request: FrontRequest) -> FrontResponse:
        split = urlsplit(request.target)
        path, raw_query = split.path or "/", split.query
        if request.method == "GET" and path == OPENAPI_PATH and self._openapi_document is not None:
            body = json.dumps(self._openapi_document(), indent=2).encode("utf-8")
            return FrontResponse(200, {"content-type": "application/json"}, body)
        if request.method == "GET" and path in ("/", api_page.SWAGGER_PATH) and self._openapi_document is not None:
            if path == "/":
                status, headers, body = api_page.index(
                    "text/html" in _joined_headers(request.headers).get("accept", "")
                )
                return FrontResponse(status, headers, body)
            return FrontResponse(
                200, {"content-type": "text/html; charset=utf-8"}, api_page.swagger_page(self._openapi_document())
            )
        if len(request.body) > MAX_REQUEST_BYTES:
            return ims_error_response(
                DiskportError("The request body is larger than 10 MB.", code="IMG.0001").with_status(413)
            )
        route, path_parameters = self._route_for(request.method, path)
        if route is None:
            return ims_error_response(
                DiskportError(f"No API route {request.method} {path}.", code="IMG.0404").with_status(404)
            )
        event = http_api_event(
            route,
            path=unquote(path),  # API Gateway's HTTP API hands functions the path percent-decoded
            path_parameters=path_parameters or None,
            query=_query_parameters(raw_query),
            raw_query=raw_query,
            headers=_joined_headers(request.headers),
            body=request.body if request.body else None,
        )
        payload, failed = self._invoke(route.function, event)
        if failed:
            # API Gateway answers a failed integration with a bare 500; the IMS body keeps clients parsing.
            logger.error("API function failed", extra={"function": route.function, "error": payload})
            return ims_error_response(
                DiskportError("The API function failed; see the local mode log.").with_status(500)
            )
        return _response_from_proxy_result(json.loads(payload))

    def _route_for(self, method: str, path: str) -> tuple[ApiRoute | None, dict[str, str]]:
        for route in self.routes:
            raw_parameters = route.match(method, path)
            if raw_parameters is not None:
                return route, {name: unquote(value) for name, value in raw_parameters.items()}
        return None, {}


def _query_parameters(raw_query: str) -> dict[str, str]:
    """API Gateway (payload 2.0) joins repeated query parameters with commas."""
    parameters: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        parameters.setdefault(name, []).append(value)
    return {name: ",".join(values) for name, values in parameters.items()}


def _joined_headers(headers: Mapping[str, str]) -> dict[str, str]:
    if hasattr(headers, "get_all"):  # http.client.HTTPMessage: repeated headers, joined as API Gateway does
        return {name.lower(): ",".join(headers.get_all(name) or []) for name in set(headers.keys())}
    return {name.lower(): value for name, value in headers.items()}


def _response_from_proxy_result(result: Any) -> FrontResponse:
    """A payload 2.0 proxy result as API Gateway turns it into HTTP (a bare value means 200 JSON)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return FrontResponse(200, {"content-type": "application/json"}, json.dumps(result).encode("utf-8"))
    headers = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ",".join(str(value) for value in values)
    body_text = result.get("body") or ""
    body = base64.b64decode(body_text) if result.get("isBase64Encoded") else str(body_text).encode("utf-8")
    headers.setdefault("content-type", "application/json")
    return FrontResponse(int(result["statusCode"]), headers, body)


class _FrontRequestHandler(BaseHTTPRequestHandler):
    front: ApiFront
    protocol_version = "HTTP/1.1"
    server_version = "diskport-local"

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            # Answer without reading the rest of a body that would only be refused; the connection is spent.
            response = ims_error_response(
                DiskportError("The request body is larger than 10 MB.", code="IMG.0001").with_status(413)
            )
            self.close_connection = True
        else:
            request = FrontRequest(self.command, self.path, self.headers, body)  # type: ignore[arg-type]
            try:
                response = self.front.answer(request)
            except Exception as error:  # the front itself must never take local mode down
                logger.exception("Local front failed")
                response = ims_error_response(DiskportError(f"The local front failed: {error}").with_status(500))
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _read_body(self) -> bytes | None:
        """The request body, whether sized or chunked; None when it is over API Gateway's limit."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks, size = [], 0
            while chunk_size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                size += chunk_size
                if size > MAX_REQUEST_BYTES:
                    return None
                chunks.append(self.rfile.read(chunk_size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailer fields, unused
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def __getattr__(self, name: str) -> Any:
        # http.server looks up `do_<METHOD>`; API Gateway hands every method, even TRACE, to route matching.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("front: " + format % args)


class _FrontHttpServer(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: more clients connecting at once were refused (the load bench's
    # burst of 20 concurrent creates lost 6 to "connection refused"). The kernel caps this at somaxconn.
    request_queue_size = 1024
    daemon_threads = True


class FrontServer:
    """The front on a threaded HTTP server, in a background thread."""

    def __init__(self, front: ApiFront, host: str = "127.0.0.1", port: int = 3000) -> None:
        handler = type("FrontRequestHandler", (_FrontRequestHandler,), {"front": front})
        self._server = _FrontHttpServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="diskport-front", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
