"""How long a finding has lasted (its current episode), how long a sign stays current, and
the safety of "self-care unless red flag": the reader's and the loader's side of issue 8.
The clinical cases themselves are scenarios 090-099."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import twitch_cds
from twitch_cds import RulesetError, load_knowledge
from twitch_cds.knowledge.bundle import Knowledge

from .builders import ICD, NOW, SCT, condition, fired, obs, twitching


def _duration(result: twitch_cds.EvaluationResult) -> float | None:
    """The chronic-twitching derivation's duration, or None when it did not fire."""
    chronic = [d for d in result.trace.derived if d.name == "chronic-twitching"]
    return max(float(d.values["duration_days"]) for d in chronic) if chronic else None


def _weekly(weeks: int, gap_days: int = 7, last: int = 23) -> list[dict[str, Any]]:
    """Twitching records ``gap_days`` apart, the last on 2026-11-``last``."""
    import datetime as dt

    end = dt.datetime(2026, 11, last, 8, tzinfo=dt.UTC)
    return [twitching(f"tw{i}", date=(end - dt.timedelta(days=gap_days * i)).isoformat())
            for i in range(weeks + 1)]


@pytest.mark.parametrize(("records", "days"), [
    (_weekly(6), 42.0),             # every week for six weeks: one episode
    (_weekly(1, gap_days=730), None),  # two years apart: two one-day episodes
    (_weekly(2, gap_days=42), 84.0),   # three visits six weeks apart over three months
    (_weekly(2, gap_days=31), 62.0),   # monthly follow-up: one episode
    (_weekly(2, gap_days=91), 182.0),  # exactly the follow-up interval: still one episode
    (_weekly(2, gap_days=92), None),   # a day longer: broken each time
])
def test_chronic_is_measured_on_the_current_episode(records: list[dict[str, Any]],
                                                    days: float | None) -> None:
    assert _duration(twitch_cds.evaluate(records, now=NOW)) == days


def test_the_gap_is_a_parameter() -> None:
    records = _weekly(6, gap_days=10)  # 60 days in all
    assert _duration(twitch_cds.evaluate(records, now=NOW)) == 60.0
    apart = twitch_cds.evaluate(records, now=NOW, parameters={"finding_episode_gap_days": 9})
    assert _duration(apart) is None


def test_records_95_50_and_2_days_ago_are_one_chronic_episode() -> None:
    """The issue's hidden vignette: follow-up visits weeks apart, the last one current."""
    import datetime as dt

    now = dt.datetime.fromisoformat(NOW)
    records = [twitching(f"d{days}", date=(now - dt.timedelta(days=days)).isoformat())
               for days in (95, 50, 2)]
    result = twitch_cds.evaluate(records, now=NOW)
    assert _duration(result) == 93.0
    assert "red-flag-chronic" in fired(result)
    card = next(c for c in result.cards if c.kind == "red-flag")
    assert {"Observation/d2", "Observation/d95"} <= set(result.evidence[str(card.uuid)])


@pytest.mark.parametrize(("reported", "days"), [
    # an Observation whose value is the duration the patient reports: "for 8 weeks"
    ({"valueQuantity": {"value": 8, "unit": "wk", "system": "http://unitsofmeasure.org",
                        "code": "wk"}}, 56.0),
    # the same duration as a coded component (a duration noted in a structured note)
    ({"component": [{"code": {"text": "Duration of symptoms"},
                     "valueQuantity": {"value": 3, "unit": "mo",
                                       "system": "http://unitsofmeasure.org",
                                       "code": "mo"}}]}, 91.3),
])
def test_a_duration_the_patient_reports_counts(reported: dict[str, Any], days: float) -> None:
    record = twitching("told", date="2026-11-23T09:00:00Z", **reported)
    result = twitch_cds.evaluate([record], now=NOW)
    assert _duration(result) == pytest.approx(days, abs=0.1)
    assert "red-flag-chronic" in fired(result)


def test_a_condition_onset_the_patient_gives_counts() -> None:
    """Fasciculation on the problem list since the patient says it began, recorded today."""
    fasc = condition("fasc", ICD, "R25.3", onsetDateTime="2026-08-01",
                     recordedDate="2026-11-24")
    result = twitch_cds.evaluate([fasc], now=NOW)
    assert _duration(result) == pytest.approx(115.4, abs=0.1)
    assert "red-flag-chronic" in fired(result)


def test_an_active_condition_lasts_until_now_and_links_later_records() -> None:
    fasc = condition("fasc", ICD, "R25.3", onsetDateTime="2026-09-25T09:00:00Z")
    assert _duration(twitch_cds.evaluate([fasc], now=NOW)) == 60.0
    # a resolved one is not current and does not make an episode
    resolved = condition("fasc", ICD, "R25.3", onsetDateTime="2026-01-01",
                         clinicalStatus={"coding": [{"code": "resolved"}]})
    result = twitch_cds.evaluate([resolved, twitching(date="2026-11-23T08:00:00Z")], now=NOW)
    assert _duration(result) is None


def test_an_open_period_is_ongoing_and_a_quantity_counts_back_from_the_record() -> None:
    open_period = twitching(effectivePeriod={"start": "2026-10-25T09:00:00Z"})
    del open_period["effectiveDateTime"]
    assert _duration(twitch_cds.evaluate([open_period], now=NOW)) == 30.0
    # "for 5 weeks", recorded 4 days ago: lasted 35 days, as of its own date
    weeks = twitching(date="2026-11-20T09:00:00Z", valueQuantity={
        "value": 5, "unit": "wk", "system": "http://unitsofmeasure.org", "code": "wk"})
    assert _duration(twitch_cds.evaluate([weeks], now=NOW)) == 35.0


def test_the_chronic_card_prints_the_episode_not_the_oldest_record() -> None:
    records = [twitching("ancient", date="2023-05-01T08:00:00Z"), *_weekly(6)]
    result = twitch_cds.evaluate(records, now=NOW)
    card = next(c for c in result.cards if c.kind == "red-flag")
    assert "has lasted 42 days" in (card.detail or "")
    assert "Observation/ancient" not in (card.detail or "")


@pytest.mark.parametrize(("date", "flag"), [
    ("2026-05-08T10:00:00Z", True),   # 200 days: within neuromuscular_sign_current_days
    ("2025-10-20T10:00:00Z", False),  # 400 days: past it
])
def test_neuromuscular_signs_stay_current_longer_than_symptoms(date: str, flag: bool) -> None:
    resources = [twitching(date="2026-11-23T08:00:00Z"), obs("atrophy", SCT, "88092000",
                                                             date=date)]
    result = twitch_cds.evaluate(resources, now=NOW)
    assert ("red-flag-wasting" in fired(result)) is flag
    # the same age of twitching itself is history
    old = twitch_cds.evaluate([twitching(date="2026-05-08T10:00:00Z")], now=NOW)
    assert not old.cards and any(i.code == "stale" for i in old.issues)


def test_the_sign_window_is_data(tmp_path: Path, knowledge: Knowledge) -> None:
    copy = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, copy)
    concepts = yaml.safe_load((copy / "concepts.yaml").read_text())
    concepts["current_window"]["muscle-wasting"] = "symptom_current_days"
    (copy / "concepts.yaml").write_text(yaml.safe_dump(concepts))
    assert load_knowledge(copy).concepts.window("muscle-wasting") == "symptom_current_days"
    concepts["current_window"]["muscle-wasting"] = "no_such_days"
    (copy / "concepts.yaml").write_text(yaml.safe_dump(concepts))
    with pytest.raises(RulesetError, match="no_such_days"):
        load_knowledge(copy)


def test_an_unless_on_a_fact_derived_after_the_go_fact_is_refused(
        tmp_path: Path, knowledge: Knowledge) -> None:
    """If a red flag's derivation waited for the go fact, the self-care rules' unless would
    already have been checked without it: the loader refuses such a ruleset."""
    copy = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, copy)
    path = copy / "rules" / "derived" / "chronic-twitching.yaml"
    rule = yaml.safe_load(path.read_text())
    rule["knowledge"]["unless"] = [{"type": "lab"}]
    path.write_text(yaml.safe_dump(rule, allow_unicode=True))
    with pytest.raises(RulesetError, match="chronic-twitching.*unless of its own"):
        load_knowledge(copy)


def test_a_red_flag_and_self_care_never_share_a_chart_in_either_order() -> None:
    """The red flag wins whatever order the records come in (durable's negation is
    order-dependent; the go fact makes it safe)."""
    weak = obs("w", SCT, "26544005", date="2026-11-22T08:00:00Z")
    tw = twitching(date="2026-11-23T08:00:00Z")
    for chart in ([weak, tw], [tw, weak]):
        kinds = [c.kind for c in twitch_cds.evaluate(chart, now=NOW).cards]
        assert kinds == ["red-flag"]


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_no_self_care_card_beside_a_red_flag(path: Path) -> None:
    import json

    result = twitch_cds.evaluate(json.loads(path.read_text(encoding="utf-8")), now=NOW)
    kinds = [c.kind for c in result.cards]
    assert not ("red-flag" in kinds and "self-care" in kinds), kinds
    if "red-flag" in kinds:
        card = next(c for c in result.cards if c.kind == "red-flag")
        assert (card.detail or "").count("Self-care advice withheld") == 1
