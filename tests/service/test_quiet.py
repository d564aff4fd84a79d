"""Quiet once addressed: CDS Hooks feedback read back, against a real ``twitch-cds serve``
with two workers, and ``evaluate(suppress=...)`` for embedders."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import twitch_cds
from twitch_cds.knowledge.bundle import default_knowledge

from ..cds_checks import check_response
from .support import EXAMPLES

PATIENT_VIEW = "twitch-cds-patient-view"
SYSTEM = default_knowledge().cards.source.topic_system


def _request() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "10-cds-hooks-request.json").read_text())
    data["hookInstance"] = str(uuid.uuid4())
    return data


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(config: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWITCH_CDS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "twitch_cds.cli", "serve", "--port", str(port), "--config",
         str(config), "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz")
            return process
        except httpx.TransportError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("serve did not start") from None
            time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    return stderr


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "service.yaml"
    # a generous budget: these tests are about feedback, not the clock of a busy machine
    path.write_text(f"allow_unauthenticated: true\ndatabase_url: sqlite:///{tmp_path / 's.db'}\n"
                    "time_budget_ms: 10000\n"
                    "quiet_after_override:\n  already-addressed: P30D\n"
                    "  not-clinically-relevant: PT3S\n")
    return path


def _cards(base: str, body: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Card kind -> card, on a fresh connection (so either worker may answer)."""
    body = body or _request()
    body["hookInstance"] = str(uuid.uuid4())
    with httpx.Client(headers={"Connection": "close"}) as client:
        answer = client.post(f"{base}/cds-services/{PATIENT_VIEW}", json=body, timeout=30)
    assert answer.status_code == 200
    check_response(answer.json())
    return {card["source"]["topic"]["code"]: card for card in answer.json()["cards"]}


def _override(base: str, card: str, code: str) -> None:
    item = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-12-05T09:00:00Z",
            "overrideReason": {"reason": {"system": SYSTEM, "code": code},
                               "userComment": "done last week"}}
    with httpx.Client(headers={"Connection": "close"}) as client:
        answer = client.post(f"{base}/cds-services/{PATIENT_VIEW}/feedback",
                             json={"feedback": [item]}, timeout=30)
    assert answer.status_code == 200


def test_cards_offer_the_reasons_with_already_addressed_among_them() -> None:
    result = twitch_cds.evaluate(_request())
    for card in result.cards:
        codes = {(r.system, r.code) for r in card.overrideReasons or ()}
        assert (SYSTEM, "already-addressed") in codes and len(codes) >= 3


def _addressed_card_stays_out_until_its_evidence_changes(base: str) -> None:
    first = _cards(base)
    assert {"medication", "electrolytes"} <= set(first)
    drug_card = first["medication"]["uuid"]
    _override(base, drug_card, "already-addressed")
    for _ in range(6):  # fresh connections: both workers answer some of these
        again = _cards(base)
        assert "medication" not in again, "overridden as already addressed"
        assert again["electrolytes"] == first["electrolytes"]
    # new evidence: a second diuretic on record gives the card a new uuid, shown at once
    changed = _request()
    statements = changed["prefetch"]["medicationStatements"]["entry"]
    added = copy.deepcopy(statements[0])
    added["resource"]["id"] = "furosemide-new"
    added["resource"]["medicationCodeableConcept"] = {"coding": [{
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "4603",
        "display": "furosemide"}], "text": "furosemide"}
    statements.append(added)
    fresh = _cards(base, changed)
    assert "medication" in fresh
    assert fresh["medication"]["uuid"] != drug_card
    assert "furosemide-new" in fresh["medication"]["detail"]


def test_a_two_worker_service_reads_its_feedback_back(config: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(config, port)
    try:
        _addressed_card_stays_out_until_its_evidence_changes(base)
    finally:
        _stop(process)
    fresh_db = config.parent / "fresh.yaml"  # a clean slate for the periods
    fresh_db.write_text(config.read_text().replace("s.db", "fresh.db"))
    config = fresh_db
    process = _start(config, port)
    try:
        first = _cards(base)
        _override(base, first["explanation"]["uuid"], "not-clinically-relevant")  # 3 s
        _override(base, first["electrolytes"]["uuid"], "already-addressed")
        _override(base, first["medication"]["uuid"], "data-out-of-date")
        quiet_from = time.monotonic()
        shown = _cards(base)
        assert "medication" in shown, "a reason with no period quiets nothing"
        assert "explanation" not in shown and "electrolytes" not in shown
    finally:
        _stop(process)
    process = _start(config, port)  # a new process, the same database
    try:
        restarted = _cards(base)
        assert "electrolytes" not in restarted, "stored durably"
        time.sleep(max(0.0, 3.2 - (time.monotonic() - quiet_from)))
        later = _cards(base)
        assert "explanation" in later, "its period (3 s) is over"
        assert "electrolytes" not in later, "30 days are not"
    finally:
        _stop(process)


def test_evaluate_leaves_out_the_cards_an_embedder_suppresses() -> None:
    full = twitch_cds.evaluate(_request())
    chosen = str(full.cards[0].uuid)
    quiet = twitch_cds.evaluate(_request(), suppress={chosen})
    assert [str(c.uuid) for c in quiet.cards] == [str(c.uuid) for c in full.cards[1:]]
    assert quiet.suppressed == [chosen]
    assert twitch_cds.evaluate(_request(), suppress={"unknown"}).cards == full.cards
