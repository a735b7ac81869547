"""The uvicorn internals ``nasty_lightning._compat.uvicorn`` relies on, on a real uvicorn server, with each HTTP
implementation installed (h11 always, httptools where it is)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from nasty_lightning._compat import uvicorn as compat
from nasty_lightning._compat.uvicorn import timed_headers

TIMEOUT = 0.5


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(3 * TIMEOUT)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _protocols() -> list:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    found = [H11Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        pass
    else:
        found.append(HttpToolsProtocol)
    return found


@pytest.fixture(params=_protocols(), ids=lambda p: p.__name__)
def port(request, monkeypatch):
    monkeypatch.setattr(compat, "AutoHTTPProtocol", request.param)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, http=timed_headers(TIMEOUT), lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(10)


def _closed_after(connection: socket.socket) -> float:
    """Seconds until the server closes ``connection`` (reading and dropping what it answers)."""
    started = time.monotonic()
    while connection.recv(1024):
        pass
    return time.monotonic() - started


def test_a_connection_without_whole_headers_is_closed_in_time(port):
    for sent in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):  # nothing, or part of the headers
        with socket.create_connection(("127.0.0.1", port), timeout=5 * TIMEOUT) as connection:
            connection.sendall(sent)
            assert _closed_after(connection) < 3 * TIMEOUT, (
                "uvicorn's protocol no longer has the loop, transport and cycle that timed_headers reads"
            )


@pytest.mark.slow
def test_an_answer_in_progress_is_not_cut_and_an_idle_connection_is_closed_after_it(port):
    with socket.create_connection(("127.0.0.1", port), timeout=20 * TIMEOUT) as connection:
        connection.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert connection.recv(1024).startswith(b"HTTP/1.1 200")  # answered after 3 timeouts, not cut
        started = time.monotonic()
        while connection.recv(1024):
            pass
        waited = time.monotonic() - started
    assert TIMEOUT * 0.5 < waited < 3 * TIMEOUT, (
        "uvicorn no longer calls its protocol's on_response_complete() after an answer: the header timer of "
        "timed_headers is not armed again"
    )
