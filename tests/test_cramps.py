"""Muscle cramps (the article's "kram"): every code of the cramp value set is read as a
finding, never reported as an unclassified condition, and never stands for twitching
(the clinical cases are scenarios 345-348)."""

from __future__ import annotations

import json

import pytest

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge

from .builders import ICD, NOW, OURS, SCT, condition, fired, lab, obs, twitching

CRAMP_RULES = {"electrolyte-sweat-loss-cramps", "self-care-fluids-cramps"}


def _cramp_codes(knowledge: Knowledge) -> list[tuple[str, str]]:
    path = knowledge.directory / "terminology" / "valueset-cramp.json"
    expansion = json.loads(path.read_text(encoding="utf-8"))["expansion"]["contains"]
    codes = [(c["system"], c["code"]) for c in expansion]
    assert len(codes) >= 10
    return codes


def test_the_value_set_holds_the_article_s_cramp_codes(knowledge: Knowledge) -> None:
    codes = set(_cramp_codes(knowledge))
    assert {(SCT, "55300003"), (SCT, "449918009"), (ICD, "R25.2"),
            ("http://hl7.org/fhir/sid/icd-10", "R25.2"),
            ("http://id.who.int/icd/release/11/mms", "MB47.3")} <= codes
    assert (SCT, "82470000") not in codes  # a cramp is not a fasciculation


@pytest.mark.parametrize("as_condition", [True, False], ids=["Condition", "Observation"])
def test_every_cramp_code_is_read_and_stands_for_nothing_else(
        knowledge: Knowledge, as_condition: bool) -> None:
    for system, code in _cramp_codes(knowledge):
        record = (condition("c", system, code) if as_condition
                  else obs("c", system, code, date="2026-11-23T08:00:00Z"))
        sweat = obs("sweat", OURS, "heavy-sweating", date="2026-11-23T08:00:00Z")
        alone = twitch_cds.evaluate([record, sweat], now=NOW)
        assert not alone.issues, (code, alone.issues)  # read: no unclassified-condition
        assert not alone.cards and not CRAMP_RULES & fired(alone), code  # not twitching
        with_twitching = twitch_cds.evaluate(
            [twitching(date="2026-11-23T08:00:00Z"), record, sweat,
             lab("na", "2951-2", 140, "mmol/L", low=135, high=145, date="2026-11-23T08:00:00Z")],
            now=NOW)
        assert fired(with_twitching) >= CRAMP_RULES, code
        cards = {c.kind: c for c in with_twitching.cards}
        for kind in ("electrolyte-depletion", "self-care"):
            assert "Observation/c" in with_twitching.evidence[str(cards[kind].uuid)] or \
                "Condition/c" in with_twitching.evidence[str(cards[kind].uuid)], (code, kind)
