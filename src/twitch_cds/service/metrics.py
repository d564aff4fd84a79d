"""Prometheus metrics (prometheus-client), served at ``GET /metrics`` when ``metrics: true``.

Every label value comes from a fixed, small set the code chooses (service ids, routes, HTTP
statuses, card kinds and indicators, 401 reasons, prefetch keys): never a patient id, a
``hookInstance``, a path the client made up or an exception message. With several worker
processes, ``twitch-cds serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory
before the workers start; each worker writes its values there and a scrape of any worker
adds them all up (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from twitch_cds.cds_hooks import Card
from twitch_cds.service.discovery import SERVICES_BY_ID
from twitch_cds.service.evaluated import AnsweredCard
from twitch_cds.service.multiprocess import DIRECTORY

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds; the default time budget (0.3 s) is a bucket edge, and so is the budget plus 100 ms."""
_HOOK = re.compile(r"^/cds-services/([^/]+)(/feedback)?$")


def route_of(path: str) -> tuple[str, str]:
    """``(route, service)`` labels for a request path: a known service id or ``-``."""
    if path == "/cds-services":
        return "discovery", "-"
    if path in ("/healthz", "/metrics"):
        return path[1:], "-"
    found = _HOOK.match(path)
    if found and found.group(1) in SERVICES_BY_ID:
        return ("feedback" if found.group(2) else "hook"), found.group(1)
    return "other", "-"


def fetch_failure_reason(exc: BaseException) -> str:
    """A fetch failure as one of a few words."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"http-{exc.response.status_code // 100}xx"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "transport"
    return "invalid-response"


class ServiceMetrics:
    """The service's counters and histograms, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("twitch_cds_requests", "HTTP requests answered",
                                ["route", "service", "status"], registry=r)
        self.latency = Histogram("twitch_cds_request_duration_seconds",
                                 "Time to answer a request, from its arrival",
                                 ["route", "service"], buckets=LATENCY_BUCKETS, registry=r)
        self.cards = Counter("twitch_cds_cards", "Cards answered",
                             ["service", "kind", "indicator"], registry=r)
        self.checks_incomplete = Counter(
            "twitch_cds_checks_incomplete",
            "check-incomplete cards: the time budget passed (time-budget), the worker was "
            "full and shed the call unread (overload) or evaluation failed (failure)",
            ["service", "reason"], registry=r)
        self.admitted = Gauge("twitch_cds_admitted_requests",
                              "Hook calls taken on and not yet answered (waiting or evaluating)",
                              registry=r, multiprocess_mode="livesum")
        self.engine_restarts = Counter(
            "twitch_cds_engine_restarts",
            "Evaluation processes killed (still running evaluation_kill_after_ms past a "
            "deadline) or ended, and started again", registry=r)
        self.cards_quiet = Counter("twitch_cds_cards_quiet",
                                   "Cards left out: overridden as already addressed, still quiet",
                                   ["service", "kind"], registry=r)
        self.evaluation_errors = Counter("twitch_cds_evaluation_errors",
                                         "Evaluations that failed in the engine",
                                         ["service"], registry=r)
        self.unauthorized = Counter("twitch_cds_unauthorized",
                                    "401 answers, by why the token was refused",
                                    ["reason"], registry=r)
        self.fhir_fetches = Counter("twitch_cds_fhir_fetches",
                                    "HTTP requests to an EHR's FHIR server (pages included)",
                                    ["key"], registry=r)
        self.fhir_fetch_failures = Counter("twitch_cds_fhir_fetch_failures",
                                           "Prefetch keys whose fetch failed",
                                           ["key", "reason"], registry=r)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        route, service = route_of(path)
        self.requests.labels(route, service, str(status)).inc()
        self.latency.labels(route, service).observe(seconds)

    def observe_cards(self, service: str, cards: Iterable[Card | AnsweredCard]) -> None:
        for card in cards:
            self.cards.labels(service, card.kind or "-", card.indicator).inc()

    def observe_quiet(self, service: str,
                      cards: Iterable[Card | AnsweredCard]) -> None:
        for card in cards:
            self.cards_quiet.labels(service, card.kind or "-").inc()

    def scrape(self) -> bytes:
        """The text exposition: every worker's values in multiprocess mode, else this one's."""
        if os.environ.get(DIRECTORY):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
