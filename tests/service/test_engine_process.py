"""The evaluation process (``evaluate_in: process``, the default) in a real ``twitch-cds
serve``: a chart that keeps the engine far past its deadline is answered ``check-incomplete``
at the deadline, the stuck evaluation process is killed and replaced, and the worker
answers again; a call beyond the queue is answered before its body is sent; a burst is
answered whole, every answer either the chart's cards with its red flag or the
``check-incomplete`` card, never ``{"cards": []}`` or an error.

Outcomes and counts only: latency is measured in ``benchmarks/service_overload.py``.
"""

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ..cds_checks import check_response
from .support import EXAMPLES
from .test_metrics import _samples, _value

PATIENT_VIEW = "twitch-cds-patient-view"
RED_FLAG_CHART = EXAMPLES / "04-red-flags-als-suspect.json"
"""A chart whose evaluation carries the red-flag card."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _service(tmp_path: Path, **settings: Any) -> Iterator[str]:
    """``twitch-cds serve --insecure-no-auth`` (one worker, evaluation process) with
    ``TWITCH_CDS_<SETTING>`` overrides; yields its base URL once it answers."""
    port = _free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("TWITCH_CDS_")}
    env.update({f"TWITCH_CDS_{name.upper()}": str(value) for name, value in settings.items()})
    env["TWITCH_CDS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'service.db'}"
    env["TWITCH_CDS_METRICS"] = "true"
    process = subprocess.Popen(
        [sys.executable, "-m", "twitch_cds.cli", "serve", "--insecure-no-auth", "--port",
         str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the service did not start"
            assert time.time() < deadline, "the service did not answer in 120 s"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _request(extra: int = 0) -> dict[str, Any]:
    """patient-view for the red-flag chart, with ``extra`` potassium results (new ids each
    time, so no validation result is cached: the evaluation is as slow as it looks)."""
    bundle = json.loads(RED_FLAG_CHART.read_text(encoding="utf-8"))
    resources = [entry["resource"] for entry in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    tag = uuid.uuid4().hex[:8]
    observations = [r for r in resources if r["resourceType"] == "Observation"] + [
        {"resourceType": "Observation", "id": f"k-{tag}-{i}", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
         "subject": {"reference": f"Patient/{patient['id']}"},
         "effectiveDateTime": f"2026-{1 + i % 10:02d}-01T08:00:00Z",
         "valueQuantity": {"value": 3.5 + (i % 10) / 10, "unit": "mmol/L",
                           "system": "http://unitsofmeasure.org", "code": "mmol/L"}}
        for i in range(extra)]

    def searchset(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in items]}

    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": patient["id"]},
            "prefetch": {
                "observations": searchset(observations),
                "conditions": searchset([r for r in resources
                                         if r["resourceType"] == "Condition"]),
                "medicationRequests": searchset([]), "medicationStatements": searchset([]),
                "patient": patient}}


def _outcome(response: httpx.Response) -> str:
    """``red-flag`` (the chart's cards, its red flag among them), ``busy`` or ``out of time``
    (the check-incomplete card), or ``wrong`` (anything else)."""
    if response.status_code != 200:
        return "wrong"
    body = response.json()
    check_response(body)
    topics = [card["source"]["topic"]["code"] for card in body["cards"]]
    if topics == ["check-incomplete"]:
        summary = body["cards"][0]["summary"]
        return "busy" if "service busy" in summary else (
            "out of time" if "out of time" in summary else "wrong")
    return "red-flag" if "red-flag" in topics else "wrong"


def _health(base: str) -> dict[str, Any]:
    health: dict[str, Any] = httpx.get(f"{base}/healthz").json()
    return health


def test_a_stuck_evaluation_is_answered_at_the_deadline_and_its_process_replaced(
        tmp_path: Path) -> None:
    url_path = f"/cds-services/{PATIENT_VIEW}"
    with _service(tmp_path, time_budget_ms=1000, evaluation_kill_after_ms=300,
                  max_body_bytes=20_000_000) as base:
        before = _health(base)
        assert before["engine"] == "process" and before["engine_restarts"] == 0
        assert _outcome(httpx.post(base + url_path, json=_request(), timeout=30)) == "red-flag"
        # 16,000 new potassium results (8 MB): seconds of validation, far past the deadline
        # and the kill margin (1 s + 0.3 s); read and parsed well within the budget
        stuck = httpx.post(base + url_path, json=_request(extra=16_000), timeout=60)
        assert _outcome(stuck) == "out of time"
        deadline = time.time() + 120
        while (health := _health(base))["engine_restarts"] < 1 or health["engine_pid"] is None:
            assert time.time() < deadline, f"the stuck process was not replaced: {health}"
            time.sleep(0.2)
        assert health["engine_pid"] != before["engine_pid"]
        # the new evaluation process warms up before it is used; calls meanwhile are
        # answered check-incomplete, never left hanging
        answers = []
        while (answer := _outcome(httpx.post(base + url_path, json=_request(),
                                             timeout=30))) != "red-flag":
            answers.append(answer)
            assert answer == "out of time", answers
            assert time.time() < deadline, "the worker did not recover"
        samples = _samples(httpx.get(f"{base}/metrics").text)
        after = _health(base)
    assert after["admitted"] == 0 and after["engine_restarts"] == 1
    assert _value(samples, "twitch_cds_engine_restarts_total") == 1
    assert _value(samples, "twitch_cds_checks_incomplete_total", service=PATIENT_VIEW,
                  reason="time-budget") == 1 + len(answers)


def test_a_call_beyond_the_queue_is_answered_before_its_body_is_sent(tmp_path: Path) -> None:
    head = (b"POST /cds-services/twitch-cds-patient-view HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4000000\r\n\r\n"
            b'{"hook": "patient-view", ')
    with _service(tmp_path, time_budget_ms=20_000, max_queue=1) as base:
        host, port = base.split("//")[1].split(":")
        # the first call is taken on and waits for its body: the one place in the queue
        with socket.create_connection((host, int(port))) as first:
            first.sendall(head)
            deadline = time.time() + 10
            while _health(base)["admitted"] == 0:
                assert time.time() < deadline, "the first call was not taken on"
                time.sleep(0.05)
            with socket.create_connection((host, int(port))) as second:
                second.sendall(head)  # 4 MB announced, a few bytes sent
                second.settimeout(20)
                received = b""
                while b'"cards"' not in received and (chunk := second.recv(65536)):
                    received += chunk
        samples = _samples(httpx.get(f"{base}/metrics").text)
    assert received.startswith(b"HTTP/1.1 200")
    assert b'"code":"check-incomplete"' in received and b"service busy" in received
    assert _value(samples, "twitch_cds_checks_incomplete_total", service=PATIENT_VIEW,
                  reason="overload") == 1


def test_a_burst_is_answered_whole_with_the_red_flag_or_the_check_incomplete_card(
        tmp_path: Path) -> None:
    calls = 60
    bodies = [json.dumps(_request(extra=300)).encode() for _ in range(calls)]
    with _service(tmp_path) as base, ThreadPoolExecutor(calls) as pool:
        url = f"{base}/cds-services/{PATIENT_VIEW}"

        def call(body: bytes) -> str:
            return _outcome(httpx.post(url, content=body, timeout=30,
                                       headers={"Content-Type": "application/json"}))

        outcomes = list(pool.map(call, bodies))
        samples = _samples(httpx.get(f"{base}/metrics").text)
        after = _health(base)
        recovered = call(json.dumps(_request()).encode())
    counts = {kind: outcomes.count(kind) for kind in set(outcomes)}
    assert "wrong" not in counts, counts
    assert counts.get("busy", 0) > 0, f"60 at once on one worker must shed some: {counts}"
    assert _value(samples, "twitch_cds_checks_incomplete_total", service=PATIENT_VIEW,
                  reason="overload") == counts.get("busy", 0)
    # every call answered once, by the service's own count (how soon: the benchmark's job)
    assert _value(samples, "twitch_cds_request_duration_seconds_count", route="hook",
                  service=PATIENT_VIEW) == calls
    assert _value(samples, "twitch_cds_requests_total", route="hook", service=PATIENT_VIEW,
                  status="200") == calls
    assert after["admitted"] == 0 and after["engine_restarts"] == 0
    assert recovered == "red-flag"


def test_the_cards_that_cross_from_the_evaluation_process_are_the_library_s_answer() -> None:
    """What the evaluation process sends back (pickled) gives the same response body, card
    for card, as ``evaluate()`` in the caller's process, evidence included."""
    import pickle

    import twitch_cds
    from twitch_cds.service.evaluated import cards_json, evaluated

    result = twitch_cds.evaluate(_request())
    crossed = pickle.loads(pickle.dumps(evaluated(result, 0.01)))
    assert cards_json(crossed.cards) == result.cds_hooks_json()
    assert [card.kind for card in crossed.cards] == [card.kind for card in result.cards]
    assert "red-flag" in [card.kind for card in crossed.cards]
    assert {card.uuid: list(card.evidence) for card in crossed.cards} == {
        str(card.uuid): result.evidence.get(str(card.uuid), []) for card in result.cards}
