"""Signed clinical reviews gate production: a rule reaches ``validation: production`` only
with an approving review of its content as it stands; an edit sends it back to review; the
cards say whether the rules behind them are reviewed."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import twitch_cds
from twitch_cds import RulesetError, load_knowledge
from twitch_cds.card_builder import EXTENSION_KEY
from twitch_cds.cli import main
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.reviews import (
    diff_since_review,
    load_reviews,
    record_review,
    rule_hash,
)
from twitch_cds.knowledge.rules import RuleFile

from .builders import NOW, SCT, obs, twitching

RULE_ID = "red-flag-weakness"
RULE = Path("rules") / "red-flags" / "red-flag-weakness.yaml"
WITHHELD = Path("rules") / "red-flags" / "self-care-withheld.yaml"
"""The other rule on the red-flag card (it says self-care advice is withheld)."""
REVIEWER = "Dr A. Neurologist"
ROLE = "Consultant neurologist, Hospital X"
DAY = dt.date(2026, 12, 7)
WEAK = [twitching("tw"), obs("weak", SCT, "26544005")]
"""Twitching with muscle weakness: the red-flag card, concluded by red-flag-weakness and
self-care-withheld."""


@pytest.fixture
def rulesets(tmp_path: Path, knowledge: Knowledge) -> Path:
    copy = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, copy)
    return copy


def _edit(rulesets: Path, change: Any, rule: Path = RULE) -> None:
    path = rulesets / rule
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _promote(data: dict[str, Any], specialist: str = f"{REVIEWER}, {ROLE}",
             reviewed: dt.date = DAY) -> None:
    data["maintenance"].update(validation="production", specialist=specialist,
                               reviewed=reviewed.isoformat())


def _approve(rulesets: Path, decision: str = "approved", date: dt.date = DAY,
             rule_id: str = RULE_ID) -> Path:
    path, _ = record_review(rulesets, rule_id, reviewer=REVIEWER, role=ROLE,
                            decision=decision,  # type: ignore[arg-type]
                            comments="Read with scenarios 010 and 011.", date=date)
    return path


def test_an_approved_rule_goes_to_production_and_its_cards_say_so(rulesets: Path) -> None:
    _approve(rulesets)
    _edit(rulesets, _promote)
    knowledge = load_knowledge(rulesets)
    rule = knowledge.rules_by_id[RULE_ID].rule
    assert rule.maintenance.validation == "production"
    assert knowledge.reviews.of(rule).state == "reviewed"
    card = twitch_cds.evaluate(WEAK, now=NOW, knowledge=knowledge).cards[0]
    extension = card.to_json()["extension"][EXTENSION_KEY]
    assert card.kind == "red-flag" and extension["reviewed"] is False  # one of two rules
    assert {"id": RULE_ID, "version": rule.maintenance.version, "validation": "production",
            "reviewed": "2026-12-07"} in extension["rules"]
    # with the card's other rule approved too, the card is reviewed throughout
    _approve(rulesets, rule_id="self-care-withheld")
    _edit(rulesets, _promote, WITHHELD)
    knowledge = load_knowledge(rulesets)
    for lang in ("en", "id"):
        card = twitch_cds.evaluate(WEAK, now=NOW, lang=lang, knowledge=knowledge).cards[0]
        extension = card.to_json()["extension"][EXTENSION_KEY]
        assert extension["reviewed"] is True
        assert all(r["validation"] == "production" for r in extension["rules"])
        label = knowledge.cards.labels["unreviewed"](lang)  # type: ignore[arg-type]
        assert label not in (card.detail or "")


def test_cards_of_rules_in_testing_say_they_are_not_reviewed(knowledge: Knowledge) -> None:
    for lang in ("en", "id"):
        card = twitch_cds.evaluate(WEAK, now=NOW, lang=lang).cards[0]
        extension = card.to_json()["extension"][EXTENSION_KEY]
        assert extension["reviewed"] is False
        assert all(r["validation"] == "testing" and "reviewed" not in r
                   for r in extension["rules"])
        label = knowledge.cards.labels["unreviewed"](lang)  # type: ignore[arg-type]
        assert (card.detail or "").endswith(f"*{label}*")


def test_production_without_any_review_is_refused(rulesets: Path) -> None:
    _edit(rulesets, _promote)
    with pytest.raises(RulesetError, match="never been reviewed") as error:
        load_knowledge(rulesets)
    assert "red-flag-weakness.yaml" in str(error.value)


def test_editing_a_reviewed_rule_sends_it_back_to_review(
        rulesets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _approve(rulesets)
    _edit(rulesets, _promote)
    load_knowledge(rulesets)  # approved as it stands

    def weaken(data: dict[str, Any]) -> None:
        data["knowledge"]["message"]["en"] = "Twitching with some weakness"
    _edit(rulesets, weaken)
    with pytest.raises(RulesetError, match="edited after its last review"):
        load_knowledge(rulesets)
    assert main(["review", "--status", "--rulesets", str(rulesets)]) == 0  # still listed
    assert any(line.startswith(f"{RULE_ID} ") and "  stale  production" in line
               for line in capsys.readouterr().out.splitlines())
    rule = RuleFile.model_validate(yaml.safe_load((rulesets / RULE).read_text()))
    reviews = load_reviews(rulesets / "reviews")
    assert reviews.of(rule).state == "stale"
    diff = diff_since_review((rulesets / RULE).read_text(), reviews.of(rule).reviews[0],
                             RULE.name)
    assert any(line.startswith("+") and "some weakness" in line for line in diff)
    # back to testing, the edited rule loads (and is simply not reviewed)
    _edit(rulesets, lambda d: d["maintenance"].update(validation="testing"))
    assert load_knowledge(rulesets).rules_by_id[RULE_ID].rule.maintenance.validation == \
        "testing"


def test_promotion_slots_are_not_content(rulesets: Path, knowledge: Knowledge) -> None:
    """Promoting a reviewed rule must not invalidate its review; anything else does."""
    rule = knowledge.rules_by_id[RULE_ID].rule
    data = rule.model_dump(mode="json", by_alias=True)
    _promote(data)
    data["maintenance"]["institution"] = "Hospital X"
    assert rule_hash(RuleFile.model_validate(data)) == rule_hash(rule)
    data["maintenance"]["version"] = "9.9.9"
    assert rule_hash(RuleFile.model_validate(data)) != rule_hash(rule)


def test_a_later_request_for_changes_withdraws_production(rulesets: Path) -> None:
    _approve(rulesets)
    _approve(rulesets, "changes-requested", DAY + dt.timedelta(days=3))
    _edit(rulesets, _promote)
    with pytest.raises(RulesetError, match="requests changes"):
        load_knowledge(rulesets)


@pytest.mark.parametrize(("specialist", "reviewed", "message"), [
    ("Dr B. Someone Else", DAY, "does not name the approving reviewer"),
    (f"{REVIEWER}, {ROLE}", DAY + dt.timedelta(days=1), "differs from the approving review"),
])
def test_production_names_the_approving_review(rulesets: Path, specialist: str,
                                               reviewed: dt.date, message: str) -> None:
    _approve(rulesets)
    _edit(rulesets, lambda d: _promote(d, specialist, reviewed))
    with pytest.raises(RulesetError, match=message):
        load_knowledge(rulesets)


def test_an_altered_review_is_refused(rulesets: Path) -> None:
    path = _approve(rulesets)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["rule_file"] = data["rule_file"].replace("Twitching with muscle weakness",
                                                  "Twitching with mild weakness")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RulesetError, match="altered after it was made"):
        load_knowledge(rulesets)


def test_the_review_command_records_and_lists(rulesets: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", RULE_ID, "--reviewer", REVIEWER, "--role", ROLE,
                 "--decision", "approved", "--comment", "Fine.", "--date", "2026-12-07",
                 "--rulesets", str(rulesets)]) == 0
    out = capsys.readouterr().out
    written = rulesets / "reviews" / RULE_ID / "2026-12-07-dr-a-neurologist.yaml"
    assert str(written) in out and "validation: production" in out
    review = yaml.safe_load(written.read_text(encoding="utf-8"))
    assert review["decision"] == "approved" and review["rule"] == RULE_ID
    assert review["rule_file"] == (rulesets / RULE).read_text(encoding="utf-8")
    assert main(["review", "--status", "--rulesets", str(rulesets)]) == 0
    status = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{RULE_ID} ") and " reviewed " in line for line in status)
    assert any(" never-reviewed " in line for line in status)
    assert main(["review", RULE_ID, "--rulesets", str(rulesets)]) == 2
    assert "--reviewer" in capsys.readouterr().err
    assert main(["review", "no-such-rule", "--reviewer", REVIEWER, "--role", ROLE,
                 "--decision", "approved", "--rulesets", str(rulesets)]) == 2


def test_no_review_is_shipped_that_no_clinician_made(knowledge: Knowledge) -> None:
    """The packaged rules are honest: none is reviewed, so none is in production."""
    assert not knowledge.reviews.by_rule
    assert all(c.rule.maintenance.validation != "production" for c in knowledge.rules)


def test_a_production_rule_is_still_mutation_tested(rulesets: Path) -> None:
    """Its mutants differ from the reviewed content, so the loader would refuse them in
    production: they are tested as testing rules, never counted as invalid."""
    from twitch_cds.knowledge.mutate import run

    scenarios = Path(__file__).parent / "scenarios"
    before = run(rulesets, scenarios, rules=[RULE_ID]).counts()
    _approve(rulesets)
    _edit(rulesets, _promote)
    after = run(rulesets, scenarios, rules=[RULE_ID]).counts()
    assert after == before and after["killed"] > 0
