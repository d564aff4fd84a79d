"""Every combination of the six red flags, each in every input shape: one red-flag card.

The article (``rulesets/rules/red-flags/``): twitching that is severe, chronic, outside
exercise, or comes with weakness, loss of sensation or muscle wasting needs a doctor. A red
flag is never dropped, and a clinician must see why: for each of the 63 non-empty
combinations there must be exactly ONE red-flag card (critical with weakness or wasting, a
warning without: the card plan's indicator policy), its summary must name every
flag of the combination (and no other), and its structured evidence (``result.evidence``)
must cite every resource that carries a flag, by exact reference, and none of the unrelated
resources around them.

Shapes (``docs/input-profile.md``): a flag is carried by an Observation or a Condition, coded
in SNOMED CT, ICD-10-CM or WHO ICD-10 (as SATUSEHAT sends diagnoses), read as FHIR R4 or R5,
alone or among unrelated resources. The
full product of shapes per flag is too big, so each combination runs once per shape variant
with every flag in that variant (or the closest shape the flag allows), each run in one of
the four (version, surroundings) settings, rotated across combinations; a hypothesis test
then draws a shape per flag at random. Within a shape, the runs rotate through every code of
the sign value sets (WHO's is-a classes by a child code: M62.56 for M62.5; WHO's broader
M62.8 for weakness, which the card must call broader, and only then), the ways an
Observation says "present" (no value, true, *Yes*) and the current clinical statuses of a
Condition (active, recurrence, relapse).

The charts are unambiguous whether chronic is read from the onset of a record or from the
continuity of records: chronic is an active twitching Condition with onset a year ago plus
a twitching Observation two days ago; every other record is dated one to five days ago.
Ids share prefixes (``Observation/k``, ``Observation/k-1``, ``Observation/k-10``) so that a
check by substring would pass wrongly and an exact check would not.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge, default_knowledge
from twitch_cds.knowledge.files import rulesets_dir

from .builders import ATC, ICD, LOINC, OURS, SCT, UCUM, WHO

NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
FLAGS = ("severe", "chronic", "at-rest", "weakness", "sensory-loss", "wasting")
"""The red-flag subjects of ``cards.yaml`` (one per rule in rules/red-flags/)."""
SHAPES = (("Observation", "SCT"), ("Observation", "ICD"), ("Condition", "SCT"),
          ("Condition", "ICD"), ("Observation", "WHO"), ("Condition", "WHO"))
SETTINGS = (("R4", False), ("R4", True), ("R5", False), ("R5", True))
"""(FHIR version, with unrelated resources around the flags)."""
SYSTEMS = {"SCT": SCT, "ICD": ICD, "WHO": WHO}


def _valueset_codes(valueset: str) -> dict[str, list[str]]:
    """The SNOMED CT, ICD-10-CM and WHO ICD-10 codes a value set lists (rulesets/terminology/);
    for WHO, a child of each is-a class too (M62.56, WHO's optional site character)."""
    path = rulesets_dir() / "terminology" / f"valueset-{valueset}.json"
    compose = json.loads(path.read_text(encoding="utf-8"))["compose"]["include"]
    codes = {name: [c["code"] for part in compose if part["system"] == system
                    for c in part.get("concept", [])] for name, system in SYSTEMS.items()}
    codes["WHO"] += [f"{f['value']}6" for part in compose if part["system"] == WHO
                     for f in part.get("filter", [])]
    return codes


SIGN_CODES = {"weakness": _valueset_codes("muscle-weakness"),
              "sensory-loss": _valueset_codes("sensory-loss"),
              "wasting": _valueset_codes("muscle-wasting")}
"""Every listed code of each sign's value set is used, rotated across the runs."""
TWITCHING = {"SCT": (SCT, "82470000"), "ICD": (ICD, "R25.3"), "WHO": (WHO, "R25.3")}
BROADER = {(WHO, "M62.8")}
"""Sign codes broader than their concept that count for it: the card says so."""
SEVERE = {"coding": [{"system": SCT, "code": "24484000", "display": "Severe"}]}
AT_REST = {"coding": [{"system": OURS, "code": "twitching-at-rest"}]}
PATIENT = "Patient/p1"
COMBINATIONS = [c for n in range(1, 7) for c in itertools.combinations(FLAGS, n)]


def _date(days: float) -> str:
    return (NOW - dt.timedelta(days=days)).isoformat().replace("+00:00", "Z")


def _observation(rid: str, coding: tuple[str, str], days: float, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": coding[0], "code": coding[1]}]},
            "subject": {"reference": PATIENT}, "effectiveDateTime": _date(days), **extra}


PRESENT: tuple[dict[str, Any], ...] = (
    {}, {"valueBoolean": True},
    {"valueCodeableConcept": {"coding": [{"system": SCT, "code": "373066001"}]}})
"""The ways an Observation says a finding is present: no value, true, SNOMED *Yes*."""
CURRENT = ("active", "recurrence", "relapse")
"""The clinical statuses that make a Condition current."""


def _condition(rid: str, coding: tuple[str, str], status: str = "active",
               **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": rid,
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": status}]},
            "code": {"coding": [{"system": coding[0], "code": coding[1]}]},
            "subject": {"reference": PATIENT}, **extra}


Shape = tuple[str, str]
Carrier = Callable[[str, Shape, float, int], list[dict[str, Any]]]


def _severe(rid: str, shape: Shape, days: float, pick: int) -> list[dict[str, Any]]:
    kind, system = shape
    if kind == "Condition":
        return [_condition(rid, TWITCHING[system], CURRENT[pick % 3], severity=SEVERE,
                           onsetDateTime=_date(days))]
    if system == "SCT":  # severity as the value, or as a Severity component
        return [_observation(rid, TWITCHING[system], days, valueCodeableConcept=SEVERE)]
    return [_observation(rid, TWITCHING[system], days, component=[{
        "code": {"coding": [{"system": SCT, "code": "246112005"}]},
        "valueCodeableConcept": SEVERE}])]


def _chronic(rid: str, shape: Shape, days: float, pick: int) -> list[dict[str, Any]]:
    """The same chart in every shape (an onset a year ago and a record two days ago): the
    closest shape chronic allows; the code system follows the shape."""
    coding = TWITCHING[shape[1]]
    return [_condition(rid, coding, onsetDateTime=_date(365)),
            _observation(f"{rid}-0", coding, 2)]


def _at_rest(rid: str, shape: Shape, days: float, pick: int) -> list[dict[str, Any]]:
    kind, system = shape
    if kind == "Condition":  # only our code says "at rest": the closest shape
        return [_condition(rid, (OURS, "twitching-at-rest"), CURRENT[pick % 3],
                           onsetDateTime=_date(days))]
    if system == "SCT":  # the context code as the Observation's code
        return [_observation(rid, (OURS, "twitching-at-rest"), days, **PRESENT[pick % 3])]
    return [_observation(rid, TWITCHING[system], days, component=[{  # as a qualifier
        "code": {"coding": [{"system": SCT, "code": "408729009"}]},
        "valueCodeableConcept": AT_REST}])]


def _sign(flag: str) -> Carrier:
    def carry(rid: str, shape: Shape, days: float, pick: int) -> list[dict[str, Any]]:
        kind, system = shape
        codes = SIGN_CODES[flag][system]
        coding = (SYSTEMS[system], codes[pick % len(codes)])
        if kind == "Condition":
            return [_condition(rid, coding, CURRENT[pick % 3], recordedDate=_date(days))]
        return [_observation(rid, coding, days, **PRESENT[pick % 3])]
    return carry


CARRIERS: dict[str, Carrier] = {"severe": _severe, "chronic": _chronic, "at-rest": _at_rest,
                                "weakness": _sign("weakness"),
                                "sensory-loss": _sign("sensory-loss"),
                                "wasting": _sign("wasting")}


def _unrelated(version: str) -> list[dict[str, Any]]:
    """Vitals, other labs, an unrelated condition and medication: never cited by a red flag.
    The medication is written in the version's shape (an R5 one makes the input R5)."""
    def quantity(value: float, unit: str) -> dict[str, Any]:
        return {"value": value, "unit": unit, "system": UCUM, "code": unit}

    metformin = {"coding": [{"system": ATC, "code": "A10BA02"}]}
    medication: dict[str, Any] = {
        "resourceType": "MedicationStatement", "id": "k-15", "subject": {"reference": PATIENT}}
    if version == "R5":
        medication |= {"status": "recorded", "medication": {"concept": metformin}}
    else:
        medication |= {"status": "active", "medicationCodeableConcept": metformin}
    return [
        _observation("k-10", (LOINC, "8867-4"), 1, valueQuantity=quantity(72, "/min")),
        _observation("k-11", (LOINC, "85354-9"), 1, component=[
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
             "valueQuantity": quantity(128, "mm[Hg]")},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
             "valueQuantity": quantity(82, "mm[Hg]")}]),
        _observation("k-12", (LOINC, "2345-7"), 3, valueQuantity=quantity(95, "mg/dL")),
        _observation("k-13", (LOINC, "2823-3"), 3, valueQuantity=quantity(4.2, "mmol/L")),
        _condition("k-14", (SCT, "38341003"), onsetDateTime="2019-05-01"),
        medication,
    ]


@dataclass(frozen=True)
class Chart:
    resources: list[dict[str, Any]]
    carriers: dict[str, list[str]]
    """Flag -> references of the resources that carry it."""
    unrelated: list[str]
    version: str
    broader: bool = False
    """A flag is carried by a broader WHO code (the card must say so)."""


def _reference(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def build_chart(shapes: dict[str, Shape], version: str, noisy: bool,
                days: dict[str, float] | None = None, pick: int = 0) -> Chart:
    """A chart with each flag of ``shapes`` in its shape, plus plain twitching yesterday;
    ``pick`` chooses which code of a sign's value set is used, how an Observation says
    "present" and which current status a Condition has."""
    base = _observation("k", TWITCHING[next(iter(shapes.values()))[1]], 1)
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "p1"}, base]
    carriers = {}
    for index, (flag, shape) in enumerate(shapes.items(), start=1):
        carried = CARRIERS[flag](f"k-{index}", shape, (days or {}).get(flag, 1 + index % 5),
                                 pick)
        resources += carried
        carriers[flag] = [_reference(r) for r in carried]
    unrelated = _unrelated(version) if noisy else []
    broader = any((c.get("system"), c.get("code")) in BROADER for r in resources
                  for c in r.get("code", {}).get("coding", []))
    return Chart(resources + unrelated, carriers, [_reference(r) for r in unrelated], version,
                 broader)


def _subject_texts(knowledge: Knowledge) -> dict[str, str]:
    subjects = knowledge.cards.kinds["red-flag"].subjects
    return {flag: subjects[flag].en for flag in FLAGS}


MOTOR_FLAGS = frozenset({"weakness", "wasting"})
"""The red flags that make the red-flag card critical (README: Card plan)."""


def check_red_flags(chart: Chart, combination: tuple[str, ...]) -> None:
    """Exactly one red-flag card naming every flag, citing every carrier, critical with a
    motor flag and a warning without."""
    result = twitch_cds.evaluate(chart.resources, now=NOW,
                                 fhir_version="R5" if chart.version == "R5" and not
                                 chart.unrelated else None)
    red = [c for c in result.cards if c.kind == "red-flag"]
    context = f"{combination} {chart.version} carriers={chart.carriers}"
    assert len(red) == 1, f"{context}: {len(red)} red-flag cards"
    card = red[0]
    # the card plan's indicator policy: a motor red flag (weakness, muscle wasting) makes the
    # card critical; the others alone (severe, chronic, at rest, sensory loss) a warning
    expected = "critical" if set(combination) & MOTOR_FLAGS else "warning"
    assert card.indicator == expected, f"{context}: {card.indicator}"
    texts = _subject_texts(default_knowledge())
    for flag in FLAGS:
        named = texts[flag] in card.summary
        assert named == (flag in combination), f"{context}: {flag} in {card.summary!r}"
    cited = result.evidence[str(card.uuid)]
    for flag, references in chart.carriers.items():
        missing = [r for r in references if r not in cited]
        assert not missing, f"{context}: {flag} carried by {missing}, not cited: {cited}"
    assert not set(chart.unrelated) & set(cited), f"{context}: cites unrelated {cited}"
    said = "coded with a broader WHO code" in (card.detail or "")
    assert said == chart.broader, f"{context}: broader code said {said}"
    if set(combination) & set(SIGN_CODES):  # weakness etc. are red flags *with* twitching
        assert "Observation/k" in cited, f"{context}: the twitching is not cited: {cited}"
    carried = {r for references in chart.carriers.values() for r in references}
    unused = [i for i in result.issues if i.resource in carried
              and i.action in ("ignored", "skipped")]
    assert not unused, f"{context}: a carrier was not used: {unused}"


def test_subject_texts_do_not_contain_each_other(knowledge: Knowledge) -> None:
    """The summary check reads flag names as substrings: none may contain another."""
    texts = _subject_texts(knowledge)
    assert all(a == b or texts[a] not in texts[b] for a in FLAGS for b in FLAGS), texts
    assert len(COMBINATIONS) == 63


@pytest.mark.parametrize("combination", COMBINATIONS, ids=["+".join(c) for c in COMBINATIONS])
def test_every_combination_in_every_shape(combination: tuple[str, ...]) -> None:
    offset = COMBINATIONS.index(combination)
    for number, shape in enumerate(SHAPES):
        version, noisy = SETTINGS[(number + offset) % len(SETTINGS)]
        chart = build_chart({flag: shape for flag in combination}, version, noisy,
                            pick=offset + number)
        check_red_flags(chart, combination)


def test_the_unrelated_r5_medication_makes_the_chart_r5() -> None:
    """The R5 runs with surroundings rely on the reader telling R5 from the shape of the
    unrelated MedicationStatement (the bare ones force R5 with ``fhir_version``)."""
    from twitch_cds.fhir_in.reader import read_input
    from twitch_cds.fhir_in.validate import preferred_version

    for version in ("R4", "R5"):
        chart = build_chart({flag: SHAPES[0] for flag in FLAGS}, version, True)
        expected = "R5" if version == "R5" else "R4B"
        assert preferred_version(read_input(chart.resources).resources) == expected


def test_every_sign_code_of_the_value_sets_is_used() -> None:
    for codes in SIGN_CODES.values():
        assert codes["SCT"] and codes["ICD"] and codes["WHO"], codes
        for system, listed in codes.items():
            used = {listed[(offset + n) % len(listed)] for offset in range(len(COMBINATIONS))
                    for n in range(len(SHAPES))}
            assert used == set(listed), system


def test_the_rotation_puts_every_shape_in_every_setting() -> None:
    seen = {(shape, SETTINGS[(n + offset) % 4]) for offset in range(len(COMBINATIONS))
            for n, shape in enumerate(SHAPES)}
    assert len(seen) == len(SHAPES) * len(SETTINGS) == 24


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_shapes_per_flag(data: st.DataObject) -> None:
    combination = tuple(f for f in FLAGS if data.draw(st.booleans(), label=f"has {f}"))
    if not combination:
        combination = (data.draw(st.sampled_from(FLAGS), label="the one flag"),)
    shapes = {f: data.draw(st.sampled_from(SHAPES), label=f"{f} shape") for f in combination}
    days = {f: data.draw(st.floats(1, 5), label=f"{f} days ago") for f in combination}
    version, noisy = data.draw(st.sampled_from(SETTINGS), label="setting")
    pick = data.draw(st.integers(0, 9), label="code of each sign's value set")
    check_red_flags(build_chart(shapes, version, noisy, days, pick), combination)
