"""The local HTTP front: what API Gateway does for the deployed stack, for every route in `template.yaml`.

moto does not run API Gateway integrations, so this front matches a request to the template's routes,
builds the HTTP API (payload 2.0) proxy event, calls the route's function and turns its answer back into
an HTTP response. Whoever runs the front may serve pages of its own first (`pages`, e.g. an OpenAPI document)
and choose the body of the answers no function gives (`error_response`: no route, a body over 10 MB, a failed
function); by default they are API Gateway's `{"message": ...}`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from diskport_emulator.event_sources.http_api_events import http_api_event
from diskport_emulator.template import ApiRoute

# API Gateway HTTP APIs refuse request bodies over 10 MB.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
logger = logging.getLogger(__name__)

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


# The front's own answers (no route, a body too large, a failed function): (HTTP status, what went wrong) -> response.
ErrorResponse = Callable[[int, str], FrontResponse]
# Pages served before any route is matched: a response, or None to route the request.
Pages = Callable[[FrontRequest], FrontResponse | None]


def api_gateway_error(status: int, message: str) -> FrontResponse:
    """An answer in API Gateway's own shape, `{"message": ...}`."""
    return FrontResponse(status, {"content-type": "application/json"}, json.dumps({"message": message}).encode("utf-8"))


class ApiFront:
    """Routes requests to the template's API functions the way API Gateway's Lambda proxy integration does."""

    def __init__(
        self,
        routes: list[ApiRoute],
        invoke: FunctionInvoker,
        *,
        pages: Pages | None = None,
        error_response: ErrorResponse = api_gateway_error,
    ) -> None:
        self.routes = routes
        self._invoke = invoke
        self._pages = pages
        self.error_response = error_response

    def answer(self, request: FrontRequest) -> FrontResponse:
        page = self._pages(request) if self._pages is not None else None
        if page is not None:
            return page
        split = urlsplit(request.target)
        path, raw_query = split.path or "/", split.query
        if len(request.body) > MAX_REQUEST_BYTES:
            return self.error_response(413, "The request body is larger than 10 MB.")
        route, path_parameters = self._route_for(request.method, path)
        if route is None:
            return self.error_response(404, f"No API route {request.method} {path}.")
        event = http_api_event(
            route,
            path=unquote(path),  # API Gateway's HTTP API hands functions the path percent-decoded
            path_parameters=path_parameters or None,
            query=_query_parameters(raw_query),
            raw_query=raw_query,
            headers=joined_headers(request.headers),
            body=request.body if request.body else None,
        )
        payload, failed = self._invoke(route.function, event)
        if failed:
            # API Gateway answers a failed integration with a bare 500.
            logger.error("API function %s failed: %s", route.function, payload)
            return self.error_response(500, "The API function failed; see the log.")
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


def joined_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's headers, names in lower case, a repeated header's values joined with commas."""
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
            response = self.front.error_response(413, "The request body is larger than 10 MB.")
            self.close_connection = True
        else:
            request = FrontRequest(self.command, self.path, self.headers, body)  # type: ignore[arg-type]
            try:
                response = self.front.answer(request)
            except Exception as error:  # the front itself must never take the emulator down
                logger.exception("The HTTP front failed")
                response = self.front.error_response(500, f"The local front failed: {error}")
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
