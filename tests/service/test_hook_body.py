"""A hook call's body split into raw members: the request the HTTP side checks, and what the
engine reads, are the body's own (nothing lost, nothing re-read differently)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twitch_cds.service.hook_body import BodyProblem, parsed, read_hook_body, resource_type
from twitch_cds.service.prefetch import _satisfied

PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1961-08-12"}
OBSERVATIONS = {"resourceType": "Bundle", "type": "searchset", "entry": [
    {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                  "code": {"text": "Muscle fasciculation"}, "valueQuantity": {"value": 1e-05}}}]}
REQUEST = {"hook": "patient-view", "hookInstance": "h-1",
           "context": {"userId": "Practitioner/1", "patientId": "p1"},
           "prefetch": {"patient": PATIENT, "observations": OBSERVATIONS,
                        "conditions": None, "failed": {"resourceType": "OperationOutcome"}}}


def test_the_request_is_read_whole_but_the_prefetch_stays_raw() -> None:
    raw = json.dumps(REQUEST).encode()
    body = read_hook_body(raw)
    assert body.members == {k: v for k, v in REQUEST.items() if k != "prefetch"}
    assert body.prefetch is not None and set(body.prefetch) == set(REQUEST["prefetch"])
    assert {k: json.loads(bytes(v)) for k, v in body.prefetch.items()} == REQUEST["prefetch"]
    assert {k: resource_type(v) for k, v in body.prefetch.items()} == {
        "patient": "Patient", "observations": "Bundle", "conditions": None,
        "failed": "OperationOutcome"}
    assert [k for k, v in body.prefetch.items() if _satisfied(v)] == ["patient", "observations"]


def test_the_engine_gets_the_body_as_received_when_the_prefetch_is_unchanged() -> None:
    raw = json.dumps(REQUEST).encode()
    body = read_hook_body(raw)
    assert body.prefetch is not None
    assert body.payload(dict(body.prefetch)) is raw


def test_fetched_and_left_out_keys_make_a_new_body_of_the_same_members() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(REQUEST).encode()  # a byte-order mark is tolerated
    body = read_hook_body(raw)
    assert body.prefetch is not None
    fetched = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    payload = body.payload({"patient": body.prefetch["patient"],
                            "observations": body.prefetch["observations"],
                            "conditions": fetched})
    assert json.loads(payload) == {**body.members, "prefetch": {
        "patient": PATIENT, "observations": OBSERVATIONS, "conditions": fetched}}


@pytest.mark.parametrize(("raw", "code", "says"), [
    (b"[1, 2]", "invalid", "JSON object"),
    (b'"a string"', "invalid", "JSON object"),
    (b"{not json", "structure", "not JSON"),
    (b'{"hook": "patient-view", "prefetch": {"a": [1,}}', "structure", "not JSON"),
    (b'{"hook": "patient-view", "prefetch": []}', "invalid", "prefetch"),
    (b'{"hook": "patient-view", "n": ' + b"7" * 5000 + b"}", "structure",
     "JSON parser refuses"),
    # deeper than msgspec reads on any supported Python (its limit follows the interpreter's
    # C recursion limit: about 1,000 levels on 3.11 and 3.12, several thousand on 3.13)
    (b'{"prefetch": {"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}", "structure",
     "nested too deeply"),
])
def test_a_body_that_is_not_a_request_is_a_coded_problem(raw: bytes, code: str,
                                                        says: str) -> None:
    with pytest.raises(BodyProblem) as caught:
        read_hook_body(raw)
    assert caught.value.code == code and says in str(caught.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=12)


@given(members=st.dictionaries(st.sampled_from(["hook", "hookInstance", "context",
                                                "fhirServer", "extension"]), JSON),
       prefetch=st.none() | st.dictionaries(st.text(max_size=6), JSON, max_size=4),
       fetched=st.dictionaries(st.text(max_size=6), JSON, max_size=2))
def test_any_request_reaches_the_engine_as_sent(members: dict[str, Any],
                                               prefetch: dict[str, Any] | None,
                                               fetched: dict[str, Any]) -> None:
    sent = {**members, **({} if prefetch is None else {"prefetch": prefetch})}
    body = read_hook_body(json.dumps(sent).encode())
    assert body.members == members
    kept = dict(body.prefetch or {})
    assert {k: json.loads(bytes(v)) for k, v in kept.items()} == (prefetch or {})
    merged = {**kept, **fetched}
    assert json.loads(body.payload(merged)) == {
        **members, "prefetch": {**(prefetch or {}), **fetched}} if (
        fetched or prefetch is None) else sent


@pytest.mark.parametrize("raw", [
    json.dumps(REQUEST).encode(),
    b'{"a": 1, "a": [1e-05, -0.0, 18446744073709551615, "\\u00e9"]}',
    b"[NaN, 1e400]", b'["\\ud800"]', b"[18446744073709551616]", b"\xef\xbb\xbf{}",
    b"[" * 50_000 + b"]" * 50_000,
])
def test_the_evaluation_reads_what_the_standard_library_reads(raw: bytes) -> None:
    """msgspec where it accepts the text, with the standard library's values; the bytes
    themselves (for evaluate() to read) where it does not."""
    got = parsed(raw)
    if isinstance(got, bytes):
        assert got is raw
    else:
        assert repr(got) == repr(json.loads(raw))
