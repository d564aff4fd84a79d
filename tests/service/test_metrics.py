"""Prometheus metrics: off unless configured, counting what happened, never patient data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from twitch_cds.service.app import create_app
from twitch_cds.service.config import ServiceConfig, TrustedClient

from .support import (
    EXAMPLES,
    FHIR_TOKEN,
    ISSUER,
    LiveServer,
    SigningKey,
    example_resources,
    fhir_server,
    jwks,
)

PATIENT_VIEW = "twitch-cds-patient-view"
METRICS_TOKEN = "metrics-scrape-token"
PATIENT_ID = "patient-id-never-in-metrics"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _samples(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.es384()


@pytest.fixture(scope="module")
def fhir() -> Iterator[Any]:
    with fhir_server(example_resources("03-diuretic-no-labs.json")) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("metrics")
    (folder / "jwks.json").write_text(json.dumps(jwks(key)))

    def app(url: str) -> Any:
        return create_app(ServiceConfig(evaluate_in="thread",
            clients=[TrustedClient(issuer=ISSUER, jwks_file=folder / "jwks.json")],
            public_base_url=url, allow_insecure_fhir_server=True,
            database_url=f"sqlite:///{folder / 's.db'}", time_budget_ms=3000,
            fetch_timeout_ms=2000, metrics=True, metrics_token=METRICS_TOKEN))

    with LiveServer.build(app) as server:
        yield server.url


def _scrape(service: str) -> tuple[str, Samples]:
    response = httpx.get(f"{service}/metrics",
                         headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, _samples(response.text)


def _post(service: str, key: SigningKey, body: Any, token: str | None = "") -> httpx.Response:
    url = f"{service}/cds-services/{PATIENT_VIEW}"
    headers = {} if token is None else {
        "Authorization": f"Bearer {token or key.token(url)}"}
    return httpx.post(url, json=body, headers=headers, timeout=10)


def _request() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "10-cds-hooks-request.json").read_text())
    data["hookInstance"] = f"hook-instance-{uuid.uuid4()}"
    return data


def _fetching(fhir: Any) -> dict[str, Any]:
    patient = next(r for r in fhir.resources if r["resourceType"] == "Patient")
    return {"hook": "patient-view", "hookInstance": f"hook-instance-{uuid.uuid4()}",
            "fhirServer": f"{fhir.base}/fhir",
            "fhirAuthorization": {"access_token": FHIR_TOKEN, "token_type": "Bearer"},
            "context": {"userId": "Practitioner/1", "patientId": patient["id"]},
            "prefetch": {"patient": patient}}


def test_requests_cards_and_401s_are_counted(service: str, key: SigningKey) -> None:
    _, before = _scrape(service)
    request = _request()
    assert _post(service, key, request).status_code == 200
    assert _post(service, key, request).status_code == 200
    assert _post(service, key, request, token=None).status_code == 401
    assert _post(service, key, request, token="not.a.jwt").status_code == 401
    forged = SigningKey.es384(key.kid).token(f"{service}/cds-services/{PATIENT_VIEW}")
    assert _post(service, key, request, token=forged).status_code == 401
    _, after = _scrape(service)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    hook = {"route": "hook", "service": PATIENT_VIEW}
    assert moved("twitch_cds_requests_total", **hook, status="200") == 2
    assert moved("twitch_cds_requests_total", **hook, status="401") == 3
    assert moved("twitch_cds_request_duration_seconds_count", **hook) == 5
    assert moved("twitch_cds_request_duration_seconds_sum", **hook) > 0
    for kind, indicator in (("electrolytes", "warning"),
                            ("medication", "warning"), ("explanation", "info")):
        assert moved("twitch_cds_cards_total", service=PATIENT_VIEW, kind=kind,
                     indicator=indicator) == 2
    assert moved("twitch_cds_unauthorized_total", reason="missing") == 1
    assert moved("twitch_cds_unauthorized_total", reason="malformed") == 1
    assert moved("twitch_cds_unauthorized_total", reason="signature") == 1


def test_fhir_fetches_and_their_failures_are_counted(service: str, key: SigningKey,
                                                     fhir: Any) -> None:
    _, before = _scrape(service)
    assert _post(service, key, _fetching(fhir)).status_code == 200
    fhir.fail_types.add("MedicationStatement")
    try:
        assert _post(service, key, _fetching(fhir)).status_code == 200  # an optional key
    finally:
        fhir.fail_types.clear()
    _, after = _scrape(service)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("twitch_cds_fhir_fetches_total", key="conditions") == 2
    assert moved("twitch_cds_fhir_fetches_total", key="observations-1") == 2
    assert moved("twitch_cds_fhir_fetches_total", key="medicationStatements") == 2
    assert moved("twitch_cds_fhir_fetch_failures_total", key="medicationStatements",
                 reason="http-5xx") == 1
    assert moved("twitch_cds_fhir_fetch_failures_total", key="conditions",
                 reason="http-5xx") == 0


def test_no_patient_data_in_the_scrape(service: str, key: SigningKey) -> None:
    request = _request()
    request["context"]["patientId"] = PATIENT_ID
    _post(service, key, request)
    httpx.get(f"{service}/cds-services/{PATIENT_ID}")  # an unknown path: no label of its own
    text, _ = _scrape(service)
    assert PATIENT_ID not in text and "hook-instance-" not in text
    assert "0f3c2a" not in text  # the example's patient id
    assert FHIR_TOKEN not in text and METRICS_TOKEN not in text


def test_the_metrics_token_is_required(service: str) -> None:
    assert httpx.get(f"{service}/metrics").status_code == 401
    assert httpx.get(f"{service}/metrics",
                     headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_time_budget_overruns_and_evaluation_errors_are_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import twitch_cds

    real = twitch_cds.evaluate
    mode = {"slow": True}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if mode["slow"]:
            time.sleep(0.5)
            return real(*args, **kwargs)
        raise RuntimeError("engine failed")

    monkeypatch.setattr(twitch_cds, "evaluate", flaky)
    app = create_app(ServiceConfig(evaluate_in="thread", allow_unauthenticated=True, metrics=True,
                                   database_url=f"sqlite:///{tmp_path / 's.db'}",
                                   time_budget_ms=150))
    with LiveServer(app) as server:
        url = f"{server.url}/cds-services/{PATIENT_VIEW}"
        assert httpx.post(url, json=_request()).json()["cards"][0]["source"]["topic"][
            "code"] == "check-incomplete"
        time.sleep(0.5)  # the slow evaluation ends in the engine thread
        mode["slow"] = False
        httpx.post(url, json=_request())
        httpx.post(url, json=_request())
        samples = _samples(httpx.get(f"{server.url}/metrics").text)  # no token configured
    assert _value(samples, "twitch_cds_checks_incomplete_total", service=PATIENT_VIEW,
                  reason="time-budget") == 1
    assert _value(samples, "twitch_cds_checks_incomplete_total", service=PATIENT_VIEW,
                  reason="failure") == 2
    assert _value(samples, "twitch_cds_evaluation_errors_total", service=PATIENT_VIEW) == 2
    assert _value(samples, "twitch_cds_cards_total", service=PATIENT_VIEW,
                  kind="check-incomplete", indicator="warning") == 3


def test_metrics_are_off_unless_configured(tmp_path: Path) -> None:
    app = create_app(ServiceConfig(evaluate_in="thread", allow_unauthenticated=True,
                                   database_url=f"sqlite:///{tmp_path / 's.db'}"))
    with LiveServer(app) as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 404


def test_several_workers_are_scraped_as_one(tmp_path: Path) -> None:
    """``twitch-cds serve --workers 2``: any worker's scrape counts every worker's calls."""
    port = _free_port()
    directory = tmp_path / "multiprocess"
    directory.mkdir()
    config = tmp_path / "service.yaml"
    config.write_text(f"allow_unauthenticated: true\nmetrics: true\n"
                      f"database_url: sqlite:///{tmp_path / 's.db'}\n")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    process = subprocess.Popen(
        [sys.executable, "-m", "twitch_cds.cli", "serve", "--port", str(port), "--workers",
         "2", "--config", str(config)], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        time.sleep(1.0)  # both workers up

        def discovery(_: int) -> int:
            with httpx.Client() as client:  # a new connection each time
                return client.get(f"{base}/cds-services").status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(discovery, range(60))) == {200}
        totals = []
        for _ in range(6):
            with httpx.Client() as client:
                samples = _samples(client.get(f"{base}/metrics").text)
            totals.append(_value(samples, "twitch_cds_requests_total", route="discovery",
                                 service="-", status="200"))
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert totals == [60.0] * 6
    writers = {path.stem.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}
    assert len(writers) == 2  # both workers answered, and each scrape added both up


def test_the_start_log_names_the_package_and_ruleset_versions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import twitch_cds
    from twitch_cds.knowledge.bundle import default_knowledge

    caplog.set_level(logging.INFO, logger="twitch_cds")
    create_app(ServiceConfig(evaluate_in="thread", allow_unauthenticated=True,
                             database_url=f"sqlite:///{tmp_path / 's.db'}"))
    started = [r for r in caplog.records if r.getMessage().startswith("twitch-cds ")]
    assert [r.getMessage() for r in started] == [
        f"twitch-cds {twitch_cds.__version__}, ruleset {default_knowledge().version}"]
    assert started[0].fields == {"packageVersion": twitch_cds.__version__,  # type: ignore[attr-defined]
                                 "rulesetVersion": default_knowledge().version}
