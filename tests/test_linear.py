"""A long chart costs what its resources cost: records the rules cannot tell apart are one fact.

Speed itself is measured in ``benchmarks/evaluate.py``, never asserted here; these tests pin
the mechanisms that make it linear: what the rules read, how facts group, that firings do not
grow with repeated records, and that every grouped record is still cited.
"""

from __future__ import annotations

import json
import random
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import durable_rules_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds.aggregate import aggregate
from twitch_cds.knowledge.bundle import Knowledge, load_knowledge

from .builders import (
    ICD,
    NOW,
    RXNORM,
    SCT,
    condition,
    fired,
    lab,
    med_statement,
    obs,
    parts,
    twitching,
)

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.json"))


def _day(index: int) -> str:
    return f"2026-11-{1 + index % 23:02d}T08:00:00Z"


def _chart(twitches: int, weak_obs: int = 1, weak_conditions: int = 1, low_k: int = 1,
           normal_k: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """A patient who twitches at every visit: repeated twitching, weakness and potassium."""
    rng = random.Random(seed)
    chart: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "p1"},
                                   twitching("tw-first", date="2026-10-30T08:00:00Z"),
                                   med_statement("furo", [{"system": RXNORM, "code": "4603"}])]
    chart += [twitching(f"tw-{i}", date=_day(rng.randrange(23))) for i in range(twitches)]
    chart += [obs(f"wk-{i}", SCT, "26544005", date=_day(rng.randrange(23)))
              for i in range(weak_obs)]
    chart += [condition(f"cw-{i}", ICD, "M62.81", onsetDateTime="2026-06-01")
              for i in range(weak_conditions)]
    chart += [lab(f"klow-{i}", "2823-3", 3.1, "mmol/L", low=3.5, high=5.1,
                  date=_day(rng.randrange(23))) for i in range(low_k)]
    chart += [lab(f"knorm-{i}", "2823-3", 4.2, "mmol/L", low=3.5, high=5.1,
                  date=_day(rng.randrange(23))) for i in range(normal_k)]
    return chart


def _cards(result: twitch_cds.EvaluationResult) -> list[tuple[str, str, str]]:
    return [(c.indicator, c.kind or "", c.summary) for c in result.cards]


# -- what the rules read ------------------------------------------------------------------

def test_the_fields_read_come_from_the_rule_files(knowledge: Knowledge) -> None:
    reads = knowledge.reads
    assert reads.fields("finding", "twitching") == ("concept", "duration_days",
                                                    "last_seen_days", "onset_days", "severe")
    # an evaluation after the episode began (problem-evaluated-after-onset)
    assert "age_days" in reads.fields("finding", "neuromuscular-evaluation")
    assert "age_days" in reads.fields("finding", "exercise")  # recent exercise
    assert "age_days" not in reads.fields("finding", "twitching")
    assert set(reads.fields("lab", "potassium")) >= {"value", "range_low", "interpretation"}
    # nothing downstream reads a low electrolyte's value: one fact per analyte
    assert reads.fields("derived", "low-electrolyte") == ("analyte", "name")


def test_a_new_rule_that_reads_a_new_field_splits_the_groups(tmp_path: Path,
                                                            knowledge: Knowledge) -> None:
    copy = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, copy)
    rule = (copy / "rules" / "derived" / "severe-twitching.yaml").read_text()
    rule = rule.replace("id: severe-twitching", "id: recent-twitching")
    rule = rule.replace("severe: true}", "age_days: {le: 40.0}}")
    rule = rule.replace("name: severe-twitching", "name: recent-twitching")
    (copy / "rules" / "derived" / "recent-twitching.yaml").write_text(rule)
    extended = load_knowledge(copy)
    assert "age_days" in extended.reads.fields("finding", "twitching")
    chart = _chart(twitches=12)
    before = twitch_cds.evaluate(chart, now=NOW)
    after = twitch_cds.evaluate(chart, now=NOW, knowledge=extended)
    assert after.trace.asserted > before.trace.asserted  # dates now tell records apart
    assert "recent-twitching" in fired(after)
    assert _cards(after) == _cards(before)


def test_grouping_keeps_facts_that_differ_in_a_field_read_apart(knowledge: Knowledge) -> None:
    facts = [
        {"id": "a", "type": "finding", "concept": "twitching", "severe": False, "age_days": 1.0},
        {"id": "b", "type": "finding", "concept": "twitching", "severe": False, "age_days": 9.0},
        {"id": "c", "type": "finding", "concept": "twitching", "severe": True, "age_days": 1.0},
        {"id": "d", "type": "finding", "concept": "exercise", "age_days": 1.0},
        {"id": "e", "type": "finding", "concept": "exercise", "age_days": 9.0},
    ]
    grouped = aggregate(facts, knowledge.reads)
    assert [f["id"] for f in grouped.facts] == ["a(+1)", "c", "d", "e"]
    assert grouped.members == {"a(+1)": ["a", "b"]}
    assert "age_days" not in grouped.facts[0]  # only what rules read reaches the engine


# -- firings do not grow with repeats -------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(twitches=st.integers(1, 120), weak_obs=st.integers(1, 15),
       weak_conditions=st.integers(0, 5), low_k=st.integers(1, 15), normal_k=st.integers(0, 15),
       seed=st.integers(0, 1000))
def test_firings_do_not_grow_with_repeated_records(twitches: int, weak_obs: int,
                                                   weak_conditions: int, low_k: int,
                                                   normal_k: int, seed: int) -> None:
    small = twitch_cds.evaluate(_chart(1, 1, min(weak_conditions, 1), 1, min(normal_k, 1)),
                                now=NOW)
    chart = _chart(twitches, weak_obs, weak_conditions, low_k, normal_k, seed)
    big = twitch_cds.evaluate(chart, now=NOW)
    assert len(big.trace.fired) == len(small.trace.fired)
    assert big.trace.asserted == small.trace.asserted
    assert _cards(big) == _cards(small)
    red_flag = next(c for c in big.cards if c.kind == "red-flag")
    cited = set(big.evidence[str(red_flag.uuid)])
    every_record = {f"Observation/{r['id']}" for r in chart
                    if r["id"].startswith(("tw-", "wk-"))}
    assert every_record <= cited  # every member is still evidence on the card
    assert all(f"`{ref}`" in (red_flag.detail or "") for ref in every_record)


def test_equal_derivations_are_asserted_once_and_cite_every_lab() -> None:
    chart = [twitching(), lab("k1", "2823-3", 3.1, "mmol/L", low=3.5, high=5.1),
             lab("k2", "2823-3", 3.2, "mmol/L", low=3.5, high=5.1),
             lab("k3", "2823-3", 2.9, "mmol/L")]  # below the default range: another rule
    result = twitch_cds.evaluate(chart, now=NOW)
    joins = [f for f in result.trace.fired if f.rule_id == "electrolyte-low-with-twitching"]
    assert len(joins) == 1
    card = next(c for c in result.cards if "electrolyte-depletion" in parts(c))
    assert {"Observation/k1", "Observation/k2", "Observation/k3"} <= set(
        result.evidence[str(card.uuid)])
    assert len([d for d in result.trace.derived if d.name == "low-electrolyte"]) == 3


def test_a_grouped_fact_names_its_members_in_the_trace() -> None:
    result = twitch_cds.evaluate(_chart(twitches=4), now=NOW)
    weakness = next(f for f in result.trace.fired if f.rule_id == "red-flag-weakness")
    members = weakness.facts["twitching"].members
    assert {"Observation/tw-first", "Observation/tw-0", "Observation/tw-3"} <= set(members)
    assert weakness.facts["twitching"].reference == members[0]


def test_five_thousand_relevant_resources_return_the_red_flag() -> None:
    chart = _chart(twitches=3500, weak_obs=700, weak_conditions=100, low_k=400, normal_k=300)
    assert len(chart) > 5000
    result = twitch_cds.evaluate(chart, now=NOW)
    assert "red-flag" in [c.kind for c in result.cards]
    assert result.trace.asserted < 20


# -- cards stay deterministic and clean ---------------------------------------------------

def test_the_input_order_does_not_change_any_card() -> None:
    chart = _chart(twitches=30, weak_obs=5, low_k=4, normal_k=3)
    shuffled = list(chart)
    random.Random(7).shuffle(shuffled)
    first, second = twitch_cds.evaluate(chart, now=NOW), twitch_cds.evaluate(shuffled, now=NOW)
    assert [c.to_json() for c in first.cards] == [c.to_json() for c in second.cards]


def test_no_card_repeats_a_suggestion() -> None:
    assert len(EXAMPLES) >= 12, "the bundled examples are missing: the loop would check nothing"
    carded = 0
    for path in EXAMPLES:
        result = twitch_cds.evaluate(json.loads(path.read_text()), now=NOW)
        for card in result.cards:
            uuids = [s.uuid for s in card.suggestions or ()]
            assert len(uuids) == len(set(uuids)), (path.name, card.summary)
            carded += bool(uuids)
    assert carded, "no example has a card with suggestions: nothing was checked"


# -- what the speed relies on -------------------------------------------------------------

def test_the_engine_internals_the_lean_driver_uses_are_there() -> None:
    assert version("durable-rules") == "2.0.28"  # the driver follows this version's C API
    for name in ("assert_facts", "assert_fact", "start_action_for_state",
                 "complete_and_start_action", "abandon_action", "delete_state"):
        assert callable(getattr(durable_rules_engine, name))


def test_the_validation_cache_gives_the_same_answers() -> None:
    from twitch_cds.fhir_in.validation_cache import VALIDATION_CACHE

    chart = _chart(twitches=5)
    chart.append({**lab("kbad", "2823-3", 3.0, "mmol/L"), "unknownField": 1})
    cold = twitch_cds.evaluate(chart, now=NOW)
    twitch_cds.configure_validation_cache(64)
    try:
        hits = VALIDATION_CACHE.hits
        warm = [twitch_cds.evaluate(chart, now=NOW) for _ in range(2)][-1]
        assert VALIDATION_CACHE.hits - hits >= len(chart)  # the second call: all from cache
        twitch_cds.configure_validation_cache(4)
        assert len(VALIDATION_CACHE) == 4  # bounded
        assert [c.to_json() for c in warm.cards] == [c.to_json() for c in cold.cards]
        assert warm.issues == cold.issues
        changed = [dict(r) for r in chart]
        changed[-1]["unknownField"] = 2  # a changed resource is validated again
        assert twitch_cds.evaluate(changed, now=NOW).issues == cold.issues
    finally:
        twitch_cds.configure_validation_cache(0)
    assert len(VALIDATION_CACHE) == 0


def test_card_uuids_are_rfc_4122_uuid5() -> None:
    import uuid

    from twitch_cds.card_builder import CARD_NAMESPACE, card_uuid

    for name in ("", "Patient/p1|red-flag|weakness|Observation/tw1", "Pasien/ä|kartu" * 50):
        assert card_uuid(name) == str(uuid.uuid5(CARD_NAMESPACE, name))
