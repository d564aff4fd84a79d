"""The CDS Hooks HTTP surface (FastAPI): discovery, the three hooks, feedback.

One engine per worker process, driven only by the event-loop thread: the durable-rules
extension holds the GIL, so more threads would only queue (and a hand-off to a worker thread
measured 1.5-2 ms per call, as much as the evaluation). Scale with worker processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import twitch_cds
from twitch_cds.errors import InputError
from twitch_cds.knowledge.bundle import Knowledge, default_knowledge
from twitch_cds.service.auth import AuthError, JwtVerifier
from twitch_cds.service.config import ServiceConfig, load_config
from twitch_cds.service.discovery import SERVICES_BY_ID, Service, discovery, prefetch_templates
from twitch_cds.service.outcome import operation_outcome
from twitch_cds.service.prefetch import Missing, resolve
from twitch_cds.service.store import Store

log = logging.getLogger("twitch_cds.service")
OUTCOMES = ("accepted", "overridden")
ORDER_HOOKS = ("order-select", "order-sign")


class _Rejected(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def create_app(config: ServiceConfig | None = None,
               knowledge: Knowledge | None = None) -> FastAPI:
    """The ASGI app. ``config`` defaults to ``$TWITCH_CDS_CONFIG`` and the environment."""
    config = config or load_config()
    knowledge = knowledge or default_knowledge()
    store = Store(config.database_url)
    verifier = JwtVerifier(config, store)
    templates = prefetch_templates(knowledge)
    discovered = discovery(knowledge)
    clients: list[httpx.AsyncClient] = []

    def fhir_client() -> httpx.AsyncClient:
        """One HTTP client per worker, for every fetch from every EHR's FHIR server."""
        if not clients:
            clients.append(httpx.AsyncClient(limits=httpx.Limits(max_connections=100)))
        return clients[0]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for client in clients:
            await client.aclose()

    app = FastAPI(title="twitch-cds", version=twitch_cds.__version__, docs_url=None,
                  redoc_url=None, lifespan=lifespan)
    if config.allow_unauthenticated:
        log.warning("AUTHENTICATION IS OFF: any caller can use this service "
                    "(allow_unauthenticated). Never run it like this on a network.")
    if not config.clients and not config.allow_unauthenticated:
        log.warning("no trusted clients are configured: every call will get 401")
    app.add_middleware(_AccessLog)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins,
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"])

    def audience(request: Request) -> str:
        if config.public_base_url:
            return config.public_base_url.rstrip("/") + request.url.path
        return str(request.url.replace(query=""))

    def authenticate(request: Request) -> None:
        if config.allow_unauthenticated:
            return
        try:
            claims = verifier.verify(request.headers.get("authorization"), audience(request))
        except AuthError as exc:
            log.info("401 on %s: %s", request.url.path, exc)
            raise _Rejected(Response(status_code=401)) from exc
        request.state.jti = claims.get("jti")

    async def read_json(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > config.max_body_bytes:
            raise _Rejected(operation_outcome(
                413, "too-costly", f"body of {length} bytes is over {config.max_body_bytes}"))
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("application/json", "application/fhir+json"):
            raise _Rejected(operation_outcome(
                415, "not-supported", f"content type {media or '(none)'}: send application/json"))
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > config.max_body_bytes:
                raise _Rejected(operation_outcome(
                    413, "too-costly", f"body is over {config.max_body_bytes} bytes"))
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Rejected(operation_outcome(
                400, "structure", f"body is not JSON: {exc}")) from exc

    def service_for(service_id: str) -> Service:
        service = SERVICES_BY_ID.get(service_id)
        if service is None:
            raise _Rejected(operation_outcome(
                404, "not-found", f"no CDS service {service_id!r}; see GET /cds-services"))
        return service

    @app.exception_handler(_Rejected)
    async def rejected(_request: Request, exc: _Rejected) -> Response:
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        return operation_outcome(400, "invalid", str(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> Response:
        return operation_outcome(exc.status_code, "not-found" if exc.status_code == 404
                                 else "processing", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.error("internal error: %s", type(exc).__name__)  # no contents in the log
        return operation_outcome(500, "exception", f"internal error ({type(exc).__name__})")

    @app.get("/cds-services")
    async def list_services(request: Request) -> JSONResponse:
        authenticate(request)
        return JSONResponse(discovered)

    @app.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> Response:
        authenticate(request)
        service = service_for(service_id)
        body = await read_json(request)
        problem = _check_request(body, service)
        if problem:
            return operation_outcome(400, "invalid", problem)
        request.state.hook_instance = body["hookInstance"]
        budget = config.time_budget_ms / 1000
        started = time.perf_counter()
        try:
            resolved = await asyncio.wait_for(
                resolve(body, templates, fhir_client(), config.fetch_timeout_ms / 1000),
                timeout=budget)
            data = {**body, "prefetch": resolved.prefetch}
            result = twitch_cds.evaluate(data, lang=config.lang, knowledge=knowledge)
            if time.perf_counter() - started > budget:
                raise TimeoutError
        except Missing as exc:
            return operation_outcome(412, "not-found", str(exc))
        except TimeoutError:
            log.warning("time budget of %d ms spent (hookInstance=%s): answering no cards",
                        config.time_budget_ms, body["hookInstance"])
            request.state.cards = 0
            return JSONResponse({"cards": []})
        except InputError as exc:
            return operation_outcome(400, "invalid", str(exc))
        cards = result.cards
        if service.hook in ORDER_HOOKS:  # at ordering, only what concerns the orders
            drafts = _draft_references(body["context"])
            cards = [c for c in cards if drafts & set(result.evidence.get(str(c.uuid), ()))]
        request.state.cards = len(cards)
        return Response(result.cds_hooks_json(cards), media_type="application/json")

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> Response:
        authenticate(request)
        service_for(service_id)
        body = await read_json(request)
        items = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return operation_outcome(400, "required", "body needs a non-empty feedback array")
        for index, item in enumerate(items):
            problem = _check_feedback(item)
            if problem:
                return operation_outcome(400, "invalid", f"feedback[{index}]: {problem}")
        for item in items:
            store.record_feedback(service_id, item)
        return Response(status_code=200)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "ruleset": knowledge.version}

    return app


class _AccessLog:
    """One log line per call: method, path, status, time, hookInstance, card count. Never a
    token or resource content. (Pure ASGI: Starlette's BaseHTTPMiddleware costs ~3 ms.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            state = scope.get("state") or {}
            log.info("%s %s %s %.1f ms hookInstance=%s cards=%s", scope["method"],
                     scope["path"], status, (time.perf_counter() - started) * 1000,
                     state.get("hook_instance", "-"), state.get("cards", "-"))


def _check_request(body: Any, service: Service) -> str | None:
    """What is wrong with a hook request, or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if body.get("hook") != service.hook:
        return f"hook {body.get('hook')!r} does not match service {service.id} ({service.hook})"
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
        return "hookInstance (a string) is required"
    context = body.get("context")
    if not isinstance(context, dict):
        return "context (an object) is required"
    missing = [name for name in service.context_fields if context.get(name) in (None, "")]
    if missing:
        return f"context for {service.hook} lacks {', '.join(missing)}"
    if body.get("fhirAuthorization") is not None:
        if not isinstance(body.get("fhirServer"), str):
            return "fhirServer is required when fhirAuthorization is present"
        if not isinstance(body["fhirAuthorization"], dict):
            return "fhirAuthorization must be an object"
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        return "prefetch must be an object"
    return None


def _draft_references(context: dict[str, Any]) -> set[str]:
    """``ResourceType/id`` of every resource in the hook's ``draftOrders`` Bundle."""
    bundle = context.get("draftOrders")
    entries = bundle.get("entry", []) if isinstance(bundle, dict) else []
    return {f"{r['resourceType']}/{r['id']}" for e in entries if isinstance(e, dict)
            and isinstance(r := e.get("resource"), dict) and "id" in r and "resourceType" in r}


def _check_feedback(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "must be an object"
    if not isinstance(item.get("card"), str) or not item["card"]:
        return "card (the card's uuid) is required"
    if item.get("outcome") not in OUTCOMES:
        return f"outcome must be one of {', '.join(OUTCOMES)}"
    if not isinstance(item.get("outcomeTimestamp"), str):
        return "outcomeTimestamp is required"
    if item["outcome"] == "accepted" and not isinstance(item.get("acceptedSuggestions"), list):
        return "acceptedSuggestions is required when the outcome is accepted"
    reason = item.get("overrideReason")
    if reason is not None and not isinstance(reason, dict):
        return "overrideReason must be an object"
    return None


def __getattr__(name: str) -> Any:
    """``twitch_cds.service.app:app`` for ASGI servers, built on first access."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
