"""The loader checks rulesets/ and names the file and the rule in every error."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import twitch_cds
from twitch_cds import RulesetError, load_knowledge
from twitch_cds.knowledge.bundle import Knowledge

from .builders import NOW, changed_ruleset, twitching

RULE = Path("rules") / "red-flags" / "red-flag-weakness.yaml"


def _broken(tmp_path: Path, knowledge: Knowledge, change: Callable[[dict], None],
            target: Path = RULE) -> Path:
    return changed_ruleset(tmp_path, knowledge.directory, target, change)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["knowledge"]["when"]["sign"].update(type="symptom"), "unknown fact type"),
    (lambda r: r["knowledge"]["when"]["sign"].update(concept="weakness"), "unknown value set"),
    (lambda r: r["library"].pop("citation"), "citation"),
    (lambda r: r["library"].update(knowledge_source={"kind": "article", "reference": "x" * 20,
                                                     "date": "2024"}), "knowledge_source.kind"),
    (lambda r: r["library"].update(knowledge_source={
        "kind": "general-clinical-knowledge", "reference": "A guideline, 2024"}), "date"),
    (lambda r: r["library"]["citation"].update(text=""), "citation.text"),
    (lambda r: r["maintenance"].update(id="red-flag-chronic"), "duplicate id"),
    (lambda r: r["knowledge"]["when"]["sign"].update(colour="red"), "no field 'colour'"),
    (lambda r: r["knowledge"]["conclude"].update(card="alarm"), "unknown card kind"),
    (lambda r: r["knowledge"]["message"].update(en="{nobody.value}"), "names no bound fact"),
    (lambda r: r["knowledge"]["when"]["sign"].update(duration_days={"ge": {"param": "x"}}),
     "unknown parameter"),
])
def test_bad_rules_are_refused_with_file_and_rule(tmp_path: Path, knowledge: Knowledge,
                                                  change: Callable[[dict], None],
                                                  message: str) -> None:
    with pytest.raises(RulesetError, match=message) as error:
        load_knowledge(_broken(tmp_path, knowledge, change))
    assert "red-flag-weakness.yaml" in str(error.value)


def test_a_rule_more_urgent_than_its_kind_allows_is_refused(tmp_path: Path,
                                                            knowledge: Knowledge) -> None:
    """A conclusion kind caps its rules' urgency (an estrogen line is info or a warning,
    never critical): the card plan's indicator policy cannot be bypassed by one rule."""
    copy = changed_ruleset(tmp_path, knowledge.directory,
                           Path("rules/medications/side-effect-estrogen.yaml"),
                           lambda r: r["knowledge"].update(urgency="critical"))
    with pytest.raises(RulesetError, match="above the medication-side-effect kind"):
        load_knowledge(copy)


def test_unknown_value_set_in_concepts(tmp_path: Path, knowledge: Knowledge) -> None:
    copy = _broken(tmp_path, knowledge, lambda c: c["findings"].append("gout"),
                   Path("concepts.yaml"))
    with pytest.raises(RulesetError, match="gout"):
        load_knowledge(copy)


ARTICLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "source"


def _article(source: Path) -> str:
    """The article's text; skipped when it is not beside the checkout, except in CI
    (``$CI`` set), where a missing article fails: the citation check must run there."""
    articles = sorted(source.glob("0*.txt")) if source.is_dir() else []
    if not articles:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the article must be beside the checkout, at {source}/0*.txt")
        pytest.skip("the article (../shared/source) is not beside this checkout")
    return articles[0].read_text(encoding="utf-8")


def test_every_rule_cites_the_article_verbatim(knowledge: Knowledge) -> None:
    article = _article(ARTICLE_DIR)
    assert knowledge.rules, "no rules to check"
    for compiled in knowledge.rules:
        citation = compiled.rule.library.citation
        if citation is None:  # general clinical knowledge, with its own source
            assert compiled.rule.library.knowledge_source is not None, compiled.rule.id
            continue
        for sentence in citation.text.split(". "):
            assert sentence.strip(". ") in article, compiled.rule.id
        assert citation.section in article or citation.section.startswith("Paragraf pembuka")


def test_a_missing_article_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI: the article"):
        _article(tmp_path)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _article(tmp_path)
    (tmp_path / "000_x.txt").write_text("Kedutan kaki.", encoding="utf-8")
    assert _article(tmp_path) == "Kedutan kaki."


def test_parameters_override_per_call_and_per_process() -> None:
    onset = {"effectivePeriod": {"start": "2026-11-04T00:00:00Z"},
             "effectiveDateTime": None}
    resource = {k: v for k, v in twitching(**onset).items() if v is not None}
    quiet = twitch_cds.evaluate(resource, now=NOW)
    assert "red-flag" not in [c.kind for c in quiet.cards]  # 20 days < 28
    shorter = twitch_cds.evaluate(resource, now=NOW, parameters={"chronic_twitching_days": 14})
    assert shorter.cards[0].kind == "red-flag"
    twitch_cds.set_default_parameters({"chronic_twitching_days": 14})
    try:
        assert twitch_cds.evaluate(resource, now=NOW).cards[0].kind == "red-flag"
    finally:
        twitch_cds.set_default_parameters(None)
    with pytest.raises(ValueError, match="unknown parameter"):
        twitch_cds.evaluate(resource, now=NOW, parameters={"chronic_days": 3})
    with pytest.raises(ValueError, match="must be a number"):
        twitch_cds.evaluate(resource, now=NOW, parameters={"lab_stale_days": "30"})


def test_every_parameter_says_why(knowledge: Knowledge) -> None:
    for name, parameter in knowledge.parameters.parameters.items():
        assert parameter.rationale and parameter.unit, name
