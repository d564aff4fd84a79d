"""Prefetch: use what the client sent, fetch what it left out from its FHIR server.

A key counts as satisfied when the client sent a resource or Bundle for it (or for the
whole group it is a part of: ``observations`` satisfies ``observations-1``, ...). A key left
out, sent as ``null``, or answered with an OperationOutcome is fetched from ``fhirServer``
with the ``fhirAuthorization`` bearer token (concurrently, with a timeout, following Bundle
``next`` links). A required key that can be neither prefetched nor fetched is ``Missing``.

The bearer token goes to ``fhirServer``'s origin only: a ``next`` link to another scheme,
host or port is not followed, and the app refuses a ``fhirServer`` that is not https (or not
on the client's allowlist) before anything is sent. What could not be fetched (a failed
optional key, a refused link, results cut at the page limit) is in ``Resolved.problems``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from twitch_cds.service.hook_body import resource_type
from twitch_cds.service.metrics import ServiceMetrics, fetch_failure_reason
from twitch_cds.service.templates import Prefetch

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


def origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default port made explicit) of a URL."""
    parsed = httpx.URL(url)
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme)
    return parsed.scheme, parsed.host.lower(), port


def fhir_server_refusal(server: str, *, allow_insecure: bool,
                        allowed_origins: list[str]) -> str | None:
    """Why the service will not send a bearer token to ``server``, or None."""
    try:
        where = origin(server)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "fhirServer is not a valid URL"
    if where[0] != "https" and not (where[0] == "http" and allow_insecure):
        return "fhirServer must be an https URL"
    if not where[1]:
        return "fhirServer has no host"
    if allowed_origins and where not in {origin(o) for o in allowed_origins}:
        return "fhirServer is not on this client's list of FHIR servers"
    return None


def _satisfied(value: Any) -> bool:
    """A resource or Bundle (parsed, or raw JSON text as the HTTP side keeps it)."""
    return resource_type(value) not in (None, "OperationOutcome")


async def _get(client: httpx.AsyncClient, url: httpx.URL, headers: dict[str, str],
               timeout_s: float) -> httpx.Response:
    """A GET, sent once more when the connection failed before any answer: a FHIR server
    closes an idle kept-alive connection whenever it likes, and a reused one can be closed
    under the request (a search is idempotent, and the deadline still bounds both tries)."""
    try:
        return await client.get(url, headers=headers, timeout=timeout_s)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        return await client.get(url, headers=headers, timeout=timeout_s)


async def _fetch(client: httpx.AsyncClient, base: str, query: str, headers: dict[str, str],
                 timeout_s: float, problems: list[str], key: str,
                 metrics: ServiceMetrics | None) -> dict[str, Any]:
    home = origin(base)
    url: httpx.URL | None = httpx.URL(f"{base.rstrip('/')}/{query}")
    first: dict[str, Any] | None = None
    pages = 0
    while url is not None:
        if pages == MAX_PAGES:
            problems.append(f"{key}: results cut at {MAX_PAGES} pages")
            break
        if metrics is not None:
            metrics.fhir_fetches.labels(key).inc()
        response = await _get(client, url, headers, timeout_s)
        response.raise_for_status()
        page = response.json()
        if not isinstance(page, dict):
            raise ValueError("the FHIR server's answer is not a JSON object")
        pages += 1
        if first is None:
            first = page
        else:
            first.setdefault("entry", []).extend(page.get("entry") or [])
        url = None
        link = next((link.get("url") for link in page.get("link") or []
                     if isinstance(link, dict) and link.get("relation") == "next"), None)
        if page.get("resourceType") == "Bundle" and isinstance(link, str):
            following = httpx.URL(str(response.url)).join(link)
            if origin(following) == home:
                url = following
            else:  # never send the token elsewhere
                problems.append(f"{key}: a next link to another origin was not followed; "
                                f"results cut at {pages} page(s)")
    assert first is not None
    first.pop("link", None)
    return first


async def resolve(request: dict[str, Any], templates: dict[str, Prefetch],
                  client: httpx.AsyncClient, timeout_s: float,
                  refusal: str | None = None,
                  metrics: ServiceMetrics | None = None) -> Resolved:
    """``client`` is shared across requests: making one costs ~20 ms (its TLS context).
    ``refusal``: why ``fhirServer`` may not be fetched from (nothing is sent to it)."""
    given = dict(request.get("prefetch") or {})
    wanted = {key: p for key, p in templates.items() if not _satisfied(given.get(key))
              and not (p.group and _satisfied(given.get(p.group)))}
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
    if refusal is not None:
        required = [k for k, p in wanted.items() if p.required]
        if required:
            raise Missing(f"prefetch keys {', '.join(required)} were absent or empty, and "
                          f"they cannot be fetched: {refusal}")
        resolved.problems += [f"{key}: not fetched: {refusal}" for key in wanted]
        return resolved
    headers = {"Accept": "application/fhir+json, application/json"}
    authorization = request.get("fhirAuthorization") or {}
    if isinstance(authorization, dict) and authorization.get("access_token"):
        headers["Authorization"] = f"Bearer {authorization['access_token']}"
    context = request.get("context") or {}
    queries = {key: render(p.template, context) for key, p in wanted.items()}
    results = await asyncio.gather(
        *(_fetch(client, server, query, headers, timeout_s, resolved.problems, key, metrics)
          for key, query in queries.items()),
        return_exceptions=True)
    for (key, prefetch), result in zip(wanted.items(), results, strict=True):
        if isinstance(result, BaseException):
            if metrics is not None:
                metrics.fhir_fetch_failures.labels(key, fetch_failure_reason(result)).inc()
            reason = type(result).__name__
            if isinstance(result, httpx.HTTPStatusError):
                reason = f"HTTP {result.response.status_code}"
            if prefetch.required:
                raise Missing(f"prefetch key {key!r} was absent and fetching it from the "
                              f"FHIR server failed ({reason})")
            resolved.problems.append(f"{key}: fetching failed ({reason})")
            continue
        resolved.prefetch[key] = result
        resolved.fetched.append(key)
    return resolved
