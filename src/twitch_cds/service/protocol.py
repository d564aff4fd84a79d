"""uvicorn's httptools protocol with a header read timeout (``twitch-cds serve``).

uvicorn times out idle keep-alive connections but not a request whose line and headers
trickle in (or never finish): such a connection is closed once ``header_read_timeout_s``
passes without complete headers. The body has its own timeout in the app
(``body_read_timeout_ms``, answered 408). Relies on uvicorn's ``HttpToolsProtocol``
callbacks (``connection_made``, ``on_message_begin``, ``on_headers_complete``,
``connection_lost``); ``tests/service/test_serve.py`` checks the behaviour.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from twitch_cds.service.config import load_config


class HeaderTimeoutProtocol(HttpToolsProtocol):
    timeout_s: float | None = None
    """Read from the service configuration on the first connection of each worker."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if HeaderTimeoutProtocol.timeout_s is None:
            HeaderTimeoutProtocol.timeout_s = load_config().header_read_timeout_s
        self._header_timer = self.loop.call_later(HeaderTimeoutProtocol.timeout_s,
                                                  self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
