"""The CDS Hooks service over real HTTP on loopback: uvicorn, real keys, a stand-in FHIR server."""

from __future__ import annotations

import copy
import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import twitch_cds
from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.service.app import create_app
from twitch_cds.service.config import ServiceConfig, TrustedClient
from twitch_cds.service.templates import observation_codes, prefetch_templates, token

from ..cds_checks import check_response, mentions
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
ROTATING_ISSUER = "https://rotating.example.org"


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"es": SigningKey.es384(), "rs": SigningKey.rs384(),
            "rot1": SigningKey.es384("rot-1"), "rot2": SigningKey.es384("rot-2")}


@pytest.fixture(scope="module")
def fhir(keys: dict[str, SigningKey]) -> Iterator[Any]:
    # Margaret (examples/03): twitching, furosemide, an HCTZ order, no labs.
    with fhir_server(example_resources("03-diuretic-no-labs.json"),
                     keys=jwks(keys["rot1"])) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, SigningKey],
            fhir: Any) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("service")
    jwks_file = folder / "ehr-jwks.json"
    jwks_file.write_text(json.dumps(jwks(keys["es"], keys["rs"])))

    def app(url: str) -> Any:
        return create_app(ServiceConfig(evaluate_in="thread",
            clients=[TrustedClient(issuer=ISSUER, jwks_file=jwks_file),
                     TrustedClient(issuer=ROTATING_ISSUER, jwks_url=f"{fhir.base}/jwks",
                                   tenants=["hospital-a"])],
            public_base_url=url, allow_insecure_fhir_server=True,  # the stand-in is http
            database_url=f"sqlite:///{folder / 'service.db'}",
            cors_origins=["https://ehr.example.org"],
            time_budget_ms=2000, fetch_timeout_ms=1500, jwks_refresh_cooldown_s=0,
            max_body_bytes=200_000, max_feedback_items=5, body_read_timeout_ms=1000,
        ))

    with LiveServer.build(app) as server:
        yield server.url


def _headers(keys: dict[str, SigningKey], url: str, key: str = "es",
             **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[key].token(url, **claims)}"}


def _request(name: str = "10-cds-hooks-request.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    data["hookInstance"] = str(uuid.uuid4())
    return data


def _post(service: str, keys: dict[str, SigningKey], body: Any,
          service_id: str = PATIENT_VIEW, **claims: Any) -> httpx.Response:
    url = f"{service}/cds-services/{service_id}"
    return httpx.post(url, json=body, headers=_headers(keys, url, **claims), timeout=10)


def _kinds(response: httpx.Response) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response.json()["cards"]]


# -- discovery ---------------------------------------------------------------------------

def test_discovery(service: str, keys: dict[str, SigningKey]) -> None:
    url = f"{service}/cds-services"
    response = httpx.get(url, headers=_headers(keys, url))
    assert response.status_code == 200
    services = {s["hook"]: s for s in response.json()["services"]}
    assert set(services) == {"patient-view", "order-select", "order-sign"}
    for entry in services.values():
        assert {"id", "title", "description", "usageRequirements", "prefetch"} <= set(entry)
        prefetch = entry["prefetch"]
        assert prefetch["conditions"] == "Condition?patient={{context.patientId}}"
        observations = [key for key in prefetch if key.startswith("observations-")]
        assert len(observations) >= 2  # 4,000 characters of codes do not fit one URL
        searched = ",".join(prefetch[key] for key in observations)
        assert "http://loinc.org%7C2823-3" in searched and "|" not in searched
        assert "icd-10-cm" not in searched  # condition codes go to the Condition search
        extension = entry["extension"]["io.github.twitch-cds"]
        assert extension["rulesetVersion"] and "4.0.1" in extension["fhirVersions"]
        assert extension["packageVersion"] == twitch_cds.__version__
        described = extension["prefetchKeys"]
        assert set(described) == set(prefetch)
        assert described["observations-1"] == {"required": True, "partOf": "observations",
                                               "cards": described["conditions"]["cards"]}
        assert described["medicationRequests"]["cards"] == ["medication",
                                                            "electrolytes"]
        assert described["medicationStatements"]["required"] is False


def test_the_bundled_request_prefetches_every_key_discovery_declares() -> None:
    """examples/10 stands for an EHR that honours discovery: a key it left out would be
    fetched from its (unreachable) fhirServer, costing the fetch timeout on every call."""
    declared = set(prefetch_templates(default_knowledge()))
    assert set(_request()["prefetch"]) == declared


def test_every_prefetch_template_is_under_the_url_limit_and_encoded() -> None:
    knowledge = default_knowledge()
    for limit in (2000, 1000, 600):
        templates = prefetch_templates(knowledge, limit)
        for key, prefetch in templates.items():
            url = prefetch.template.replace("{{context.patientId}}", "p" * 64)
            assert len(url) <= limit, key
            assert "|" not in url and " " not in url
        codes = [code for key, p in templates.items() if key.startswith("observations-")
                 for code in p.template.split("&code=")[1].split(",")]
        wanted = observation_codes(knowledge)
        assert len(codes) == len(set(codes)) == len(wanted)  # each code once, none lost
    assert len([k for k in prefetch_templates(knowledge, 600) if "observations" in k]) > len(
        [k for k in prefetch_templates(knowledge, 2000) if "observations" in k])


def test_observation_searches_hold_only_observation_code_systems() -> None:
    knowledge = default_knowledge()
    systems = {system for system, _ in observation_codes(knowledge)}
    assert systems == {"http://loinc.org", "http://snomed.info/sct",
                       "https://twitch-cds.github.io/fhir/CodeSystem/twitch-cds"}


def test_a_limit_too_short_for_one_code_is_refused() -> None:
    with pytest.raises(ValueError, match="max_prefetch_url_length 150 is too short"):
        prefetch_templates(default_knowledge(), 150)


# -- hooks -------------------------------------------------------------------------------

def test_patient_view_with_full_prefetch(service: str, keys: dict[str, SigningKey],
                                         fhir: Any) -> None:
    before = len(fhir.requests)
    request = _request()
    response = _post(service, keys, request)
    assert response.status_code == 200
    check_response(response.json())
    assert _kinds(response) == ["electrolytes", "medication", "explanation"]
    assert mentions(response.json()["cards"][0]["detail"], "Observation/na-1122")
    assert len(fhir.requests) == before  # nothing fetched


def _margaret(fhir: Any, **prefetch: Any) -> dict[str, Any]:
    patient = next(r for r in fhir.resources if r["resourceType"] == "Patient")
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "fhirServer": f"{fhir.base}/fhir",
            "fhirAuthorization": {"access_token": FHIR_TOKEN, "token_type": "Bearer",
                                  "expires_in": 300, "scope": "patient/*.read",
                                  "subject": "twitch-cds"},
            "context": {"userId": "Practitioner/1", "patientId": patient["id"]},
            "prefetch": {"patient": patient, **prefetch}}


def test_patient_view_fetches_what_the_client_left_out(service: str, keys: dict[str, SigningKey],
                                                       fhir: Any) -> None:
    failed = {"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                             "code": "timeout"}]}
    response = _post(service, keys, _margaret(fhir, conditions=failed))
    assert response.status_code == 200
    check_response(response.json())
    kinds = _kinds(response)
    assert "medication" in kinds and "electrolytes" in kinds
    detail = next(c["detail"] for c in response.json()["cards"]
                  if c["source"]["topic"]["code"] == "medication")
    assert mentions(detail, "MedicationStatement/furosemide")
    assert mentions(detail, "MedicationRequest/hctz")
    assert "Data used" in detail


def test_paging_through_search_results(service: str, keys: dict[str, SigningKey],
                                       fhir: Any) -> None:
    many = [dict(copy.deepcopy(fhir.resources[1]), id=f"tw-{i}") for i in range(5)]
    fhir.resources.extend(many)
    try:
        before = len(fhir.requests)
        response = _post(service, keys, _margaret(fhir))
        assert response.status_code == 200
        assert any("page=2" in url for url in fhir.requests[before:])
        detail = json.dumps(response.json())
        assert all(mentions(detail, f"Observation/tw-{i}") for i in range(5))
    finally:
        del fhir.resources[-5:]


def test_a_fhir_server_with_a_url_limit_answers_every_search(service: str,
                                                            keys: dict[str, SigningKey],
                                                            fhir: Any) -> None:
    codes = ",".join(f"{system}|{code}" for system, code in observation_codes(
        default_knowledge()))
    one_search = f"{fhir.base}/fhir/Observation?patient=margaret&code={codes}"
    fhir.max_url_length = 2000
    try:
        assert httpx.get(one_search, headers={"Authorization": f"Bearer {FHIR_TOKEN}"}
                         ).status_code == 414  # all the codes in one URL: refused
        before = len(fhir.requests)
        response = _post(service, keys, _margaret(fhir))  # nothing but the patient given
        searches = fhir.requests[before:]
    finally:
        fhir.max_url_length = None
    assert response.status_code == 200
    assert set(_kinds(response)) == {"electrolytes", "medication",
                                     "explanation"}
    assert mentions(json.dumps(response.json()), "Observation/tw-1122")
    assert len([url for url in searches if "/Observation?" in url]) >= 2
    assert all(len(httpx.URL(url).raw_path) <= 2000 for url in searches)


def test_split_observation_keys_given_in_part_are_combined_with_fetched_ones(
        service: str, keys: dict[str, SigningKey], fhir: Any) -> None:
    patient = next(r for r in fhir.resources if r["resourceType"] == "Patient")
    templates = prefetch_templates(default_knowledge())
    # a low sodium (LOINC 2951-2) given in a part without the chart's twitching code
    # (SNOMED CT 82470000): the twitching comes from a part that is fetched
    system, code = "http://loinc.org", "2951-2"
    given = next(key for key, p in templates.items() if key.startswith("observations-")
                 and "82470000" not in p.template and token(system, code) in p.template)
    sodium = {"resourceType": "Observation", "id": "na-1", "status": "final",
              "code": {"coding": [{"system": system, "code": code}]},
              "subject": {"reference": f"Patient/{patient['id']}"},
              "effectiveDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                 time.gmtime(time.time() - 3600)),
              "valueQuantity": {"value": 125, "unit": "mmol/L",
                                "system": "http://unitsofmeasure.org", "code": "mmol/L"},
              "referenceRange": [{"low": {"value": 135, "unit": "mmol/L"},
                                  "high": {"value": 145, "unit": "mmol/L"}}]}
    before = len(fhir.requests)
    response = _post(service, keys, _margaret(fhir, **{given: {
        "resourceType": "Bundle", "type": "searchset", "entry": [{"resource": sodium}]}}))
    searches = [url for url in fhir.requests[before:] if "/Observation?" in url]
    assert response.status_code == 200
    cards = response.json()["cards"]
    electrolytes = next(c for c in cards if c["source"]["topic"]["code"]
                        == "electrolytes")
    assert mentions(electrolytes["detail"], "Observation/na-1")  # from the key given
    assert mentions(json.dumps(cards), "Observation/tw-1122")  # from a key fetched
    assert token(system, code) not in ",".join(searches)  # the given part was not fetched
    assert len(searches) == len([k for k in templates if k.startswith("observations-")]) - 1


def test_the_whole_observations_key_satisfies_every_part(service: str,
                                                         keys: dict[str, SigningKey],
                                                         fhir: Any) -> None:
    tw = next(r for r in fhir.resources if r["id"] == "tw-1122")
    before = len(fhir.requests)
    response = _post(service, keys, _margaret(fhir, observations={
        "resourceType": "Bundle", "type": "searchset", "entry": [{"resource": tw}]}))
    assert response.status_code == 200
    assert mentions(json.dumps(response.json()), "Observation/tw-1122")
    assert not [url for url in fhir.requests[before:] if "/Observation?" in url]


def test_missing_required_prefetch_without_fhir_server_is_412(service: str,
                                                              keys: dict[str, SigningKey]) -> None:
    request = _request()
    del request["prefetch"]["observations-1"]
    del request["fhirServer"]
    response = _post(service, keys, request)
    assert response.status_code == 412
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "observations" in body["issue"][0]["diagnostics"]


def test_a_required_fetch_that_fails_is_412(service: str, keys: dict[str, SigningKey],
                                            fhir: Any) -> None:
    fhir.fail_types.add("Condition")
    try:
        response = _post(service, keys, _margaret(fhir))
    finally:
        fhir.fail_types.clear()
    assert response.status_code == 412
    assert "HTTP 500" in response.json()["issue"][0]["diagnostics"]


def test_order_sign_warns_about_a_draft_diuretic(service: str, keys: dict[str, SigningKey],
                                                 fhir: Any) -> None:
    request = _margaret(fhir)
    request["hook"] = "order-sign"
    request["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                         "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "draft-pred", "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{request['context']['patientId']}"},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                                                  "code": "H02AB07"}]}}}]}
    response = _post(service, keys, request, service_id="twitch-cds-order-sign")
    assert response.status_code == 200
    check_response(response.json())
    cards = response.json()["cards"]
    assert len(cards) == 1, "at ordering, only the cards about the orders"
    assert mentions(cards[0]["detail"], "MedicationRequest/draft-pred")
    assert cards[0]["indicator"] == "warning"
    assert cards[0]["source"]["topic"]["code"] == "medication"


def _open_app(tmp_path: Path, **options: Any) -> Any:
    """An app without authentication (these tests are about the clock, not the caller)."""
    return create_app(ServiceConfig(evaluate_in="thread", allow_unauthenticated=True,
                                    allow_insecure_fhir_server=True,
                                    database_url=f"sqlite:///{tmp_path / 's.db'}", **options))


def _slow_evaluate(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make every evaluation take ``seconds`` longer (in the engine thread)."""
    import twitch_cds

    real = twitch_cds.evaluate

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(twitch_cds, "evaluate", slow)


def _assert_check_incomplete(response: httpx.Response, hook_instance: str) -> None:
    assert response.status_code == 200
    check_response(response.json())
    cards = response.json()["cards"]
    assert len(cards) == 1, "never {'cards': []}: the answer must not look like no guidance"
    card = cards[0]
    assert card["source"]["topic"]["code"] == "check-incomplete"
    assert card["indicator"] == "warning"
    assert "red flags" in card["summary"] and len(card["summary"]) < 140
    for sign in ("weakness", "loss of sensation", "muscle wasting", "outside exercise",
                 "severe or chronic"):
        assert sign in card["detail"]
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://twitch-cds.github.io/fhir/CodeSystem/"
                                               "twitch-cds#check-incomplete")
    assert card["uuid"] == str(uuid.uuid5(namespace, hook_instance))


def test_the_event_loop_answers_while_an_evaluation_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_evaluate(monkeypatch, 1.5)
    with LiveServer(_open_app(tmp_path, time_budget_ms=5000)) as server, \
            ThreadPoolExecutor(1) as pool:
        request = _request()
        slow = pool.submit(httpx.post, f"{server.url}/cds-services/{PATIENT_VIEW}",
                           json=request, timeout=10)
        time.sleep(0.3)  # the evaluation is now sleeping in the engine thread
        started = time.perf_counter()
        health = httpx.get(f"{server.url}/healthz", timeout=5)
        discovery = httpx.get(f"{server.url}/cds-services", timeout=5)
        waited = time.perf_counter() - started
        assert not slow.done(), "the evaluation was still running meanwhile"
        answer = slow.result()
    assert health.status_code == 200 and discovery.status_code == 200
    assert waited < 0.5, f"/healthz and discovery waited {waited:.2f} s for the engine"
    assert answer.status_code == 200 and _kinds(answer)[0] == "electrolytes"


def test_a_slow_evaluation_answers_the_check_incomplete_card(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _slow_evaluate(monkeypatch, 1.0)
    with LiveServer(_open_app(tmp_path, time_budget_ms=200)) as server:
        request = _request()
        started = time.perf_counter()
        response = httpx.post(f"{server.url}/cds-services/{PATIENT_VIEW}", json=request,
                              timeout=10)
        elapsed = time.perf_counter() - started
        health = httpx.get(f"{server.url}/healthz").json()
    _assert_check_incomplete(response, request["hookInstance"])
    assert elapsed < 0.9, "answered at the budget, not when the evaluation ended"
    assert health["checks_incomplete"] == 1
    assert any("check incomplete (time-budget)" in r.getMessage()
               and request["hookInstance"] in r.getMessage() for r in caplog.records)


def test_a_slow_fetch_answers_the_check_incomplete_card(tmp_path: Path) -> None:
    with fhir_server(example_resources("03-diuretic-no-labs.json"), delay_s=1.0) as slow, \
            LiveServer(_open_app(tmp_path, time_budget_ms=100)) as server:
        request = _margaret(slow)
        response = httpx.post(f"{server.url}/cds-services/{PATIENT_VIEW}", json=request,
                              timeout=10)
    _assert_check_incomplete(response, request["hookInstance"])


def test_a_failed_evaluation_answers_the_check_incomplete_card_not_a_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import twitch_cds

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret patient detail")

    monkeypatch.setattr(twitch_cds, "evaluate", broken)
    with LiveServer(_open_app(tmp_path)) as server:
        request = _request()
        response = httpx.post(f"{server.url}/cds-services/{PATIENT_VIEW}", json=request)
    _assert_check_incomplete(response, request["hookInstance"])
    assert "internal error" in response.json()["cards"][0]["summary"]
    assert "secret" not in response.text


# -- feedback ----------------------------------------------------------------------------

def test_feedback_is_stored_once_per_card_and_outcome(service: str,
                                                      keys: dict[str, SigningKey]) -> None:
    cards = _post(service, keys, _request()).json()["cards"]
    card = cards[0]
    reason = card["overrideReasons"][0]
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp":
            "2026-11-24T09:05:00Z", "overrideReason": {"reason": reason,
                                                       "userComment": "seen by neurology"}}
    url = f"{service}/cds-services/{PATIENT_VIEW}/feedback"
    for _ in range(2):
        response = httpx.post(url, json={"feedback": [item]}, headers=_headers(keys, url))
        assert response.status_code == 200
    accepted = {"card": cards[-1]["uuid"], "outcome": "accepted", "acceptedSuggestions": [],
                "outcomeTimestamp": "2026-11-24T09:06:00Z"}
    assert httpx.post(url, json={"feedback": [accepted]},
                      headers=_headers(keys, url)).status_code == 200
    bad = httpx.post(url, json={"feedback": [{"card": "x", "outcome": "ignored"}]},
                     headers=_headers(keys, url))
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_feedback_rows_are_durable(tmp_path: Path) -> None:
    from twitch_cds.service.store import Store

    url = f"sqlite:///{tmp_path / 'f.db'}"
    item = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-24T09:05:00Z",
            "overrideReason": {"reason": {"code": "already-addressed"}}}
    assert Store(url).record_feedback("s", item) is True
    reopened = Store(url)
    assert reopened.record_feedback("s", item) is False
    rows = reopened.feedback_for("c1")
    assert len(rows) == 1 and rows[0]["override_reason_code"] == "already-addressed"


# -- JWT -----------------------------------------------------------------------------------

def test_rs384_is_accepted(service: str, keys: dict[str, SigningKey]) -> None:
    assert _post(service, keys, _request(), key="rs").status_code == 200


@pytest.mark.parametrize("case", [
    "no-header", "expired", "wrong-audience", "unknown-issuer", "alg-none", "hs256",
    "tampered", "no-jti", "future-iat", "unknown-kid", "rs384-on-an-ec-key",
    "es384-on-an-rsa-key", "no-typ", "typ-jose", "string-exp", "not-a-jwt", "aud-from-host"])
def test_bad_tokens_get_a_bare_401(service: str, keys: dict[str, SigningKey], case: str) -> None:
    url = f"{service}/cds-services/{PATIENT_VIEW}"
    key = keys["es"]
    tokens = {
        "expired": lambda: key.token(url, exp=1_700_000_000, iat=1_699_999_000),
        "wrong-audience": lambda: key.token(f"{service}/cds-services/other"),
        "unknown-issuer": lambda: key.token(url, issuer="https://evil.example.org"),
        "alg-none": lambda: jwt.encode({"iss": ISSUER, "aud": url, "exp": 4_000_000_000,
                                        "iat": 1_700_000_000, "jti": "n"}, None,
                                       algorithm="none", headers={"kid": key.kid}),
        "hs256": lambda: _hs256({"iss": ISSUER, "aud": url, "exp": 4_000_000_000,
                                 "iat": 1_700_000_000, "jti": "h"}, key),
        "tampered": lambda: _tamper(key.token(url)),
        "no-jti": lambda: key.token(url, jti=None),
        "future-iat": lambda: key.token(url, iat=4_000_000_000),
        "unknown-kid": lambda: SigningKey.es384("stranger").token(url),
        "rs384-on-an-ec-key": lambda: _signed(keys["rs"], url, kid=key.kid),
        "es384-on-an-rsa-key": lambda: _signed(key, url, kid=keys["rs"].kid),
        "no-typ": lambda: _signed(key, url, typ=None),
        "typ-jose": lambda: _signed(key, url, typ="JOSE+JSON"),
        "string-exp": lambda: key.token(url, exp="4000000000"),
        "not-a-jwt": lambda: "a.b.c",
        # minted for another service; the Host header claims to be that service
        "aud-from-host": lambda: key.token("http://other.example/cds-services/" + PATIENT_VIEW),
    }
    headers = {} if case == "no-header" else {"Authorization": f"Bearer {tokens[case]()}"}
    if case == "aud-from-host":
        headers["Host"] = "other.example"
    response = httpx.post(url, json=_request(), headers=headers)
    assert response.status_code == 401
    assert response.content == b""


def _signed(signer: SigningKey, audience: str, kid: str | None = None,
            typ: str | None = "JWT") -> str:
    """A token signed by ``signer`` whose header names ``kid`` and ``typ`` as given (PyJWT
    leaves ``typ`` out when it is None)."""
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": audience, "exp": now + 300, "iat": now,
                        "jti": str(uuid.uuid4())}, signer.private, algorithm=signer.alg,
                       headers={"kid": kid or signer.kid, "typ": typ})
    assert jwt.get_unverified_header(token).get("typ") == typ
    return token


def _hs256(claims: dict[str, Any], key: SigningKey) -> str:
    """The algorithm-confusion attack: HMAC-signed with the issuer's public key as secret."""
    import hashlib
    import hmac

    def part(data: dict[str, Any]) -> str:
        return jwt.utils.base64url_encode(json.dumps(data).encode()).decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{part(claims)}"
    secret = json.dumps(key.jwk()).encode()
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{jwt.utils.base64url_encode(signature).decode()}"


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["tenant"] = "someone-else"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


def test_a_replayed_jti_gets_401(service: str, keys: dict[str, SigningKey]) -> None:
    url = f"{service}/cds-services/{PATIENT_VIEW}"
    headers = _headers(keys, url)
    assert httpx.post(url, json=_request(), headers=headers).status_code == 200
    assert httpx.post(url, json=_request(), headers=headers).status_code == 401


def test_jwks_url_with_key_rotation_and_tenants(service: str, keys: dict[str, SigningKey],
                                                fhir: Any) -> None:
    url = f"{service}/cds-services/{PATIENT_VIEW}"

    def call(key: str, tenant: str | None = "hospital-a") -> int:
        token = keys[key].token(url, issuer=ROTATING_ISSUER, tenant=tenant)
        return httpx.post(url, json=_request(),
                          headers={"Authorization": f"Bearer {token}"}).status_code

    assert call("rot1") == 200
    assert call("rot1", tenant="hospital-b") == 401
    assert call("rot1", tenant=None) == 401
    fhir.keys = jwks(keys["rot2"])  # the EHR rotates its key
    assert call("rot2") == 200


# -- bad requests ----------------------------------------------------------------------------

def _raw(service: str, keys: dict[str, SigningKey], content: bytes,
         content_type: str = "application/json",
         service_id: str = PATIENT_VIEW) -> httpx.Response:
    url = f"{service}/cds-services/{service_id}"
    return httpx.post(url, content=content,
                      headers={**_headers(keys, url), "Content-Type": content_type})


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{not json", 400, "not JSON"),
    # a 5,000-digit integer trips Python's integer-string limit: a ValueError, not a 500
    (b'{"hook": "patient-view", "hookInstance": "x", "n": ' + b"7" * 5000 + b"}", 400,
     "JSON parser refuses"),
    # ... and inside a prefetched resource, which only the evaluation parses
    (b'{"hook": "patient-view", "hookInstance": "x", "context": {"userId": "u", '
     b'"patientId": "p"}, "prefetch": {"observations": {"resourceType": "Bundle"}, '
     b'"conditions": {"resourceType": "Bundle"}, "medicationRequests": {"resourceType": '
     b'"Bundle", "n": ' + b"7" * 5000 + b"}}}", 400, "cannot be read"),
    (b'{"hook": "patient-view", "hookInstance": "x", "prefetch": {"p": ' + b"[" * 50_000
     + b"]" * 50_000 + b"}}", 400, "nested too deeply"),
    (b'"a string"', 400, "JSON object"),
    (b'{"hook": "patient-view", "hookInstance": "x", "context": "nope"}', 400, "context"),
    (b'{"hook": "order-sign", "hookInstance": "x", "context": {}}', 400, "does not match"),
    (b'{"hook": "patient-view", "context": {"userId": "u", "patientId": "p"}}', 400,
     "hookInstance"),
    (b'{"hook": "patient-view", "hookInstance": "x", "context": {"userId": "u"}}', 400,
     "patientId"),
    (b'{"hook": "patient-view", "hookInstance": "x", "context": {"userId": "u", '
     b'"patientId": "p"}, "fhirAuthorization": {"access_token": "t"}}', 400, "fhirServer"),
    (b'{"hook": "patient-view", "hookInstance": "x", "context": {"userId": "u", '
     b'"patientId": "p"}, "prefetch": []}', 400, "prefetch"),
])
def test_bad_requests_get_4xx_with_an_operation_outcome(service: str,
                                                        keys: dict[str, SigningKey],
                                                        body: bytes, status: int,
                                                        says: str) -> None:
    response = _raw(service, keys, body)
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and says in outcome["issue"][0][
        "diagnostics"]


def test_unknown_service_oversized_body_and_wrong_content_type(service: str,
                                                               keys: dict[str, SigningKey]) -> None:
    unknown = _raw(service, keys, b"{}", service_id="no-such-service")
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    huge = _raw(service, keys, b'{"x": "' + b"a" * 300_000 + b'"}')
    assert huge.status_code == 413 and huge.json()["resourceType"] == "OperationOutcome"
    form = _raw(service, keys, b"hook=patient-view",
                content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415


def test_cors_only_for_listed_origins(service: str, keys: dict[str, SigningKey]) -> None:
    url = f"{service}/cds-services"
    allowed = httpx.options(url, headers={"Origin": "https://ehr.example.org",
                                          "Access-Control-Request-Method": "POST"})
    assert allowed.headers.get("access-control-allow-origin") == "https://ehr.example.org"
    other = httpx.get(url, headers={**_headers(keys, url), "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_logs_hold_no_tokens_and_no_resource_contents(service: str, keys: dict[str, SigningKey],
                                                      fhir: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{service}/cds-services/{PATIENT_VIEW}"
    token = keys["es"].token(url)
    request = _margaret(fhir)
    response = httpx.post(url, json=request, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    httpx.post(url, json=request, headers={"Authorization": f"Bearer {token}x"})
    text = caplog.text
    assert request["hookInstance"] in text
    for secret in (token, FHIR_TOKEN, "Hall", "furosemide", "Margaret"):
        assert secret not in text


def test_order_select_for_an_unrelated_drug_has_no_cards(service: str,
                                                         keys: dict[str, SigningKey],
                                                         fhir: Any) -> None:
    request = _margaret(fhir)
    request["hook"] = "order-select"
    patient = request["context"]["patientId"]
    request["context"]["selections"] = ["MedicationRequest/draft-metformin"]
    request["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                         "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "draft-metformin", "status": "draft",
        "intent": "order", "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"coding": [{
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809",
            "display": "metformin"}]}}}]}
    response = _post(service, keys, request, service_id="twitch-cds-order-select")
    assert response.status_code == 200 and response.json() == {"cards": []}


# -- where the FHIR token may go ----------------------------------------------------------

def test_a_next_link_to_another_origin_is_not_followed(service: str, keys: dict[str, SigningKey],
                                                       fhir: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    many = [dict(copy.deepcopy(fhir.resources[1]), id=f"far-{i}") for i in range(5)]
    fhir.resources.extend(many)
    request = _margaret(fhir)  # fhirServer on 127.0.0.1 ...
    home = fhir.base
    fhir.base = home.replace("127.0.0.1", "localhost")  # ... its next links elsewhere
    try:
        before = len(fhir.requests)
        response = _post(service, keys, request)
    finally:
        fhir.base = home
        del fhir.resources[-5:]
    assert response.status_code == 200
    asked = fhir.requests[before:]
    assert asked and all(url.startswith(home) for url in asked)
    assert not any("page=1" in url for url in asked)
    assert any("next link to another origin was not followed" in r.getMessage()
               and request["hookInstance"] in r.getMessage() for r in caplog.records)


def test_fhir_server_must_be_https_and_on_the_clients_list(tmp_path: Path,
                                                           keys: dict[str, SigningKey]) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks(keys["es"])))
    listed = TrustedClient(issuer=ISSUER, jwks_file=jwks_file,
                           fhir_servers=["https://fhir.example.org"])

    def app(url: str, insecure: bool) -> Any:
        return create_app(ServiceConfig(evaluate_in="thread",
            clients=[listed], public_base_url=url, allow_insecure_fhir_server=insecure,
            database_url=f"sqlite:///{tmp_path / f's{insecure}.db'}"))

    with fhir_server(example_resources("03-diuretic-no-labs.json")) as stand_in:
        for insecure, says in ((False, "must be an https URL"),
                               (True, "not on this client's list")):
            with LiveServer.build(lambda url, insecure=insecure: app(url, insecure)) as server:
                response = _post(server.url, keys, _margaret(stand_in))
            assert response.status_code == 412
            assert says in response.json()["issue"][0]["diagnostics"]
        assert stand_in.requests == [], "nothing, least of all the token, was sent"


# -- requests, feedback, OpenAPI ------------------------------------------------------------

def test_a_hook_instance_with_control_characters_is_400(service: str,
                                                         keys: dict[str, SigningKey]) -> None:
    for forged in ("x\ny", "x\ry", "x\u2028y", "x\x1b[31my"):
        request = _request()
        request["hookInstance"] = forged
        response = _post(service, keys, request)
        assert response.status_code == 400
        assert "control characters" in response.json()["issue"][0]["diagnostics"]


def test_feedback_items_are_capped_and_written_together(service: str,
                                                        keys: dict[str, SigningKey]) -> None:
    url = f"{service}/cds-services/{PATIENT_VIEW}/feedback"

    def item(card: str) -> dict[str, Any]:
        return {"card": card, "outcome": "accepted", "acceptedSuggestions": [],
                "outcomeTimestamp": "2026-11-24T09:06:00Z"}

    six = [item(str(uuid.uuid4())) for _ in range(6)]  # the fixture allows 5
    too_many = httpx.post(url, json={"feedback": six}, headers=_headers(keys, url))
    assert too_many.status_code == 413
    assert "at most 5" in too_many.json()["issue"][0]["diagnostics"]
    five = six[:4] + [six[0]]  # a repeated item is stored once
    assert httpx.post(url, json={"feedback": five},
                      headers=_headers(keys, url)).status_code == 200
    bad_reason = {**item("c"), "outcome": "overridden", "overrideReason": {"reason": "x"}}
    response = httpx.post(url, json={"feedback": [bad_reason]}, headers=_headers(keys, url))
    assert response.status_code == 400 and "Coding" in response.text
    huge = b'{"feedback": [{"card": "c", "n": ' + b"9" * 5000 + b"}]}"
    refused = _raw(service, keys, huge, service_id=f"{PATIENT_VIEW}/feedback")
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"


def test_feedback_store_writes_a_batch_once(tmp_path: Path) -> None:
    from twitch_cds.service.store import Store

    store = Store(f"sqlite:///{tmp_path / 'nested' / 'f.db'}")  # its folder is made
    items = [{"card": f"c{i % 3}", "outcome": "accepted", "outcomeTimestamp": "t"}
             for i in range(6)]
    assert store.record_feedback_items("s", items) == 3
    assert store.record_feedback_items("s", items) == 0
    assert len(store.feedback_for("c1")) == 1


def test_openapi_is_off_by_default_and_describes_the_bodies_when_on(
        service: str, tmp_path: Path) -> None:
    assert httpx.get(f"{service}/openapi.json").status_code == 404
    assert httpx.get(f"{service}/docs").status_code == 404
    with LiveServer(_open_app(tmp_path, openapi=True)) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
    operation = document["paths"]["/cds-services/{service_id}"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/HookRequest"
    schemas = document["components"]["schemas"]
    assert {"hook", "hookInstance", "context"} <= set(schemas["HookRequest"]["required"])
    feedback = document["paths"]["/cds-services/{service_id}/feedback"]["post"]
    assert feedback["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Feedback")
    assert "FeedbackItem" in schemas and "Card" in schemas


def test_the_default_database_is_outside_the_working_tree(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from twitch_cds.service.config import default_database_path

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    config = ServiceConfig(allow_unauthenticated=True)
    assert config.database == f"sqlite:///{tmp_path / 'state' / 'twitch-cds' / 'service.db'}"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_database_path() == Path.home() / ".local/state/twitch-cds/service.db"


def test_results_cut_at_the_page_limit_are_reported(service: str, keys: dict[str, SigningKey],
                                                    fhir: Any, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from twitch_cds.service import prefetch

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(prefetch, "MAX_PAGES", 1)
    many = [dict(copy.deepcopy(fhir.resources[1]), id=f"cut-{i}") for i in range(3)]
    fhir.resources.extend(many)
    try:
        request = _margaret(fhir)
        response = _post(service, keys, request)
    finally:
        del fhir.resources[-3:]
    assert response.status_code == 200
    assert any("results cut at 1 pages" in r.getMessage()
               and request["hookInstance"] in r.getMessage() for r in caplog.records)


def test_an_optional_key_that_fails_is_reported(service: str, keys: dict[str, SigningKey],
                                                fhir: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fhir.fail_types.add("MedicationStatement")
    try:
        request = _margaret(fhir)
        response = _post(service, keys, request)
    finally:
        fhir.fail_types.clear()
    assert response.status_code == 200
    assert any("medicationStatements: fetching failed (HTTP 500)" in r.getMessage()
               for r in caplog.records)


def test_a_slow_jwks_fetch_does_not_block_the_event_loop(tmp_path: Path,
                                                         keys: dict[str, SigningKey]) -> None:
    import asyncio

    from fastapi import FastAPI

    slow_keys = FastAPI()

    @slow_keys.get("/jwks")
    async def published() -> dict[str, Any]:
        await asyncio.sleep(1.5)
        return jwks(keys["es"])

    with LiveServer(slow_keys) as ehr, ThreadPoolExecutor(1) as pool:
        config = {"clients": [TrustedClient(issuer=ISSUER, jwks_url=f"{ehr.url}/jwks")],
                  "database_url": f"sqlite:///{tmp_path / 's.db'}"}
        with LiveServer.build(lambda url: create_app(ServiceConfig(evaluate_in="thread",
                public_base_url=url, **config))) as server:
            url = f"{server.url}/cds-services"
            call = pool.submit(httpx.get, url, headers=_headers(keys, url), timeout=10)
            time.sleep(0.3)  # the service is now fetching the JWKS
            started = time.perf_counter()
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
            waited = time.perf_counter() - started
            assert not call.done()
            assert call.result().status_code == 200
    assert waited < 0.5, f"/healthz waited {waited:.2f} s for the JWKS fetch"
