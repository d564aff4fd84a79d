"""Prefetch: use what the client sent, fetch what it left out from its FHIR server.

A key counts as satisfied when the client sent a resource or Bundle for it. A key left
out, sent as ``null``, or answered with an OperationOutcome is fetched from ``fhirServer``
with the ``fhirAuthorization`` bearer token (concurrently, with a timeout, following Bundle
``next`` links). A required key that can be neither prefetched nor fetched is ``Missing``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from twitch_cds.service.discovery import Prefetch

MAX_PAGES = 20
TOKEN = re.compile(r"\{\{\s*context\.(\w+)\s*\}\}")


class Missing(Exception):
    """Required data could neither be prefetched nor fetched (HTTP 412)."""


@dataclass
class Resolved:
    prefetch: dict[str, Any]
    fetched: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def render(template: str, context: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        item = context.get(match.group(1))
        if not isinstance(item, str | int):
            raise Missing(f"context.{match.group(1)} is needed to fetch {template.split('?')[0]}")
        return quote(str(item), safe="")
    return TOKEN.sub(value, template)


def _satisfied(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") not in (None, "OperationOutcome")


async def _fetch(client: httpx.AsyncClient, base: str, query: str, headers: dict[str, str],
                 timeout_s: float) -> dict[str, Any]:
    url: str | None = f"{base.rstrip('/')}/{query}"
    first: dict[str, Any] | None = None
    pages = 0
    while url and pages < MAX_PAGES:
        response = await client.get(url, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        page = response.json()
        pages += 1
        if first is None:
            first = page
        else:
            first.setdefault("entry", []).extend(page.get("entry", []))
        url = None
        if page.get("resourceType") == "Bundle":
            url = next((link.get("url") for link in page.get("link", [])
                        if link.get("relation") == "next"), None)
    assert first is not None
    first.pop("link", None)
    return first


async def resolve(request: dict[str, Any], templates: dict[str, Prefetch],
                  client: httpx.AsyncClient, timeout_s: float) -> Resolved:
    """``client`` is shared across requests: making one costs ~20 ms (its TLS context)."""
    given = dict(request.get("prefetch") or {})
    wanted = {key: p for key, p in templates.items() if not _satisfied(given.get(key))}
    resolved = Resolved({k: v for k, v in given.items() if _satisfied(v)})
    if not wanted:
        return resolved
    server = request.get("fhirServer")
    if not isinstance(server, str) or not server:
        required = [k for k, p in wanted.items() if p.required]
        if required:
            raise Missing(f"prefetch keys {', '.join(required)} were absent or empty, and "
                          "the request has no fhirServer to fetch them from")
        return resolved
    headers = {"Accept": "application/fhir+json, application/json"}
    authorization = request.get("fhirAuthorization") or {}
    if isinstance(authorization, dict) and authorization.get("access_token"):
        headers["Authorization"] = f"Bearer {authorization['access_token']}"
    context = request.get("context") or {}
    queries = {key: render(p.template, context) for key, p in wanted.items()}
    results = await asyncio.gather(
        *(_fetch(client, server, query, headers, timeout_s) for query in queries.values()),
        return_exceptions=True)
    for (key, prefetch), result in zip(wanted.items(), results, strict=True):
        if isinstance(result, BaseException):
            reason = type(result).__name__
            if isinstance(result, httpx.HTTPStatusError):
                reason = f"HTTP {result.response.status_code}"
            if prefetch.required:
                raise Missing(f"prefetch key {key!r} was absent and fetching it from the "
                              f"FHIR server failed ({reason})")
            resolved.problems.append(f"{key}: {reason}")
            continue
        resolved.prefetch[key] = result
        resolved.fetched.append(key)
    return resolved
