"""A FHIR server may close a kept-alive connection just as it is reused: the fetch is tried
once more instead of failing the call with 412 (what made a service test flaky)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from twitch_cds.service.prefetch import _fetch

BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def _client(failures: list[Exception]) -> tuple[httpx.AsyncClient, list[str]]:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json=BUNDLE)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer)), seen


def _run(client: httpx.AsyncClient) -> Any:
    async def go() -> Any:
        async with client:
            return await _fetch(client, "http://fhir.example/fhir", "Observation?patient=1",
                                {}, 1.0, [], "observations", None)
    return asyncio.run(go())


@pytest.mark.parametrize("error", [httpx.RemoteProtocolError("Server disconnected"),
                                   httpx.ReadError("connection reset")])
def test_a_connection_closed_under_the_request_is_tried_again(error: Exception) -> None:
    client, seen = _client([error])
    assert _run(client) == BUNDLE
    assert len(seen) == 2


def test_a_second_failure_is_not_hidden() -> None:
    client, seen = _client([httpx.RemoteProtocolError("a"), httpx.RemoteProtocolError("b")])
    with pytest.raises(httpx.RemoteProtocolError):
        _run(client)
    assert len(seen) == 2
