"""Fluids advice only where it is safe (issue 14): for any mix of the exceptions, coded in
any of the standard systems the value sets hold, extra water or oral rehydration/electrolyte
drinks are advised only with a current normal sodium and no exception; every exception says
why on the card, and "drink to thirst" never stands beside a condition that limits fluids."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds.knowledge.bundle import default_knowledge

from .builders import ICD, NOW, RXNORM, SCT, condition, lab, med_statement, twitching

WHO = "http://hl7.org/fhir/sid/icd-10"
ADVICE = "plus oral rehydration or other electrolyte drinks"
SUGAR_FREE = "sugar-free electrolyte drinks"
THIRST = "drink to thirst"

LIMITING = ("hyponatremia", "heart-failure", "fluid-restriction", "ckd-advanced-dialysis",
            "ascites", "siadh")
"""The value sets of conditions that limit fluids (derived/fluids-limited.yaml)."""

WITHHOLDING = {"als", "spinal-muscular-atrophy", "muscular-dystrophy", "nerve-damage", "myoclonus"}
"""Known neuromuscular disease and myoclonus: reassurance withheld, no self-care card."""

WHY = {"hyponatremia": "hyponatremia on record", "heart-failure": "heart failure on record",
       "fluid-restriction": "a fluid restriction is on record",
       "ckd-advanced-dialysis": "advanced kidney disease or dialysis on record",
       "ascites": "ascites on record", "siadh": "SIADH on record"}


def _codes(valueset: str) -> list[tuple[str, str]]:
    """Every explicit code of a value set in SNOMED CT, ICD-10-CM or WHO ICD-10, but those
    that also withhold the whole self-care card (a diabetic neuropathy code is nerve damage
    too: test_reassurance.py)."""
    terminology = default_knowledge().terminology
    return [pair for pair in terminology.codes([valueset]) if pair[0] in (SCT, ICD, WHO)
            and not {m.valueset for m in terminology.lookup(*pair)} & WITHHOLDING]


def _self_care(resources: list[dict[str, Any]]) -> str:
    result = twitch_cds.evaluate(resources, now=NOW)
    return next((c.detail or "" for c in result.cards if c.kind == "self-care"), "")


@st.composite
def charts(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A chart with twitching and any mix of: the limiting conditions (each by a code drawn
    from its value set), diabetes, a diuretic, an age, and a sodium (none, low, normal or
    high)."""
    resources: list[dict[str, Any]] = [twitching()]
    present = draw(st.sets(st.sampled_from(LIMITING)))
    for i, valueset in enumerate(sorted(present)):
        system, code = draw(st.sampled_from(_codes(valueset)))
        resources.append(condition(f"c{i}", system, code))
    diabetes = draw(st.booleans())
    if diabetes:
        resources.append(condition("dm", *draw(st.sampled_from(_codes("diabetes")))))
    diuretic = draw(st.booleans())
    if diuretic:
        resources.append(med_statement("diu", [{"system": RXNORM, "code": draw(
            st.sampled_from(["4603", "5487", "2409", "9997"]))}]))
    age = draw(st.integers(min_value=20, max_value=95))
    resources.append({"resourceType": "Patient", "id": "p1", "gender": "female",
                      "birthDate": f"{2026 - age - 1}-06-01"})
    sodium = draw(st.sampled_from([None, 126.0, 140.0, 152.0]))
    if sodium is not None:
        resources.append(lab("na", "2951-2", sodium, "mmol/L", low=135, high=145))
    facts = {"limiting": present, "diabetes": diabetes, "older_on_diuretic": diuretic and age >= 65,
             "sodium": sodium}
    return resources, facts


@settings(max_examples=60, deadline=None, derandomize=True)
@given(charts())
def test_fluids_advice_only_where_it_is_safe(chart: tuple[list[dict[str, Any]],
                                                          dict[str, Any]]) -> None:
    resources, facts = chart
    detail = _self_care(resources)
    safe = (facts["sodium"] == 140.0 and not facts["limiting"]
            and not facts["older_on_diuretic"])
    assert (ADVICE in detail) == (safe and not facts["diabetes"]), detail
    assert (SUGAR_FREE in detail) == (safe and facts["diabetes"]), detail
    for valueset in facts["limiting"]:
        assert WHY[valueset] in detail, (valueset, detail)
    if facts["limiting"]:
        assert THIRST not in detail, detail
        assert "No current sodium result" not in detail, detail
    if facts["sodium"] is None and not facts["limiting"]:
        assert "No current sodium result: check sodium" in detail, detail
    if facts["older_on_diuretic"] and not facts["limiting"]:
        assert "a diuretic at 65 or older" in detail, detail
    # every line that is not the article's advice says it is not from the article
    for line in detail.splitlines():
        if line.startswith("- Do not advise") or line.startswith("- No current sodium"):
            assert line.endswith("*(not from the article: general clinical knowledge)*"), line


def test_the_fluids_cautions_never_print_the_article_sentence_beneath_them() -> None:
    detail = _self_care([twitching(), condition("hf", ICD, "I50.9"),
                         condition("hd", WHO, "Z99.2")])
    assert "Do not advise extra water" in detail
    assert "Anda harus minum minuman olahraga" not in detail  # the sports-drinks sentence
    assert "**Not from the article: general clinical knowledge, from**" in detail
    assert "**What the article says (the lines without a mark)**" in detail
