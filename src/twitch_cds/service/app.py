"""The CDS Hooks HTTP surface (FastAPI): discovery, the three hooks, feedback.

Each worker process evaluates in a child process of its own (``engine_process.py``; or, with
``evaluate_in: thread``, in one engine thread), so the event loop keeps accepting, shedding
and answering deadlines while a chart is evaluated; JWT verification (a JWKS fetch, the jti
write) and feedback writes run in the default thread pool. Scale with worker processes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import twitch_cds
from twitch_cds.errors import InputError
from twitch_cds.knowledge.bundle import Knowledge, default_knowledge
from twitch_cds.service import logs, schemas
from twitch_cds.service.admission import Admission, Ticket
from twitch_cds.service.auth import AuthError, JwtVerifier
from twitch_cds.service.config import ServiceConfig, TrustedClient, load_config
from twitch_cds.service.discovery import SERVICES_BY_ID, Service, discovery
from twitch_cds.service.engine_process import EngineFailed, EngineProcess
from twitch_cds.service.engine_thread import EngineThread
from twitch_cds.service.evaluated import AnsweredCard, cards_json
from twitch_cds.service.hook_body import BodyProblem, read_hook_body
from twitch_cds.service.incomplete import Reason, check_incomplete_card
from twitch_cds.service.metrics import CONTENT_TYPE, ServiceMetrics
from twitch_cds.service.outcome import operation_outcome
from twitch_cds.service.prefetch import Missing, fhir_server_refusal, resolve
from twitch_cds.service.quiet import quiet_cards
from twitch_cds.service.store import Store
from twitch_cds.service.templates import prefetch_templates

log = logging.getLogger("twitch_cds.service")
OUTCOMES = ("accepted", "overridden")
ORDER_HOOKS = ("order-select", "order-sign")


class _OutOfTime(Exception):
    """A hook call's deadline passed while its body was still being read."""


class _Rejected(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


CATALOGUE_PATH = "/catalogue"
"""Where the rule catalogue is served when ``catalogue_dir`` is set."""


def create_app(config: ServiceConfig | None = None,
               knowledge: Knowledge | None = None) -> FastAPI:
    """The ASGI app. ``config`` defaults to ``$TWITCH_CDS_CONFIG`` and the environment."""
    config = config or load_config()
    if knowledge is not None and config.evaluate_in == "process":
        raise ValueError("knowledge of one's own is evaluated in the worker: set "
                         "evaluate_in: thread (the evaluation process loads the packaged one)")
    knowledge = knowledge or default_knowledge()
    twitch_cds.configure_validation_cache(config.validation_cache_entries)
    logs.ensure_handler()
    log.info("twitch-cds %s, ruleset %s", twitch_cds.__version__, knowledge.version,
             extra={"fields": {"packageVersion": twitch_cds.__version__,
                               "rulesetVersion": knowledge.version}})
    store = Store(config.database)
    log.info("database: %s", store.location)
    verifier = JwtVerifier(config, store)
    trusted = {client.issuer: client for client in config.clients}
    templates = prefetch_templates(knowledge, config.max_prefetch_url_length)
    discovered = discovery(knowledge, templates)
    clients: list[httpx.AsyncClient] = []
    # the overrides read of an answer ready to leave never queues behind the JWT checks of
    # calls still arriving (they use the default pool): its own thread
    quiet_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twitch-cds-quiet")
    counts = {"checks_incomplete": 0}
    metrics = ServiceMetrics() if config.metrics else None
    admission = Admission(config.queue_limit, config.time_budget_ms / 1000)

    def engine_restarted() -> None:
        if metrics is not None:
            metrics.engine_restarts.inc()

    engine: EngineProcess | EngineThread
    if config.evaluate_in == "process":
        engine = EngineProcess(lang=config.lang,
                               validation_cache_entries=config.validation_cache_entries,
                               kill_after_s=config.evaluation_kill_after_ms / 1000,
                               on_restart=engine_restarted)
    else:
        engine = EngineThread(lang=config.lang, knowledge=knowledge)
    reason_system = knowledge.cards.source.topic_system
    undeclared = set(config.quiet_after_override) - {
        r.code for r in knowledge.cards.override_reasons}
    if undeclared:
        raise ValueError(f"quiet_after_override: {', '.join(sorted(undeclared))} is not an "
                         "override reason the cards offer")
    incomplete_log = logs.Tally(log, "check incomplete", config.overload_log_interval_s)

    def fhir_client() -> httpx.AsyncClient:
        """One HTTP client per worker, for every fetch from every EHR's FHIR server."""
        if not clients:
            clients.append(httpx.AsyncClient(limits=httpx.Limits(max_connections=100)))
        return clients[0]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the first evaluation compiles the ruleset: done before the worker takes calls
        await engine.warm_up()
        yield
        for client in clients:
            await client.aclose()
        engine.shutdown()
        quiet_reader.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="twitch-cds", version=twitch_cds.__version__, lifespan=lifespan,
                  openapi_url="/openapi.json" if config.openapi else None,
                  docs_url="/docs" if config.openapi else None, redoc_url=None)
    if config.openapi:
        schemas.add_components(app)
    if config.allow_unauthenticated:
        log.warning("AUTHENTICATION IS OFF: any caller can use this service "
                    "(allow_unauthenticated). Never run it like this on a network.")
    if not config.clients and not config.allow_unauthenticated:
        log.warning("no trusted clients are configured: every call will get 401")
    if config.allow_insecure_fhir_server:
        log.warning("allow_insecure_fhir_server is on: FHIR bearer tokens may be sent over "
                    "plain http. Only for local testing.")
    app.add_middleware(_AccessLog, metrics=metrics)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins,
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"])

    async def authenticate(request: Request) -> TrustedClient | None:
        """The calling client, or a bare 401. ``aud`` is ``public_base_url`` plus the path:
        never anything the request's headers say."""
        if config.allow_unauthenticated:
            return None
        audience = str(config.public_base_url).rstrip("/") + request.url.path
        try:  # off the loop: a JWKS fetch and a database write
            claims = await asyncio.to_thread(
                verifier.verify, request.headers.get("authorization"), audience)
        except AuthError as exc:
            if metrics is not None:
                metrics.unauthorized.labels(exc.reason).inc()
            log.info("401 on %s: %s", request.url.path, exc,
                     extra={"fields": {"path": request.url.path, "reason": str(exc),
                                       "reasonCode": exc.reason}})
            raise _Rejected(Response(status_code=401)) from exc
        return trusted.get(str(claims.get("iss")))

    async def read_body(request: Request, deadline: float | None = None) -> bytes:
        """The body, read within ``body_read_timeout_ms`` and, for a hook call, by its
        deadline (a ``time.perf_counter()`` instant); 408 when it has not all arrived."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > config.max_body_bytes:
            raise _Rejected(operation_outcome(
                413, "too-costly", f"body of {length} bytes is over {config.max_body_bytes}"))
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("application/json", "application/fhir+json"):
            raise _Rejected(operation_outcome(
                415, "not-supported", f"content type {media or '(none)'}: send application/json"))
        wait_s = config.body_read_timeout_ms / 1000
        budget_first = deadline is not None and deadline - time.perf_counter() < wait_s
        if deadline is not None:
            wait_s = min(wait_s, deadline - time.perf_counter())
        body = bytearray()
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                async for chunk in request.stream():
                    body.extend(chunk)
                    if len(body) > config.max_body_bytes:
                        raise _Rejected(operation_outcome(
                            413, "too-costly", f"body is over {config.max_body_bytes} bytes"))
        except TimeoutError as exc:
            if budget_first:  # the call is out of time, the client not (yet) at fault
                raise _OutOfTime from exc
            response = operation_outcome(
                408, "timeout", f"the request body did not arrive within "
                f"{config.body_read_timeout_ms} ms")
            response.headers["Connection"] = "close"
            raise _Rejected(response) from exc
        except ClientDisconnect as exc:
            log.info("client disconnected before sending its whole body")
            raise _Rejected(Response(status_code=400)) from exc
        return bytes(body)

    async def read_json(request: Request) -> Any:
        """The JSON body (feedback), parsed whole."""
        raw = await read_body(request)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Rejected(operation_outcome(
                400, "structure", f"body is not JSON: {exc}")) from exc
        except ValueError as exc:  # a number the parser refuses (Python's digit limit)
            raise _Rejected(operation_outcome(
                400, "structure", f"body holds a value the JSON parser refuses: {exc}")) from exc
        except RecursionError as exc:
            raise _Rejected(operation_outcome(
                400, "structure", "body is nested too deeply")) from exc

    def service_for(service_id: str) -> Service:
        service = SERVICES_BY_ID.get(service_id)
        if service is None:
            raise _Rejected(operation_outcome(
                404, "not-found", f"no CDS service {service_id!r}; see GET /cds-services"))
        return service

    def check_incomplete(request: Request, service: Service, hook_instance: str | None,
                         reason: Reason, started: float) -> Response:
        """The one card that says the check did not finish (never ``{"cards": []}``).
        ``hook_instance`` is None for a call shed before its body was read."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        counts["checks_incomplete"] += 1
        fields = {"hookInstance": hook_instance or "-", "reason": reason,
                  "elapsed_ms": round(elapsed_ms, 1)}
        message = ("check incomplete (%s) after %.0f ms (time budget %d ms), hookInstance=%s: "
                   "answering the check-incomplete card")
        arguments = (reason, elapsed_ms, config.time_budget_ms, hook_instance or "-")
        if reason == "failure":  # rare and worth each line
            log.warning(message, *arguments, extra={"fields": fields})
        else:  # out of time, overload: thousands a minute under load, one line per interval
            incomplete_log.add(reason, message, *arguments, fields=fields)
        request.state.cards = 1
        card = check_incomplete_card(knowledge, hook_instance, reason, config.lang)
        if metrics is not None:
            metrics.checks_incomplete.labels(service.id, reason).inc()
            metrics.observe_cards(service.id, [card])
        return JSONResponse({"cards": [card.to_json()]})

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

    @app.get("/cds-services", response_model=None)
    async def list_services(request: Request) -> JSONResponse:
        await authenticate(request)
        return JSONResponse(discovered)

    @app.post("/cds-services/{service_id}", openapi_extra=schemas.body(schemas.HookRequest),
              responses={200: {"description": "CDS Hooks cards", "content": {
                  "application/json": {"schema": {"$ref": schemas.REF.format(
                      model="CdsServiceResponse")}}}}})
    async def call_service(service_id: str, request: Request) -> Response:
        # the deadline runs from the call's arrival (the access-log middleware's clock)
        started = getattr(request.state, "arrived", None) or time.perf_counter()
        deadline = started + config.time_budget_ms / 1000
        client = await authenticate(request)
        service = service_for(service_id)
        length = request.headers.get("content-length")
        ticket = admission.admit(int(length) if length and length.isdigit() else None)
        if ticket is None:  # full: answered now, the body left unread (uvicorn drops it)
            return check_incomplete(request, service, None, "overload", started)
        if metrics is not None:
            metrics.admitted.inc()
        try:
            return await evaluate_call(request, service, client, ticket, started, deadline)
        except _OutOfTime:  # the body was still arriving at the deadline
            return check_incomplete(request, service, None, "time-budget", started)
        finally:
            admission.release(ticket)
            if metrics is not None:
                metrics.admitted.dec()

    async def leave_out_quiet(cards: list[AnsweredCard], service: Service,
                              deadline: float) -> list[AnsweredCard]:
        """The cards less those overridden as already addressed and still quiet. If the
        database does not answer by the deadline every card is shown: showing a card again
        is safe, hiding one wrongly is not."""
        if not cards or not config.quiet_after_override:
            return cards
        uuids = [card.uuid for card in cards]
        try:
            reading = asyncio.get_running_loop().run_in_executor(
                quiet_reader, store.overrides_of, uuids)
            overridden = await asyncio.wait_for(reading,
                                                timeout=max(deadline - time.perf_counter(),
                                                            0.05))
        except Exception as exc:  # a database error must not cost the answer
            log.warning("could not read overrides (%s): every card shown", type(exc).__name__)
            return cards
        quiet = quiet_cards(overridden, config.quiet_after_override, dt.datetime.now(dt.UTC))
        if not quiet:
            return cards
        if metrics is not None:
            metrics.observe_quiet(service.id, [c for c in cards if c.uuid in quiet])
        return [card for card in cards if card.uuid not in quiet]

    async def evaluate_call(request: Request, service: Service, client: TrustedClient | None,
                            ticket: Ticket, started: float, deadline: float) -> Response:
        try:  # the prefetched resources are left unparsed: the engine reads them
            hook_body = read_hook_body(await read_body(request, deadline))
        except BodyProblem as exc:
            return operation_outcome(400, exc.code, str(exc))
        body = hook_body.request()
        problem = _check_request(body, service)
        if problem:
            return operation_outcome(400, "invalid", problem)
        hook_instance: str = body["hookInstance"]
        request.state.hook_instance = hook_instance
        server = body.get("fhirServer")
        refusal = fhir_server_refusal(
            server, allow_insecure=config.allow_insecure_fhir_server,
            allowed_origins=client.fhir_servers if client else []) if server else None
        try:
            resolved = await asyncio.wait_for(
                resolve(body, templates, fhir_client(), config.fetch_timeout_ms / 1000,
                        refusal, metrics), timeout=max(deadline - time.perf_counter(), 0.0))
            for note in resolved.problems:
                log.warning("prefetch incomplete, hookInstance=%s: %s", hook_instance, note,
                            extra={"fields": {"hookInstance": hook_instance,
                                              "prefetchProblem": note}})
            # the bytes as received go to the engine when nothing was fetched or left out
            payload = hook_body.payload(resolved.prefetch)
            context = body["context"]
            del hook_body, body, resolved  # the body now lives in the payload alone

            def learn(seconds: float) -> None:
                admission.observe(ticket.size, seconds)

            result = await engine.evaluate(payload, deadline=deadline,
                                           expected_s=ticket.expected_s, learn=learn)
            del payload
        except Missing as exc:
            return operation_outcome(412, "not-found", str(exc))
        except TimeoutError:
            return check_incomplete(request, service, hook_instance, "time-budget", started)
        except InputError as exc:
            return operation_outcome(400, "invalid", str(exc))
        except Exception as exc:  # the engine failed: still never a silent "no cards"
            log.error("evaluation failed (%s), hookInstance=%s",
                      str(exc) if isinstance(exc, EngineFailed) else type(exc).__name__,
                      hook_instance)
            if metrics is not None:
                metrics.evaluation_errors.labels(service.id).inc()
            return check_incomplete(request, service, hook_instance, "failure", started)
        cards = await leave_out_quiet(result.cards, service, deadline)
        if service.hook in ORDER_HOOKS:  # at ordering, only what concerns the orders
            drafts = _draft_references(context)
            cards = [c for c in cards if drafts & set(c.evidence)]
        request.state.cards = len(cards)
        if metrics is not None:
            metrics.observe_cards(service.id, cards)
        return Response(cards_json(cards), media_type="application/json")

    @app.post("/cds-services/{service_id}/feedback",
              openapi_extra=schemas.body(schemas.Feedback))
    async def feedback(service_id: str, request: Request) -> Response:
        await authenticate(request)
        service_for(service_id)
        body = await read_json(request)
        items = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return operation_outcome(400, "required", "body needs a non-empty feedback array")
        if len(items) > config.max_feedback_items:
            return operation_outcome(413, "too-costly", f"{len(items)} feedback items: send "
                                     f"at most {config.max_feedback_items} per request")
        for index, item in enumerate(items):
            problem = _check_feedback(item)
            if problem:
                return operation_outcome(400, "invalid", f"feedback[{index}]: {problem}")
        def record() -> None:
            store.record_feedback_items(service_id, items)
            store.record_overrides(service_id, items, reason_system)

        await asyncio.to_thread(record)
        return Response(status_code=200)

    if config.catalogue_dir is not None:  # the rule catalogue for reviewers, read-only
        app.mount(CATALOGUE_PATH, StaticFiles(directory=config.catalogue_dir, html=True),
                  name="catalogue")

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "ruleset": knowledge.version, **counts,
                "admitted": admission.active, "max_queue": admission.limit,
                "engine": config.evaluate_in, "engine_pid": engine.pid,
                "engine_restarts": engine.restarts}

    if metrics is not None:
        token = config.metrics_token.get_secret_value() if config.metrics_token else None
        scraper = metrics

        @app.get("/metrics", include_in_schema=False)
        async def scrape(request: Request) -> Response:
            if token is not None:
                given = request.headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    scraper.unauthorized.labels("metrics-token").inc()
                    return Response(status_code=401)
            return Response(await asyncio.to_thread(scraper.scrape), media_type=CONTENT_TYPE)

    return app


class _AccessLog:
    """One log line per call: method, path, status, time, hookInstance, card count. Never a
    token or resource content. (Pure ASGI: Starlette's BaseHTTPMiddleware costs ~3 ms.)"""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})["arrived"] = started  # a hook call's deadline runs from here
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
            elapsed_s = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.observe_request(scope["path"], status, elapsed_s)
            elapsed_ms = round(elapsed_s * 1000, 1)
            hook_instance = state.get("hook_instance", "-")
            log.info("%s %s %s %.1f ms hookInstance=%s cards=%s", scope["method"],
                     scope["path"], status, elapsed_ms, hook_instance,
                     state.get("cards", "-"),
                     extra={"fields": {"method": scope["method"], "path": scope["path"],
                                       "status": status, "elapsed_ms": elapsed_ms,
                                       "hookInstance": hook_instance,
                                       "cards": state.get("cards")}})


def _check_request(body: Any, service: Service) -> str | None:
    """What is wrong with a hook request, or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if body.get("hook") != service.hook:
        return f"hook {body.get('hook')!r} does not match service {service.id} ({service.hook})"
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
        return "hookInstance (a string) is required"
    if len(body["hookInstance"]) > 200 or logs.has_control_characters(body["hookInstance"]):
        return "hookInstance must be at most 200 characters, without control characters"
    context = body.get("context")
    if not isinstance(context, dict):
        return "context (an object) is required"
    missing = [name for name in service.context_fields if context.get(name) in (None, "")]
    if missing:
        return f"context for {service.hook} lacks {', '.join(missing)}"
    if body.get("fhirServer") is not None and not isinstance(body["fhirServer"], str):
        return "fhirServer must be a string (an https URL)"
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
    if not isinstance(item.get("card"), str) or not 0 < len(item["card"]) <= 100:
        return "card (the card's uuid, at most 100 characters) is required"
    if item.get("outcome") not in OUTCOMES:
        return f"outcome must be one of {', '.join(OUTCOMES)}"
    if not isinstance(item.get("outcomeTimestamp"), str) or len(item["outcomeTimestamp"]) > 40:
        return "outcomeTimestamp (an instant) is required"
    if item["outcome"] == "accepted" and not isinstance(item.get("acceptedSuggestions"), list):
        return "acceptedSuggestions is required when the outcome is accepted"
    reason = item.get("overrideReason")
    if reason is None:
        return None
    if not isinstance(reason, dict):
        return "overrideReason must be an object"
    coding = reason.get("reason")
    if coding is not None and not (isinstance(coding, dict) and all(
            isinstance(coding.get(name), str | None) for name in ("system", "code"))):
        return "overrideReason.reason must be a Coding"
    if not isinstance(reason.get("userComment"), str | None):
        return "overrideReason.userComment must be a string"
    return None


def __getattr__(name: str) -> Any:
    """``twitch_cds.service.app:app`` for ASGI servers, built on first access."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
