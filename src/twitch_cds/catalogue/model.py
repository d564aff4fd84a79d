"""What the catalogue shows, gathered from the loaded knowledge: each rule with its value
sets, parameters, neighbours, review, mutation result and scenarios.

Nothing here renders: the pages (``render.py``) read these shapes. Scenarios are run and
checked by the scenario checker the test suite uses (``knowledge/scenarios.py``), and their
cards come from the card builder, so the catalogue shows exactly what an EHR would get.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twitch_cds.cds_hooks import Card
from twitch_cds.knowledge.bundle import CompiledRule, Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.knowledge.reviews import RuleReview, diff_since_review, rule_hash
from twitch_cds.knowledge.rules import CONCEPT_FIELDS, valuesets_in
from twitch_cds.knowledge.scenarios import check_scenario, load_scenario

VERIFICATION_URL = "https://twitch-cds.github.io/fhir/StructureDefinition/verification-status"


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str
    mark: str
    """V, W or U (``terminology/README.md``)."""


@dataclass(frozen=True)
class ValueSetView:
    id: str
    title: str
    url: str
    description: str
    codes: tuple[Code, ...]
    classes: tuple[Code, ...]
    """``is-a`` filters (ICD-10-CM, ATC prefixes)."""


def _mark(element: Mapping[str, Any]) -> str:
    for extension in element.get("extension", []):
        if extension.get("url") == VERIFICATION_URL:
            return str(extension.get("valueCode", "U"))
    return "U"


def read_valuesets(terminology: Path) -> dict[str, ValueSetView]:
    """Every ValueSet in ``rulesets/terminology/``, with its codes and their marks."""
    out: dict[str, ValueSetView] = {}
    for path in sorted(terminology.glob("valueset-*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        codes: list[Code] = []
        classes: list[Code] = []
        for include in resource.get("compose", {}).get("include", []):
            system = str(include.get("system", ""))
            for concept in include.get("concept", []):
                codes.append(Code(system, str(concept["code"]), str(concept.get("display", "")),
                                  _mark(concept)))
            for rule in include.get("filter", []):
                classes.append(Code(system, str(rule.get("value", "")),
                                    f"{rule.get('property', '')} {rule.get('op', '')}",
                                    _mark(rule)))
        out[resource["id"]] = ValueSetView(resource["id"], str(resource.get("title", "")),
                                           str(resource.get("url", "")),
                                           str(resource.get("description", "")),
                                           tuple(codes), tuple(classes))
    return out


@dataclass
class ScenarioRun:
    """One scenario run in one language: its cards, and whether its checks pass."""

    name: str
    """The scenario file's stem (its id)."""
    title: str
    now: str
    cards: list[Card]
    problems: list[str]
    fired: set[str]


@dataclass
class RuleView:
    compiled: CompiledRule
    review: RuleReview
    hash: str
    valuesets: list[str]
    parameters: list[str]
    depends_on: list[str] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    mutants: list[dict[str, Any]] | None = None
    """This rule's mutants from the mutation report (None: not run)."""
    fires_in: dict[Lang, list[ScenarioRun]] = field(default_factory=dict)
    quiet_in: dict[Lang, list[ScenarioRun]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.compiled.rule.id

    @property
    def kind(self) -> str:
        """The card kind it concludes, else ``derived``."""
        conclude = self.compiled.rule.knowledge.conclude
        return conclude.card if conclude else "derived"

    def codes(self, valuesets: Mapping[str, ValueSetView]) -> list[str]:
        return sorted({c.code for name in self.valuesets if name in valuesets
                       for c in (*valuesets[name].codes, *valuesets[name].classes)})


def _parameters_of(rule: CompiledRule, known: Iterable[str]) -> list[str]:
    """Parameters the rule's patterns compare with, and those its message names."""
    text = json.dumps(rule.rule.knowledge.model_dump(mode="json", by_alias=True))
    return [name for name in known
            if f'"param": "{name}"' in text or f"params.{name}" in text]


def _derived_read(rule: CompiledRule) -> list[str]:
    knowledge = rule.rule.knowledge
    return [str(p["name"]) for p in [*knowledge.when.values(), *knowledge.unless]
            if p.get("type") == "derived" and isinstance(p.get("name"), str)]


def rule_views(knowledge: Knowledge) -> list[RuleView]:
    """Every rule with its value sets, parameters, neighbours and review state."""
    views = []
    for compiled in knowledge.rules:
        rule = compiled.rule
        patterns = [*rule.knowledge.when.values(), *rule.knowledge.unless]
        review = knowledge.reviews.of(rule)
        view = RuleView(compiled, review, rule_hash(rule),
                        valuesets_in(patterns, CONCEPT_FIELDS),
                        _parameters_of(compiled, knowledge.parameters.parameters))
        if review.latest is not None and review.state != "reviewed":
            view.diff = diff_since_review(compiled.path.read_text(encoding="utf-8"),
                                          review.latest, compiled.path.name)
        views.append(view)
    derivers: dict[str, list[str]] = {}
    for view in views:
        derive = view.compiled.rule.knowledge.derive
        if derive is not None:
            derivers.setdefault(derive.name, []).append(view.id)
    by_id = {view.id: view for view in views}
    for view in views:
        for name in _derived_read(view.compiled):
            for source in derivers.get(name, []):
                if source not in view.depends_on:
                    view.depends_on.append(source)
                    by_id[source].dependents.append(view.id)
    return views


def add_mutation(views: Iterable[RuleView], report: Mapping[str, Any]) -> None:
    """Attach each rule's mutants from a report (``mutate --json`` or ``Report.as_json``)."""
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for mutant in report.get("mutants", []):
        by_rule.setdefault(str(mutant["rule"]), []).append(mutant)
    for view in views:
        view.mutants = by_rule.get(view.id)  # None: the report did not mutate it


def add_scenarios(views: Iterable[RuleView], knowledge: Knowledge, scenario_dir: Path,
                  repo: Path, langs: Iterable[Lang]) -> int:
    """Run every scenario in each language with the scenario checker and file each run
    under the rules it fires and those it declares quiet. Returns the scenarios run."""
    paths = sorted(scenario_dir.glob("*.yaml"))
    by_id = {view.id: view for view in views}
    for lang in langs:
        for path in paths:
            scenario = load_scenario(path)
            # the catalogue page's language; the checks are those of the scenario's own
            shown = {**scenario, "lang": lang}
            result, problems = check_scenario(shown, repo, knowledge)
            if result is None:  # the evaluation itself failed: no page can show its cards
                raise ValueError(f"scenario {path.name} ({lang}): {'; '.join(problems)}")
            if scenario.get("lang", "en") != lang:
                _, problems = check_scenario(scenario, repo, knowledge)
            fired = {f.rule_id for f in result.trace.fired}
            run = ScenarioRun(path.stem, str(scenario.get("name", path.stem)),
                              result.now.isoformat(), list(result.cards), problems, fired)
            for rule_id in fired:
                if rule_id in by_id:
                    by_id[rule_id].fires_in.setdefault(lang, []).append(run)
            for rule_id in scenario["quiet"]:
                if rule_id in by_id and rule_id not in fired:
                    by_id[rule_id].quiet_in.setdefault(lang, []).append(run)
    return len(paths)
