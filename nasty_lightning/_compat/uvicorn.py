"""uvicorn internals (checked on uvicorn 0.55; ``pyproject.toml`` keeps it below 0.56).

``tests/_compat/test_uvicorn.py`` fails, naming the internal, when a release changes one of them.
"""

import asyncio

from uvicorn.protocols.http.auto import AutoHTTPProtocol


def timed_headers(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection that has not sent a whole request's headers within
    ``seconds`` of opening, or of its previous answer. uvicorn has no such timeout (its keep-alive timer stops
    at a request's first byte), so a client that sent part of its headers and then nothing held its connection
    for ever. An answer in progress, or a body being sent, is not timed. Pass it as ``http=`` to uvicorn.

    A subclass of ``AutoHTTPProtocol`` (h11's or httptools' protocol) that extends its undocumented
    ``on_response_complete()`` and reads its undocumented ``loop``, ``transport`` and ``cycle`` (the request
    being answered, with its ``response_complete``), as both protocols have them in 0.55.
    """

    class HeaderTimeout(AutoHTTPProtocol):
        header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
            super().connection_lost(exc)

        def arm_header_timer(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
            self.header_timer = self.loop.call_later(seconds, self.headers_late)

        def headers_late(self) -> None:
            idle = self.cycle is None or self.cycle.response_complete  # no request whose headers came since
            if idle and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeout
