"""Local mode's port check: a port whose last connections linger in TIME_WAIT is free to start on again, a port
another process listens on is refused with a clear message."""

from __future__ import annotations

import socket

import pytest

from diskport_local.server import LOCAL_HOST, ensure_port_free


def port_left_in_time_wait() -> int:
    """A port whose server closed a connection first (as local mode's do on stop), then stopped listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOCAL_HOST, 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        with socket.create_connection((LOCAL_HOST, port)) as client:
            served, _ = listener.accept()
            served.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
            served.close()  # the server's side closes first: it is the one that waits in TIME_WAIT
            client.recv(64)
    return port


def test_a_port_whose_connections_linger_in_time_wait_is_free_to_start_on() -> None:
    # Given a port local mode just stopped serving on
    port = port_left_in_time_wait()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain, pytest.raises(OSError):
        plain.bind((LOCAL_HOST, port))  # (a bind without SO_REUSEADDR is refused: the connection is in TIME_WAIT)

    # Then the check lets local mode start on it again
    ensure_port_free(port, "AWS emulator")


def test_a_port_another_process_listens_on_is_refused_with_its_number() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind((LOCAL_HOST, 0))
        other.listen()
        port = int(other.getsockname()[1])
        with pytest.raises(OSError, match=f"Port {port} for the API front is in use"):
            ensure_port_free(port, "API front")
