"""Faults injected where AWS would produce them: at the wire, in the answers of the emulated services.

moto serves every boto3 request of this process through one `before-send` handler (`BotocoreStubber`). A
`WireFaults` sits in front of it: for the operations it is told about, it answers the fault a real service
would send (a throttling or 5xx error body in the service's own protocol) or lets the request time out,
a bounded number of times, and otherwise lets moto serve the request. The request never reaches moto when
it is faulted, so a faulted write has no effect, as with a real throttled or failed request.

Because the fault is in the answer, every layer above it reacts as it would on AWS: botocore's retries
(adaptive mode, 8 attempts), then the step's error mapping, then the state machine's Retry rules.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse


@dataclass
class Fault:
    """`times` faulty answers to `service`.`operation`, after letting `after` requests through."""

    service: str
    operation: str
    kind: str  # "error" (an error answer) or "timeout" (no answer within the read timeout)
    times: int
    status: int = 500
    code: str = ""
    after: int = 0
    seen: int = 0
    injected: int = 0

    def applies_to(self, service: str, operation: str) -> bool:
        return (self.service, self.operation) == (service, operation)


@dataclass
class WireFaults:
    """The faults to inject, and a count of every request each operation received."""

    faults: list[Fault] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, service: str, operation: str, *, status: int, code: str, times: int, after: int = 0) -> Fault:
        fault = Fault(service, operation, "error", times, status=status, code=code, after=after)
        self.faults.append(fault)
        return fault

    def timeout(self, service: str, operation: str, *, times: int, after: int = 0) -> Fault:
        fault = Fault(service, operation, "timeout", times, after=after)
        self.faults.append(fault)
        return fault

    def answer(self, event_name: str, request: Any) -> AWSResponse | None:
        """The faulty answer for this request, or None to let the emulated service answer it."""
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            self.requests[f"{service}.{operation}"] = self.requests.get(f"{service}.{operation}", 0) + 1
            fault = next((fault for fault in self.faults if fault.applies_to(service, operation)), None)
            if fault is None:
                return None
            fault.seen += 1
            if fault.seen <= fault.after or fault.injected >= fault.times:
                return None
            fault.injected += 1
        if fault.kind == "timeout":
            raise ReadTimeoutError(endpoint_url=request.url)
        status, headers, body = error_answer(service, fault.status, fault.code)
        return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]

    def install(self, monkeypatch: Any) -> None:
        serve = BotocoreStubber.__call__

        def faulty_or_served(stubber: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
            if stubber.enabled:
                faulty = self.answer(event_name, request)
                if faulty is not None:
                    return faulty
            return serve(stubber, event_name, request, **kwargs)

        monkeypatch.setattr(BotocoreStubber, "__call__", faulty_or_served)


def error_answer(service: str, status: int, code: str) -> tuple[int, dict[str, str], bytes]:
    """An error answer as the service writes it: status, headers, body in the service's protocol."""
    message = f"{code} injected by the reliability suite"
    # Every AWS answer names its request; moto's Step Functions interpreter reads that name from an error.
    request_ids = {"x-amzn-requestid": "injected-fault", "x-amz-request-id": "injected-fault"}
    if service == "s3":
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
        return status, {"content-type": "application/xml", **request_ids}, body.encode()
    if service == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>injected</RequestID></Response>"
        )
        return status, {"content-type": "text/xml", **request_ids}, body.encode()
    if service == "dynamodb":
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
        return status, {"content-type": "application/x-amz-json-1.0", **request_ids}, body.encode()
    # rest-json services (EBS direct, ...): the error type travels in a header
    return (
        status,
        {"content-type": "application/json", "x-amzn-errortype": code},
        json.dumps({"message": message}).encode(),
    )
