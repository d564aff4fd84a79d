"""Everything in ``rulesets/``, loaded and cross-checked once per process."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from twitch_cds.errors import RulesetError
from twitch_cds.facts import FACT_TYPES, fact_fields
from twitch_cds.knowledge.cardtexts import CardTexts
from twitch_cds.knowledge.concepts import Concepts
from twitch_cds.knowledge.files import read_yaml, rulesets_dir
from twitch_cds.knowledge.measurements import Measurements, ParamRef
from twitch_cds.knowledge.orders import Orders
from twitch_cds.knowledge.parameters import ParameterSet, load_parameters
from twitch_cds.knowledge.reads import FactReads
from twitch_cds.knowledge.reviews import REVIEWS_DIR, Reviews, check_production, load_reviews
from twitch_cds.knowledge.rules import (
    CONCEPT_FIELDS,
    SUGGEST_PLACEHOLDER,
    RuleCheckError,
    RuleFile,
    Schema,
    compile_rule,
    declare_derivation,
)
from twitch_cds.knowledge.terminology import Terminology, load_terminology
from twitch_cds.knowledge.trust import Trust

MAX_RULES = 450
"""durable-rules hangs at about 510 rules in one ruleset; stay well below it."""


@dataclass(frozen=True)
class CompiledRule:
    rule: RuleFile
    path: Path
    definition: dict[str, Any]
    """The rule in durable-rules' JSON grammar."""
    binds: tuple[str, ...]


@dataclass(frozen=True)
class Knowledge:
    directory: Path
    terminology: Terminology
    parameters: ParameterSet
    measurements: Measurements
    trust: Trust
    concepts: Concepts
    cards: CardTexts
    rules: tuple[CompiledRule, ...]
    orders: Orders
    reviews: Reviews = field(default_factory=Reviews)
    """The clinical reviews in ``rulesets/reviews/`` (a production rule has a current one)."""

    @functools.cached_property
    def rules_by_id(self) -> dict[str, CompiledRule]:
        return {compiled.rule.id: compiled for compiled in self.rules}

    @functools.cached_property
    def rule_order(self) -> dict[str, int]:
        """Each rule's place in the ruleset (cards list their reasons in this order)."""
        return {compiled.rule.id: i for i, compiled in enumerate(self.rules)}

    @functools.cached_property
    def card_kind_order(self) -> dict[str, int]:
        """Each card's place in cards.yaml (cards of one indicator come in this order)."""
        return {card: i for i, card in enumerate(self.cards.cards)}

    @functools.cached_property
    def reads(self) -> FactReads:
        """The fields the rules read, per fact type and kind (what tells facts apart)."""
        return FactReads(compiled.rule for compiled in self.rules)

    @functools.cached_property
    def version(self) -> str:
        """A digest of every rule id and version, naming this ruleset in results."""
        import hashlib

        text = "|".join(f"{c.rule.id}@{c.rule.maintenance.version}" for c in self.rules)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _model(model: Any, path: Path) -> Any:
    try:
        return model.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise RulesetError(f"{path}: {exc}") from exc


def _check_measurements(measurements: Measurements, know: dict[str, Any], path: Path) -> None:
    for name, m in {**measurements.analytes, **measurements.intakes}.items():
        if m.valueset not in know["valuesets"]:
            raise RulesetError(f"{path}: {name}: unknown value set {m.valueset!r}")
        refs = [m.default_low, m.default_high, m.plausible_low, m.plausible_high,
                m.critical_low, m.critical_high]
        refs += [f.param for f in m.units.values() if isinstance(f, ParamRef)]
        for ref in refs:
            if ref is not None and ref not in know["parameters"]:
                raise RulesetError(f"{path}: {name}: unknown parameter {ref!r}")


def _load_rules(directory: Path, schema: Schema, cards: CardTexts,
                reviews: Reviews | None = None,
                analytes: Iterable[str] = ()) -> tuple[CompiledRule, ...]:
    paths = sorted(directory.rglob("*.yaml"))
    if not paths:
        raise RulesetError(f"{directory}: no rule files")
    parsed: list[tuple[Path, RuleFile]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            rule = RuleFile.model_validate(read_yaml(path))
        except ValidationError as exc:
            raise RulesetError(f"{path}: {exc}") from exc
        if rule.id in seen:
            raise RulesetError(f"{path}: rule {rule.id}: duplicate id (also in {seen[rule.id]})")
        seen[rule.id] = path
        try:  # production only with an approving review of the rule as it stands
            check_production(rule, reviews or Reviews())
        except ValueError as exc:
            raise RulesetError(f"{path}: rule {rule.id}: {exc}") from exc
        declare_derivation(rule, schema)
        parsed.append((path, rule))
    _check_negations(parsed)
    compiled = []
    for path, rule in parsed:
        try:
            definition = compile_rule(rule, schema)
            _check_conclusion(rule, cards, analytes)
        except RuleCheckError as exc:
            raise RulesetError(f"{path}: rule {rule.id}: {exc}") from exc
        binds = tuple(next(iter(p)) for p in definition["all"] if "$not" not in next(iter(p)))
        compiled.append(CompiledRule(rule, path, definition, binds))
    if len(compiled) > MAX_RULES:
        raise RulesetError(f"{directory}: {len(compiled)} rules; the engine allows {MAX_RULES}")
    return tuple(compiled)


def _check_negations(parsed: list[tuple[Path, RuleFile]]) -> None:
    """An ``unless`` is checked when the go fact arrives, after every input fact and every
    derivation they lead to. A derived fact that a go-gated rule (one with an ``unless`` of
    its own) adds, directly or through the derived facts it needs, arrives after that check
    and would be missed: such a ruleset is refused. This is what makes "self-care unless
    red flag" safe: every red flag is derived before the go fact."""
    derivers: dict[str, list[RuleFile]] = {}
    for _, rule in parsed:
        if rule.knowledge.derive is not None:
            derivers.setdefault(rule.knowledge.derive.name, []).append(rule)

    def late(name: str, seen: set[str]) -> str | None:
        for rule in derivers.get(name, []):
            if rule.knowledge.unless:
                return rule.id
            for pattern in rule.knowledge.when.values():
                needed = pattern.get("name")
                if pattern.get("type") == "derived" and isinstance(needed, str) \
                        and needed not in seen:
                    seen.add(needed)
                    culprit = late(needed, seen)
                    if culprit is not None:
                        return culprit
        return None

    for path, rule in parsed:
        for pattern in rule.knowledge.unless:
            name = pattern.get("name")
            if pattern.get("type") != "derived" or not isinstance(name, str):
                continue
            culprit = late(name, {name})
            if culprit is not None:
                raise RulesetError(
                    f"{path}: rule {rule.id}: unless on derived {name!r}, which rule "
                    f"{culprit} adds only after the go fact (it has an unless of its own): "
                    "the negation could not see it")


URGENCY_RANK = {"info": 0, "warning": 1, "critical": 2}
"""How urgent each indicator is (a card takes the highest of its rules)."""


def _check_conclusion(rule: RuleFile, cards: CardTexts, analytes: Iterable[str]) -> None:
    conclude = rule.knowledge.conclude
    if conclude is None:
        return
    kind = cards.kinds.get(conclude.card)
    if kind is None:
        raise RuleCheckError(f"card kind {conclude.card!r} has no texts in cards.yaml")
    if "." not in conclude.subject and conclude.subject not in kind.subjects:
        raise RuleCheckError(f"subject {conclude.subject!r} has no text under {conclude.card}")
    keys = [conclude.suggest] if conclude.suggest is not None else []
    if keys and SUGGEST_PLACEHOLDER.search(keys[0]):  # one per analyte: every one exists
        keys = [SUGGEST_PLACEHOLDER.sub(analyte, keys[0]) for analyte in analytes]
    for key in keys:
        if "{" in key or key not in cards.suggestions:
            raise RuleCheckError(f"suggestion {key!r} is not in cards.yaml")
    if URGENCY_RANK[rule.knowledge.urgency or "info"] > URGENCY_RANK[kind.indicator]:
        raise RuleCheckError(
            f"urgency {rule.knowledge.urgency} is above the {conclude.card} kind's highest "
            f"indicator {kind.indicator}"
        )


def _check_suggestions(cards: CardTexts, orders: Orders) -> None:
    """Every suggestion orders what orders.yaml defines (standard codes only)."""
    for key, suggestion in cards.suggestions.items():
        if suggestion.procedure is not None and suggestion.procedure not in orders.procedures:
            raise RulesetError(f"cards.yaml: suggestions.{key}: procedure "
                               f"{suggestion.procedure!r} is not in orders.yaml")
        unknown = set(suggestion.tests) | set(suggestion.also)
        if unknown - set(orders.tests):
            raise RulesetError(f"cards.yaml: suggestions.{key}: tests "
                               f"{sorted(unknown - set(orders.tests))} are not in orders.yaml")


def load_knowledge(directory: Path | None = None) -> Knowledge:
    """Load and check every file in ``rulesets/``; errors name the file and the rule."""
    directory = directory or rulesets_dir()
    if not directory.is_dir():
        raise RulesetError(f"rulesets directory not found: {directory}")
    terminology = load_terminology(directory / "terminology")
    parameters = load_parameters(directory / "parameters.yaml")
    measurements = _model(Measurements, directory / "measurements.yaml")
    trust = _model(Trust, directory / "trust.yaml")
    cards = _model(CardTexts, directory / "cards.yaml")
    concepts = _model(Concepts, directory / "concepts.yaml")
    missing = concepts.valuesets() - set(terminology.titles)
    if missing:
        raise RulesetError(f"concepts.yaml: unknown value sets {sorted(missing)}")
    missing = {v for n in trust.non_systemic.values() for v in (n.valueset, n.systemic_valueset)
               if v} - set(
        terminology.titles)
    if missing:
        raise RulesetError(f"trust.yaml: non_systemic: unknown value sets {sorted(missing)}")
    known = {"valuesets": set(terminology.titles), "parameters": set(parameters.parameters)}
    for concept, parameter in concepts.current_window.items():
        if parameter not in known["parameters"]:
            raise RulesetError(f"concepts.yaml: current_window.{concept}: unknown parameter "
                               f"{parameter!r}")
    _check_measurements(measurements, known, directory / "measurements.yaml")
    for kind, texts in cards.kinds.items():
        for suggestion in texts.suggestions:
            if suggestion not in cards.suggestions:
                raise RulesetError(f"cards.yaml: {kind}: unknown suggestion {suggestion!r}")
    orders = _model(Orders, directory / "orders.yaml")
    _check_suggestions(cards, orders)
    schema = Schema(
        fact_fields={name: fact_fields(name) for name in FACT_TYPES}
        | {"parameters": set(parameters.parameters) | {"type", "id"}},
        valuesets=known["valuesets"],
        parameters=known["parameters"],
        card_kinds=set(cards.kinds),
        concept_fields=CONCEPT_FIELDS,
        valueset_urls=terminology.urls,
    )
    reviews = load_reviews(directory / REVIEWS_DIR)
    rules = _load_rules(directory / "rules", schema, cards, reviews,
                        list(measurements.analytes))
    return Knowledge(
        directory, terminology, parameters, measurements, trust, concepts, cards, rules,
        orders=orders, reviews=reviews,
    )


@functools.cache
def default_knowledge() -> Knowledge:
    """The packaged ruleset, loaded on first use and shared by every call in the process."""
    return load_knowledge()
