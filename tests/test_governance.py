"""Rule files carry what a clinical governance board reviews (Arden Syntax slots), and say
honestly that no clinician has reviewed them yet."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from twitch_cds import RulesetError, load_knowledge
from twitch_cds.cli import main
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.rules import CONCEPT_FIELDS, RuleFile, Schema, valuesets_read

from .builders import changed_ruleset
from .test_cards import ENGLISH_MARKERS

RULE = Path("rules") / "red-flags" / "red-flag-weakness.yaml"


def _changed(tmp_path: Path, knowledge: Knowledge, change: Callable[[dict], None]) -> Path:
    return changed_ruleset(tmp_path, knowledge.directory, RULE, change)


def _promote(rule: dict, specialist: str = "", reviewed: str | None = None) -> None:
    rule["maintenance"].update(validation="production", specialist=specialist)
    if reviewed:
        rule["maintenance"]["reviewed"] = reviewed


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: _promote(r), "production needs a specialist"),
    (lambda r: _promote(r, "Dr A. Neurologist"), "production needs a specialist"),
    (lambda r: _promote(r, "Dr A. Neurologist", "2020-01-01"), "reviewed is before"),
    (lambda r: r["maintenance"].pop("specialist"), "specialist"),
    (lambda r: r["maintenance"].pop("institution"), "institution"),
    (lambda r: r["library"].update(keywords=[]), "keywords"),
    (lambda r: r["library"].update(links=[]), "no link to value set 'muscle-weakness'"),
    (lambda r: r["knowledge"].update(evoke=["encounter-start"]), "evoke"),
    (lambda r: r["knowledge"].pop("evoke"), "evoke"),
])
def test_governance_slots_are_checked(tmp_path: Path, knowledge: Knowledge,
                                      change: Callable[[dict], None], message: str) -> None:
    with pytest.raises(RulesetError, match=message) as error:
        load_knowledge(_changed(tmp_path, knowledge, change))
    assert "red-flag-weakness.yaml" in str(error.value)


def test_a_reviewed_rule_can_go_to_production(tmp_path: Path, knowledge: Knowledge) -> None:
    import datetime as dt

    from twitch_cds.knowledge.reviews import record_review

    rulesets = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, rulesets)
    record_review(rulesets, "red-flag-weakness", reviewer="Dr A. Neurologist",
                  role="Neurologist", decision="approved", date=dt.date(2026, 12, 7))
    promoted = load_knowledge(changed_ruleset(
        tmp_path / "promoted", rulesets, RULE,
        lambda r: _promote(r, "Dr A. Neurologist", "2026-12-07")))
    rule = next(c.rule for c in promoted.rules if c.rule.id == "red-flag-weakness")
    assert rule.maintenance.validation == "production"
    assert rule.maintenance.specialist == "Dr A. Neurologist"


def test_no_rule_pretends_to_a_review_it_has_not_had(knowledge: Knowledge) -> None:
    for compiled in knowledge.rules:
        maintenance = compiled.rule.maintenance
        assert (maintenance.specialist == "") == (maintenance.reviewed is None), compiled.rule.id
        if maintenance.validation == "production":
            assert maintenance.specialist and maintenance.reviewed, compiled.rule.id


def test_every_rule_has_a_title_in_both_languages(knowledge: Knowledge) -> None:
    """The Indonesian card's rule links and catalogue pages name a rule by its Indonesian
    title (``library.title_id``), never by its English id or title."""
    for compiled in knowledge.rules:
        library = compiled.rule.library
        assert library.title_id and library.title_id != library.title, compiled.rule.id
        assert library.name("id") == library.title_id and library.name("en") == library.title
        assert not ENGLISH_MARKERS.search(library.title_id), library.title_id


def test_every_rule_links_the_value_sets_it_reads(knowledge: Knowledge) -> None:
    urls = knowledge.terminology.urls
    for compiled in knowledge.rules:
        linked = {link.url for link in compiled.rule.library.links}
        schema_names = [n for n in _read(compiled.rule, knowledge) if n in urls]
        assert {urls[n] for n in schema_names} <= linked, compiled.rule.id


def _read(rule: RuleFile, knowledge: Knowledge) -> list[str]:
    schema = Schema({}, set(knowledge.terminology.urls), set(), set(), CONCEPT_FIELDS)
    return valuesets_read(rule, schema)


def test_only_the_draft_order_rules_are_meant_for_order_hooks(knowledge: Knowledge) -> None:
    order_rules = {c.rule.id for c in knowledge.rules
                   if {"order-select", "order-sign"} & set(c.rule.knowledge.evoke)}
    assert order_rules == {"side-effect-draft-order", "side-effect-draft-ordering-diuretic-labs"}


def test_the_catalogue_shows_each_rule_review_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    weakness = next(r for r in catalogue if r["id"] == "red-flag-weakness")
    assert weakness["validation"] == "testing"
    assert weakness["specialist"] == ""
    assert weakness["evoke"] == ["patient-view"]
    assert "red flag" in weakness["keywords"]
    assert main(["rules"]) == 0
    text = capsys.readouterr().out
    assert "review: testing, not yet clinically reviewed; hooks: patient-view" in text
