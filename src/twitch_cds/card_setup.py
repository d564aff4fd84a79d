"""What card building reads from one ruleset in one language that no chart changes (rule
texts and quotations, summaries, labels, suggestion and order templates), made once a process
so that a call only fills in what the chart gives."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from twitch_cds.card_text import KindText, MessageTemplate, reference_text
from twitch_cds.cds_hooks import Coding
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang, SuggestionTexts
from twitch_cds.knowledge.orders import LabTest, Orders, Panel
from twitch_cds.knowledge.rules import Maintenance, RuleFile

Indicator = Literal["info", "warning", "critical"]


def _rule_entry(rule_id: str, version: str, maintenance: Maintenance) -> dict[str, str]:
    """A rule in the card's extension: id, version and its clinical review state (a
    ``production`` rule has an approving review of its content; see knowledge/reviews.py)."""
    entry = {"id": rule_id, "version": version, "validation": maintenance.validation}
    if maintenance.validation == "production" and maintenance.reviewed is not None:
        entry["reviewed"] = maintenance.reviewed.isoformat()
    return entry


@dataclass(frozen=True, slots=True)
class RuleText:
    """What a card shows of one concluding rule, in one language."""

    versioned: str
    """``<rule id> <version>``, as the card's uuid names it."""
    message: str | MessageTemplate
    """The rule's message; parsed when it has placeholders (filled from the facts it
    fired on)."""
    beyond: str | None
    """The reference of the general clinical knowledge it follows, when not the article."""
    citation: str | None
    """The article passage it cites, verbatim."""
    quote: tuple[str, ...]
    """That passage's lines on the card: the quotation, the English gloss (Indonesian: the
    corrected readings), the section, a blank line."""
    entry: Mapping[str, str]
    """The rule in the card's extension (id, version, review state)."""
    production: bool
    urgency: Indicator


@dataclass(frozen=True, slots=True)
class Suggested:
    """A suggestion of cards.yaml in one language: tests pooled into the card's order, or a
    procedure with its draft ServiceRequest template."""

    tests: tuple[str, ...]
    also: tuple[str, ...]
    reason: str | None
    """Why the due tests are due (only when there are any)."""
    label: str | None
    template: dict[str, Any] | None
    """The procedure's ServiceRequest, without subject and reasons (copied per card)."""
    description: str | None


@dataclass(frozen=True, slots=True)
class Orderable:
    """A test or panel as a card orders it, in one language."""

    template: dict[str, Any]
    description: str
    name: str
    code: str


@dataclass(frozen=True)
class LangSetup:
    """Everything card building reads from one ruleset in one language that no chart
    changes (texts, labels, rule and suggestion entries, order templates), made once a
    process: a call only fills in what the chart gives."""

    knowledge: Knowledge
    """Kept so that the id the setup is filed under cannot be reused by another ruleset."""
    override_reasons: list[Coding]
    notes: dict[str, str]
    """What an evidence line adds when a record was not matched by its own code."""
    status_words: dict[str, str]
    status: re.Pattern[str] | None
    """A medication record's FHIR status code in its evidence line (``(active``)."""
    labels: dict[str, str]
    rules: dict[str, RuleText]
    kinds: dict[str, KindText]
    suggestions: dict[str, Suggested]
    orderables: dict[int, Orderable]
    """Per test or panel of orders.yaml (by identity, as ``Orders.plan`` returns them)."""
    tests: tuple[tuple[str, str, str], ...]
    """Every test in orders.yaml order: (key, name, short name)."""
    places: dict[str, dict[str, int]]
    """Per card: each of its kinds' place (the lead first)."""
    cards: dict[str, str]
    """Per conclusion kind: the card it goes on."""
    topics: dict[str, Coding]
    """Per card: its ``source.topic``."""
    source_label: str


_SETUPS: dict[tuple[int, Lang], LangSetup] = {}


def lang_setup(knowledge: Knowledge, lang: Lang) -> LangSetup:
    """The ruleset's per-language card set-up, made on first use."""
    found = _SETUPS.get((id(knowledge), lang))
    if found is not None and found.knowledge is knowledge:
        return found
    cards, orders = knowledge.cards, knowledge.orders
    system = cards.source.topic_system
    words = cards.status_words
    labels = {name: text(lang) for name, text in cards.labels.items()}
    rules = {compiled.rule.id: _rule_text(compiled.rule, knowledge, lang, labels)
             for compiled in knowledge.rules if compiled.rule.knowledge.conclude is not None}
    orderables = {id(o): Orderable(template=o.service_request(lang),
                                    description=o.text(lang) if o.text else o.name(lang),
                                    name=o.name(lang), code=o.coding.code)
                  for o in _orderables(orders)}
    found = _SETUPS[(id(knowledge), lang)] = LangSetup(
        knowledge=knowledge,
        override_reasons=[Coding(system=system, code=r.code, display=r.display(lang))
                          for r in cards.override_reasons],
        notes={"name": f" ({labels['matched_by_name']})",
               "broader": f" ({labels['matched_broader']})"},
        status_words={code: text(lang) for code, text in words.items()},
        status=re.compile(
            r"\((" + "|".join(re.escape(code) for code in words) + r")(?=[,)])")
        if words else None,
        labels=labels,
        rules=rules,
        kinds={name: KindText.of(kind, lang) for name, kind in cards.kinds.items()},
        suggestions={key: _suggested(s, knowledge, lang) for key, s in cards.suggestions.items()},
        orderables=orderables,
        tests=tuple((key, t.name(lang), t.short(lang)) for key, t in orders.tests.items()),
        places={card: {kind: i for i, kind in enumerate(plan.kinds)}
                for card, plan in cards.cards.items()},
        cards={name: kind.card for name, kind in cards.kinds.items()},
        topics={card: Coding(system=system, code=card, display=plan.display(lang))
                for card, plan in cards.cards.items()},
        source_label=cards.source.label(lang))
    return found


def _orderables(orders: Orders) -> list[LabTest | Panel]:
    return [*orders.tests.values(), *orders.panels.values()]


def _rule_text(rule: RuleFile, knowledge: Knowledge, lang: Lang,
               labels: Mapping[str, str]) -> RuleText:
    beyond = rule.library.knowledge_source
    citation = None if beyond is not None else rule.library.citation
    quote: list[str] = []
    if citation is not None:
        quote.append(f"> {citation.text}")
        if lang == "en":
            quote.append(f"> — *{citation.gloss}*")
        else:
            quote += [f"> *{labels['correction']}: {c.reading}*"
                      for c in knowledge.cards.corrections if c.text in citation.text]
        quote += [f"> ({_section(knowledge, citation.section, lang)})", ""]
    maintenance = rule.maintenance
    return RuleText(
        versioned=f"{rule.id} {maintenance.version}",
        message=MessageTemplate(message) if "{" in (message := getattr(
            rule.knowledge.message, lang)) else message,
        beyond=None if beyond is None else reference_text(beyond.reference, beyond.date),
        citation=None if citation is None else citation.text,
        quote=tuple(quote),
        entry=_rule_entry(rule.id, maintenance.version, maintenance),
        production=maintenance.validation == "production",
        urgency=rule.knowledge.urgency or "info")


def _section(knowledge: Knowledge, section: str, lang: Lang) -> str:
    """The cited section in the card's language; the article's own heading (machine
    translated, "Cara Berkedut Kurang") is quoted as a citation only."""
    known = knowledge.cards.sections.get(section)
    if known is None:
        return f"“{section}”"
    if not known.quoted:
        return known.title(lang)
    return knowledge.cards.labels["section"](lang).format(title=known.title(lang),
                                                          source=section)


def _suggested(texts: SuggestionTexts, knowledge: Knowledge, lang: Lang) -> Suggested:
    template = description = None
    if texts.procedure is not None and texts.label is not None:
        procedure = knowledge.orders.procedures[texts.procedure]
        template = procedure.service_request(lang, texts.text, texts.priority)
        shown = texts.text or procedure.text
        description = shown(lang) if shown else texts.label(lang)
    return Suggested(
        tests=tuple(texts.tests), also=tuple(texts.also),
        reason=texts.reason(lang) if texts.reason is not None and texts.tests else None,
        label=texts.label(lang) if texts.label is not None else None,
        template=template, description=description)
