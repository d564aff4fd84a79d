"""Procedures as EHRs record an evaluation of the twitching (EMG, nerve conduction studies):
read only when completed and dated, every other case reported; unrelated Procedures silent."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fhir.resources.procedure import Procedure as ProcedureR5
from fhir.resources.R4B.procedure import Procedure as ProcedureR4B

import twitch_cds
from tests.builders import condition
from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.service.prefetch import resolve
from twitch_cds.service.templates import prefetch_templates

NOW = "2026-12-01T12:00:00Z"
SCT = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
CHRONIC = condition("fasc", SCT, "82470000", onsetDateTime="2022-03-01")


def procedure(rid: str = "emg", *, status: str | None = "completed", system: str | None = SCT,
              code: str = "42803009", **extra: Any) -> dict[str, Any]:
    coding = {"code": code} if system is None else {"system": system, "code": code}
    resource = {"resourceType": "Procedure", "id": rid, "code": {"coding": [coding]},
                "subject": {"reference": "Patient/p1"}, **extra}
    if status is not None:
        resource["status"] = status
    return resource


def red_flag(result: twitch_cds.EvaluationResult) -> str:
    [card] = [c for c in result.cards if c.kind == "red-flag"]
    return card.indicator


def issues_about(result: twitch_cds.EvaluationResult, label: str) -> list[tuple[str, str, str]]:
    return [(i.code, i.severity, i.path) for i in result.issues if i.resource == label]


@pytest.mark.parametrize("dated", [
    {"performedDateTime": "2023-01-10"},
    {"performedPeriod": {"start": "2023-01-10T09:00:00Z"}},
    {"occurrenceDateTime": "2023-01-10T09:00:00Z"},
    {"occurrencePeriod": {"start": "2023-01-09", "end": "2023-01-10"}},
])
def test_a_completed_dated_evaluation_settles_the_red_flag(dated: dict[str, Any]) -> None:
    result = twitch_cds.evaluate([CHRONIC, procedure(**dated)], now=NOW)
    assert red_flag(result) == "info"
    assert issues_about(result, "Procedure/emg") == []


@pytest.mark.parametrize("code", ["95860", "95864", "95907", "95913"])
def test_cpt_needle_emg_and_nerve_conduction_count(code: str) -> None:
    result = twitch_cds.evaluate(
        [CHRONIC, procedure(system=CPT, code=code, performedDateTime="2024-01-10")], now=NOW)
    assert red_flag(result) == "info"


@pytest.mark.parametrize("status", ["preparation", "in-progress", "not-done", "on-hold",
                                    "stopped", "entered-in-error", "unknown"])
def test_a_procedure_not_completed_is_reported_and_not_counted(status: str) -> None:
    result = twitch_cds.evaluate(
        [CHRONIC, procedure(status=status, performedDateTime="2023-01-10")], now=NOW)
    assert red_flag(result) == "warning"
    assert ("status-unusable", "information", "status") in issues_about(result, "Procedure/emg")


def test_a_procedure_without_status_is_reported_once_and_not_counted() -> None:
    result = twitch_cds.evaluate(
        [CHRONIC, procedure(status=None, performedDateTime="2023-01-10")], now=NOW)
    assert red_flag(result) == "warning"
    assert issues_about(result, "Procedure/emg") == [("status-unusable", "warning", "status")]


@pytest.mark.parametrize("undated", [{}, {"performedString": "last year"},
                                     {"occurrenceString": "in 2023"}])
def test_an_undated_procedure_is_reported_and_not_counted(undated: dict[str, Any]) -> None:
    result = twitch_cds.evaluate([CHRONIC, procedure(**undated)], now=NOW)
    assert red_flag(result) == "warning"
    path = "occurrence[x]" if "occurrenceString" in undated else "performed[x]"
    assert ("date-missing", "warning", path) in issues_about(result, "Procedure/emg")


def test_an_evaluation_older_than_its_window_is_stale() -> None:
    result = twitch_cds.evaluate(
        [condition("fasc", SCT, "82470000", onsetDateTime="2010-03-01"),
         procedure(performedDateTime="2012-01-10")], now=NOW)
    assert red_flag(result) == "warning"
    assert ("stale", "information", "performed[x]") in issues_about(result, "Procedure/emg")


def test_a_future_procedure_is_skipped() -> None:
    result = twitch_cds.evaluate([CHRONIC, procedure(performedDateTime="2027-06-01")], now=NOW)
    assert red_flag(result) == "warning"
    assert ("future-date", "error", "performed[x]") in issues_about(result, "Procedure/emg")


def test_unrelated_procedures_are_silent() -> None:
    """A chart's Procedure search returns every procedure (vaccinations, surgery, imaging):
    one issue each would bury the ones that matter, and a missed evaluation only keeps the
    card as urgent as it was."""
    result = twitch_cds.evaluate([CHRONIC, procedure("appx", code="80146002",
                                                     performedDateTime="2015-06-01"),
                                  procedure("local", system="urn:local", code="X1",
                                            performedDateTime="2015-06-01")], now=NOW)
    assert red_flag(result) == "warning"
    assert issues_about(result, "Procedure/appx") == []
    assert issues_about(result, "Procedure/local") == []


def test_an_evaluation_code_without_its_system_is_reported() -> None:
    result = twitch_cds.evaluate(
        [CHRONIC, procedure(system=None, performedDateTime="2023-01-10")], now=NOW)
    assert red_flag(result) == "warning"
    assert ("code-without-system", "warning", "code.coding") in issues_about(
        result, "Procedure/emg")


def test_an_evaluation_named_only_in_text_is_reported() -> None:
    emg = procedure(performedDateTime="2023-01-10")
    emg["code"] = {"text": "Electromyography of both legs"}
    result = twitch_cds.evaluate([CHRONIC, emg], now=NOW)
    assert red_flag(result) == "warning"
    assert ("text-only", "warning", "code") in issues_about(result, "Procedure/emg")


def test_a_procedure_coded_with_a_finding_is_not_that_finding() -> None:
    """Only the value sets in concepts.procedures are read from a Procedure: a Procedure
    coded with muscle weakness does not become a weakness red flag."""
    result = twitch_cds.evaluate(
        [CHRONIC, procedure(code="26544005", performedDateTime="2026-11-20")], now=NOW)
    assert red_flag(result) == "warning"


@pytest.mark.parametrize("model", [ProcedureR4B, ProcedureR5])
def test_model_instances_of_either_version(model: Any) -> None:
    key = "occurrenceDateTime" if model is ProcedureR5 else "performedDateTime"
    instance = model.model_validate(procedure(**{key: "2023-01-10T09:00:00Z"}))
    result = twitch_cds.evaluate([CHRONIC, instance], now=NOW)
    assert red_flag(result) == "info"


def test_discovery_asks_for_procedures_and_the_fallback_fetches_them() -> None:
    """The service's prefetch templates request the patient's Procedures (optional: the
    red-flag card reads them), and a request without them has them fetched."""
    templates = prefetch_templates(default_knowledge())
    assert templates["procedures"].template == "Procedure?patient={{context.patientId}}"
    assert templates["procedures"].required is False
    assert templates["procedures"].cards == ("red-flag",)
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path}?{request.url.query.decode()}")
        entries = [{"resource": procedure(performedDateTime="2023-01-10")}] if (
            request.url.path.endswith("/Procedure")) else []
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                         "entry": entries})

    given = {key: {"resourceType": "Bundle", "type": "searchset", "entry": []}
             for key in templates if key != "procedures"}
    request = {"hook": "patient-view", "context": {"patientId": "p1"}, "prefetch": given,
               "fhirServer": "https://fhir.example.org/r4"}

    async def run() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            return await resolve(request, templates, client, 5.0)

    resolved = asyncio.run(run())
    assert asked == ["/r4/Procedure?patient=p1"]
    assert resolved.fetched == ["procedures"]
    assert resolved.prefetch["procedures"]["entry"][0]["resource"]["id"] == "emg"
