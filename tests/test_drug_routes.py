"""How a corticosteroid is told systemic, local or of unknown route (rulesets/trust.yaml
``non_systemic``), and that the local-use value set is checked at load time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import twitch_cds
from twitch_cds import RulesetError, load_knowledge
from twitch_cds.knowledge.bundle import Knowledge

from .builders import ATC, NOW, RXNORM, fired, med_statement, parts, twitching

SYSTEMIC = "side-effect-corticosteroid"
UNKNOWN = "side-effect-corticosteroid-route-unknown"


def _steroid_rules(resource: dict[str, object]) -> set[str]:
    return fired(twitch_cds.evaluate([twitching(), resource], now=NOW)) & {SYSTEMIC, UNKNOWN}


@pytest.mark.parametrize(("resource", "expected"), [
    # words are whole words: a gelatin capsule is not a gel, and a capsule is taken by mouth
    (med_statement("m", text="Prednisone 5 MG gelatin capsule"), {SYSTEMIC}),
    (med_statement("m", text="Hydrocortisone 1% topical cream"), set()),
    (med_statement("m", text="Budesonide inhaler"), set()),
    (med_statement("m", [{"system": RXNORM, "code": "3264"}], text="Deksametason tetes mata"),
     set()),
    (med_statement("m", [{"system": RXNORM, "code": "8638"}],
                   dosage=[{"text": "1 tablet diminum pagi hari"}]), {SYSTEMIC}),
    # prednisone has no local-use form: systemic with no route on record; prednisolone has
    # eye drops, so with no dose form its route stays unknown
    (med_statement("m", [{"system": RXNORM, "code": "8640"}]), {SYSTEMIC}),
    (med_statement("m", [{"system": RXNORM, "code": "8640"}], text="Prednison 5 mg"), {SYSTEMIC}),
    (med_statement("m", text="deflazacort"), {SYSTEMIC}),
    (med_statement("m", [{"system": RXNORM, "code": "8638"}]), {UNKNOWN}),
    # the product's name or dose form says how it is taken, in Indonesian too
    (med_statement("m", [{"system": RXNORM, "code": "6902"}], text="Metilprednisolon injeksi"),
     {SYSTEMIC}),
    (med_statement("m", [{"system": RXNORM, "code": "3264"}], text="Deksametason tablet 0,5 mg"),
     {SYSTEMIC}),
    (med_statement("m", [{"system": RXNORM, "code": "8638"}], text="prednisolone oral solution"),
     {SYSTEMIC}),
    (med_statement("m", [{"system": RXNORM, "code": "3264"}], text="dexamethasone ampul"),
     {SYSTEMIC}),
    # ATC H02 is systemic by definition, even next to a local-use word
    (med_statement("m", [{"system": ATC, "code": "H02AB07"}], text="prednisone spray"),
     {SYSTEMIC}),
    # an ATC code for local use wins over a by-mouth word
    (med_statement("m", [{"system": RXNORM, "code": "19831"}, {"system": ATC, "code": "A07EA06"}],
                   text="budesonide oral capsule"), set()),
    # free-text instructions may say systemic, never drop the drug
    (med_statement("m", [{"system": RXNORM, "code": "3264"}],
                   dosage=[{"text": "apply to the eye with a cream"}]), {UNKNOWN}),
    (med_statement("m", [{"system": RXNORM, "code": "3264"}],
                   dosage=[{"text": "one tablet by mouth daily"}]), {SYSTEMIC}),
])
def test_route_of_a_corticosteroid(resource: dict[str, object], expected: set[str]) -> None:
    assert _steroid_rules(resource) == expected


def test_a_local_use_corticosteroid_is_reported_not_silently_dropped() -> None:
    resource = med_statement("m", [{"system": ATC, "code": "D07AC01", "display": "betamethasone"}])
    result = twitch_cds.evaluate([twitching(), resource], now=NOW)
    assert not fired(result) & {SYSTEMIC, UNKNOWN}
    assert [(i.code, i.action) for i in result.issues if i.resource == "MedicationStatement/m"] \
        == [("not-systemic", "ignored")]


@pytest.mark.parametrize(("key", "unknown"), [("valueset", "corticosteroid-topical"),
                                              ("systemic_valueset", "corticosteroid-oral")])
def test_an_unknown_route_value_set_is_refused(tmp_path: Path, knowledge: Knowledge, key: str,
                                               unknown: str) -> None:
    """trust.yaml's local-use and systemic value sets must exist in the terminology."""
    copy = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, copy)
    trust = yaml.safe_load((copy / "trust.yaml").read_text())
    trust["non_systemic"]["corticosteroid"][key] = unknown
    (copy / "trust.yaml").write_text(yaml.safe_dump(trust))
    with pytest.raises(RulesetError, match=unknown):
        load_knowledge(copy)


def test_a_systemic_and_an_unknown_route_corticosteroid_are_both_kept() -> None:
    # route_known tells two exposures apart: neither is merged into the other
    result = twitch_cds.evaluate([
        twitching(), med_statement("a", [{"system": ATC, "code": "H02AB06"}]),
        med_statement("b", [{"system": RXNORM, "code": "8638"}])], now=NOW)
    assert fired(result) >= {SYSTEMIC, UNKNOWN}
    card = next(c for c in result.cards if "medication-side-effect" in parts(c))
    assert "MedicationStatement/a" in (card.detail or "")
    assert "MedicationStatement/b" in (card.detail or "")


@pytest.mark.parametrize(("form", "expected"), [
    ({"coding": [{"system": "http://standardterms.edqm.eu", "code": "10219000"}]}, {SYSTEMIC}),
    ({"coding": [{"system": "http://snomed.info/sct", "code": "385219001"}]}, {SYSTEMIC}),
    ({"text": "Larutan injeksi"}, {SYSTEMIC}),
    ({"coding": [{"system": "http://standardterms.edqm.eu", "code": "99999999"}]}, {UNKNOWN}),
])
def test_a_coded_dose_form_says_systemic(form: dict[str, object], expected: set[str]) -> None:
    medication = {"resourceType": "Medication", "id": "hc", "form": form,
                  "code": {"coding": [{"system": RXNORM, "code": "5492"}]}}
    statement = {"resourceType": "MedicationStatement", "id": "s", "status": "active",
                 "medicationReference": {"reference": "Medication/hc"},
                 "subject": {"reference": "Patient/p1"}}
    result = twitch_cds.evaluate([twitching(), medication, statement], now=NOW)
    assert fired(result) & {SYSTEMIC, UNKNOWN} == expected
