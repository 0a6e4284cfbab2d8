"""The emulator's server frees each request, body and all, once answered, and finds each request's service fast."""

from __future__ import annotations

import gc
import weakref

import flask
import pytest
from moto import backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from diskport_emulator import install_strict_services


def test_a_request_is_freed_when_answered_without_waiting_for_the_garbage_collector() -> None:
    install_strict_services()
    app = create_backend_app("s3")  # in debug mode, as moto's server runs it
    gc.disable()  # only reference counting frees anything now
    try:
        with app.test_request_context("/bucket/part", method="PUT", data=b"\x5a" * 1024 * 1024):
            request = flask.request._get_current_object()  # type: ignore[attr-defined]
            assert request.get_data() and not request.form  # the body read, the form data loaded
            answered = weakref.ref(request)
            del request
        assert answered() is None
    finally:
        gc.enable()


def test_each_hosts_service_is_looked_up_once_and_each_service_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    install_strict_services()
    listings = []
    listing = backends.list_of_moto_modules
    monkeypatch.setattr(backends, "list_of_moto_modules", lambda: listings.append(1) or listing())
    dispatcher = DomainDispatcherApplication(create_backend_app)

    found = [dispatcher.get_backend_for_host(host) for host in ("ebs.us-east-1.amazonaws.com", "s3.amazonaws.com")]
    again = [dispatcher.get_backend_for_host(host) for host in ("ebs.us-east-1.amazonaws.com", "s3.amazonaws.com")]

    assert found == again == ["ebs", "s3"]
    assert len(listings) == 2
