"""The emulator's server frees each request, body and all, as soon as it has answered it."""

from __future__ import annotations

import gc
import weakref

import flask
from moto.moto_server.werkzeug_app import create_backend_app

from diskport_local.aws_emulator import install_strict_services


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
