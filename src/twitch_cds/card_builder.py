"""Conclusions -> CDS Hooks cards, with every text taken from ``rulesets/cards.yaml`` and the
rule files, and the evidence behind each card named in it."""

from __future__ import annotations

import hashlib
import re
import string
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from twitch_cds.cds_hooks import INDICATOR_ORDER, Card, Coding, Link, Source
from twitch_cds.engine import Conclusion
from twitch_cds.facts import Evidence
from twitch_cds.knowledge.bundle import URGENCY_RANK, Knowledge
from twitch_cds.knowledge.cardtexts import CardKind, CardPlan, Lang, SuggestionTexts, Text
from twitch_cds.knowledge.orders import LabTest, Orders, Panel, as_r5
from twitch_cds.knowledge.rules import Maintenance, RuleFile
from twitch_cds.provenance import Provenance

Indicator = Literal["info", "warning", "critical"]

CARD_NAMESPACE = uuid.UUID("5b0c3f4e-6f1e-4c51-9d43-1f6b1c2a7e10")
"""uuid5 namespace: a card's uuid derives from patient, rules, versions and evidence."""


def card_uuid(name: str) -> str:
    """``str(uuid.uuid5(CARD_NAMESPACE, name))``, without the import ``uuid5`` does on every
    call (measured as a sixth of the card builder's time) and written from the SHA-1's hex
    digits: the version digit is 5, the variant's the digest's two low bits after ``10``."""
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_NAMESPACE_BYTES = CARD_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}
"""A hex digit with its two high bits set to the RFC 4122 variant (``10``)."""
SUMMARY_LIMIT = 139
EXTENSION_KEY = "twitch-cds"
"""The card ``extension`` key under which the rules behind the card are named."""


_DECIMAL_POINT = re.compile(r"(?<![\w.,])(\d+)\.(\d+)(?![\w.])")
"""A decimal number's point (``3.1``, not a date ``2026-11-18``, a code ``G12.21`` or a
version ``1.0.0``)."""


def localise_number_text(text: str, lang: Lang) -> str:
    """Decimal numbers in ``lang``'s way: ``3.1`` stays in English, ``3,1`` in Indonesian.

    Applied to evidence lines, whose numbers the reader wrote with a point. A record's own
    words (a code display such as "Fasciculation", a drug's name) stay as sent; only a decimal
    point inside them becomes a comma too, which reads as the same number."""
    return _DECIMAL_POINT.sub(r"\1,\2", text) if lang == "id" and "." in text else text


class _FactFormatter(string.Formatter):
    """``{bind.field}`` placeholders in rule messages, read from the facts a rule fired on;
    numbers are written the way the card's language writes them (``3,1`` in Indonesian)."""

    def __init__(self, lang: Lang):
        self.lang: Lang = lang

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        bind, _, name = field_name.partition(".")
        value = kwargs.get(bind, {}).get(name)  # {subject} reads kwargs["subject"][""]
        return ("?" if value is None else value), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if value == "?" or isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        text = format(value, format_spec)
        return text.replace(".", ",") if self.lang == "id" else text


def render_message(template: str, lang: Lang, facts: Mapping[str, Any],
                   subject: str = "") -> str:
    """A rule's message in ``lang`` with its placeholders filled from the facts it fired on;
    a message that opens with a placeholder ("{subject} may explain ...") opens with a
    capital letter."""
    if "{" not in template:
        return template
    return MessageTemplate(template).render(lang, facts, subject)


_FORMATTERS: dict[Lang, _FactFormatter] = {"en": _FactFormatter("en"),
                                           "id": _FactFormatter("id")}


class MessageTemplate:
    """A rule message parsed once (when the ruleset's card set-up is made) into its words
    and ``{bind.field:spec}`` placeholders, so that a card only fills them in; the same
    text ``_FactFormatter`` writes. A placeholder with a conversion (``!r``) or a nested
    spec is left to ``_FactFormatter`` itself."""

    __slots__ = ("template", "parts", "capitalise")

    def __init__(self, template: str):
        self.template = template
        self.capitalise = template.startswith("{")
        parts: list[tuple[str, str | None, str, str]] = []
        plain = True
        for literal, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                parts.append((literal, None, "", ""))
            elif conversion or not name or name[0].isdigit() or "{" in (spec or ""):
                plain = False  # the formatter's own rules
                break
            else:
                bind, _, field = name.partition(".")
                parts.append((literal, bind, field, spec or ""))
        self.parts = tuple(parts) if plain else None

    def render(self, lang: Lang, facts: Mapping[str, Any], subject: str = "") -> str:
        """The message with the facts' values; numbers in ``lang``'s way, ``?`` for a value
        the facts do not hold."""
        if self.parts is None or "subject" in facts:
            text = _FORMATTERS[lang].format(self.template, **facts, subject={"": subject})
        else:
            out = []
            for literal, bind, field, spec in self.parts:
                out.append(literal)
                if bind is None:
                    continue
                value = (subject if field == "" else None) if bind == "subject" \
                    else facts.get(bind, {}).get(field)
                if value is None or isinstance(value, bool) or \
                        not isinstance(value, int | float):
                    out.append("?" if value is None else str(value))
                elif lang == "id":
                    out.append(format(value, spec).replace(".", ","))
                else:
                    out.append(format(value, spec))
            text = "".join(out)
        return text[:1].upper() + text[1:] if self.capitalise else text


def join_words(items: list[str], word: str, lang: Lang) -> str:
    """``a, b and c`` (Indonesian: ``a, b, dan c``, as PUEBI writes a list of three)."""
    if len(items) < 2:
        return "".join(items)
    comma = "," if lang == "id" and len(items) > 2 else ""
    return f"{', '.join(items[:-1])}{comma} {word} {items[-1]}"


def parts_summary(plan: CardPlan, present: set[str], lang: Lang, and_: Text) -> str | None:
    """A card gathering distinct ideas (several benign causes) names them all, with what each
    calls for ("Likely benign (caffeine, diet): advise less caffeine and a balanced diet"),
    when two or more are on it; None otherwise (the lead kind's summary stands)."""
    if plan.summary is None:
        return None
    causes, actions = plan.part_labels(present, lang)
    if len(causes) < 2:
        return None
    return plan.summary(lang).format(causes=", ".join(causes),
                                     actions=join_words(actions, and_(lang), lang))


def summary_text(texts: CardKind, subjects: list[str], lang: Lang, orders: str = "",
                 reasons: str = "") -> str:
    """A card's summary listing its subjects (in cards.yaml order), and the tests it orders
    when it orders any (``orders``, short names; ``reasons``, why they are due). When the list
    would not fit in the 140 characters CDS Hooks allows, the last subjects are counted
    (``+2``) instead of named; cards.yaml is written so that this never happens (a test
    enumerates every combination)."""
    return _KindText.of(texts, lang).summary_of(subjects, orders, reasons)


@dataclass(frozen=True, slots=True)
class _KindText:
    """A conclusion kind's texts in one language (``CardKind``), as a card reads them."""

    summary: str
    summary_orders: str | None
    summary_due: str | None
    order_subjects: frozenset[str]
    labels: dict[str, str]
    """Each subject's label."""
    order: dict[str, int]
    """Each subject's place in cards.yaml (summaries list subjects in this order)."""
    subjects_of: str | None
    suggestions: tuple[str, ...]

    @classmethod
    def of(cls, texts: CardKind, lang: Lang) -> _KindText:
        return cls(
            summary=texts.summary(lang),
            summary_orders=None if texts.summary_orders is None else texts.summary_orders(lang),
            summary_due=None if texts.summary_due is None else texts.summary_due(lang),
            order_subjects=frozenset(texts.order_subjects),
            labels={s: text(lang) for s, text in texts.subjects.items()},
            order={s: i for i, s in enumerate(texts.subjects)},
            subjects_of=texts.summary_subjects_of, suggestions=tuple(texts.suggestions))

    def summary_of(self, subjects: list[str], orders: str = "", reasons: str = "") -> str:
        """``summary_text`` with this kind's texts."""
        if orders and self.summary_orders is not None:
            subjects = [s for s in subjects if s not in self.order_subjects]
            if not subjects and self.summary_due is not None:
                return self.summary_due.format(reasons=reasons, orders=orders)[:SUMMARY_LIMIT]
            template = self.summary_orders.replace("{orders}", orders)
        else:
            template = self.summary
        labels = [self.labels.get(s, s) for s in subjects]
        for shown in range(len(labels), 0, -1):
            listed = ", ".join(labels[:shown])
            if shown < len(labels):
                listed += f" +{len(labels) - shown}"
            summary = template.format(subjects=listed)
            if len(summary) <= SUMMARY_LIMIT:
                return summary
        return template.format(subjects=f"{len(labels)}")[:SUMMARY_LIMIT]


def reference_text(reference: str, date: str) -> str:
    """A knowledge source as cited: its reference, with its date unless the reference
    already gives it (``JAMA. 1990;263:704``)."""
    return reference if date in reference else f"{reference} ({date})"


def _distinct(quotes: Iterable[str]) -> list[str]:
    """The article passages to quote, each once: a passage that another one on the same
    card contains (one rule cites a sentence, another the paragraph around it) is left out."""
    texts = list(quotes)
    if len(texts) < 2:
        return texts
    return [t for t in texts if not any(t != other and t in other for other in texts)]


def _markers(numbers: Iterable[int]) -> str:
    """``[1, 3–5]``: evidence markers (distinct numbers), runs of consecutive numbers
    written as a range."""
    ordered = sorted(numbers)
    if not ordered:
        return "[]"
    if isinstance(numbers, set | frozenset) and ordered[-1] - ordered[0] == len(ordered) - 1:
        return f"[{_run(ordered[0], ordered[-1])}]"  # one run (distinct numbers)
    parts = []
    start = end = ordered[0]
    for n in ordered[1:]:
        if n == end + 1:
            end = n
            continue
        parts.append(_run(start, end))
        start = end = n
    parts.append(_run(start, end))
    return f"[{', '.join(parts)}]"


def _span_markers(spans: Iterable[tuple[int, int] | None]) -> str:
    """``_markers`` of every number in these runs (``(first, last)``; an empty run has
    ``last < first``), written without listing them one by one; ``""`` when there are none."""
    ordered = sorted([span for span in spans if span is not None and span[1] >= span[0]])
    if len(ordered) < 2:
        return f"[{_run(*ordered[0])}]" if ordered else ""
    parts = []
    start, end = ordered[0]
    for first, last in ordered[1:]:
        if first <= end + 1:  # overlapping or next to each other: one run
            end = max(end, last)
            continue
        parts.append(_run(start, end))
        start, end = first, last
    parts.append(_run(start, end))
    return f"[{', '.join(parts)}]"


def _run(start: int, end: int) -> str:
    """One run of consecutive markers: ``3``, ``3, 4`` or ``3–5``."""
    return f"{start}" if start == end else f"{start}, {end}" if end == start + 1 \
        else f"{start}–{end}"


def _rule_entry(rule_id: str, version: str, maintenance: Maintenance) -> dict[str, str]:
    """A rule in the card's extension: id, version and its clinical review state (a
    ``production`` rule has an approving review of its content; see knowledge/reviews.py)."""
    entry = {"id": rule_id, "version": version, "validation": maintenance.validation}
    if maintenance.validation == "production" and maintenance.reviewed is not None:
        entry["reviewed"] = maintenance.reviewed.isoformat()
    return entry


@dataclass(frozen=True)
class BuiltCard:
    """A card and the references of the resources behind it."""

    references: list[str]
    card: Card


Lines = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]
"""An input fact's evidence lines, (reference, text in the card's language), and their
dates."""


@dataclass(slots=True)
class _Cited:
    """A fact a rule fired on as a card lists it: the input facts behind it and their
    records, worked out once a call however many messages and cards cite it (the
    twitching records stand behind nearly every card)."""

    inputs: tuple[str, ...]
    records: tuple[str, ...]
    """The references of the records behind it, each once, in the order they are cited."""
    texts: dict[str, tuple[str, ...]]
    """Each record's lines, each once."""
    oldest: str | None
    newest: str | None
    _entries: dict[str, str] | None = None

    @property
    def entries(self) -> dict[str, str]:
        """Each record's evidence entry without its number (```Observation/k-7`: ...``),
        made when a card first lists the fact whole."""
        if self._entries is None:
            self._entries = {ref: f"`{ref}`: {'; '.join(lines)}"
                             for ref, lines in self.texts.items()}
        return self._entries

_POOLED = "\0tests-due"
"""The key, among a card's messages, of the one bullet naming every test due."""


@dataclass
class _Group:
    """The conclusions on one card (``rulesets/cards.yaml``, ``cards``): every conclusion
    kind the card gathers; the first of them present (in the card's order) leads."""

    kind: str
    """The card (``source.topic.code``)."""
    plan: CardPlan
    kinds: Mapping[str, _KindText]
    conclusions: list[Conclusion] = field(default_factory=list)
    _subjects: list[str] | None = field(default=None, init=False, repr=False)
    _present: set[str] | None = field(default=None, init=False, repr=False)
    _lead: str | None = field(default=None, init=False, repr=False)

    @property
    def lead(self) -> str:
        """The conclusion kind whose summary the card shows: the first in the card's order."""
        if self._lead is None:
            self._lead = min(self.present(), key=self.plan.kinds.index)
        return self._lead

    @property
    def texts(self) -> _KindText:
        return self.kinds[self.lead]

    def subjects(self) -> list[str]:
        """The lead kind's subjects in the order cards.yaml lists them, unknown ones last."""
        if self._subjects is None:
            texts = self.texts
            listed = texts.subjects_of or self.lead
            order = texts.order
            unique = dict.fromkeys([c.subject for c in self.conclusions if c.card == listed])
            self._subjects = sorted(unique, key=lambda s: (order.get(s, len(order)), s)) \
                if len(unique) > 1 else list(unique)
        return self._subjects

    def present(self) -> set[str]:
        """The conclusion kinds on the card (asked once the card's conclusions are all in)."""
        if self._present is None:
            self._present = {c.card for c in self.conclusions}
        return self._present

    def identity(self) -> list[str]:
        """Every kind and subject on the card (part of its uuid)."""
        return sorted({f"{c.card}:{c.subject}" for c in self.conclusions})


@dataclass(frozen=True, slots=True)
class _RuleText:
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
class _Suggested:
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
class _Orderable:
    """A test or panel as a card orders it, in one language."""

    template: dict[str, Any]
    description: str
    name: str
    code: str


@dataclass(frozen=True)
class _LangSetup:
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
    rules: dict[str, _RuleText]
    kinds: dict[str, _KindText]
    suggestions: dict[str, _Suggested]
    orderables: dict[int, _Orderable]
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


_SETUPS: dict[tuple[int, Lang], _LangSetup] = {}
_SOURCES: dict[tuple[str, Lang], dict[tuple[str, str], tuple[Link, Source]]] = {}
"""Per rule catalogue and language: (card, rule id) -> the rule's link and the card's source
when that rule leads it. Bounded by the rules, the cards, the two languages and the catalogue
bases a process is given; the models are frozen, so every card may share them."""


def _setup(knowledge: Knowledge, lang: Lang) -> _LangSetup:
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
    orderables = {id(o): _Orderable(template=o.service_request(lang),
                                    description=o.text(lang) if o.text else o.name(lang),
                                    name=o.name(lang), code=o.coding.code)
                  for o in _orderables(orders)}
    found = _SETUPS[(id(knowledge), lang)] = _LangSetup(
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
        kinds={name: _KindText.of(kind, lang) for name, kind in cards.kinds.items()},
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
               labels: Mapping[str, str]) -> _RuleText:
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
    return _RuleText(
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


def _suggested(texts: SuggestionTexts, knowledge: Knowledge, lang: Lang) -> _Suggested:
    template = description = None
    if texts.procedure is not None and texts.label is not None:
        procedure = knowledge.orders.procedures[texts.procedure]
        template = procedure.service_request(lang, texts.text, texts.priority)
        shown = texts.text or procedure.text
        description = shown(lang) if shown else texts.label(lang)
    return _Suggested(
        tests=tuple(texts.tests), also=tuple(texts.also),
        reason=texts.reason(lang) if texts.reason is not None and texts.tests else None,
        label=texts.label(lang) if texts.label is not None else None,
        template=template, description=description)


def _service_request(template: Mapping[str, Any], patient: str,
                     reasons: list[dict[str, str]], r5: bool) -> dict[str, Any]:
    """A draft ServiceRequest of its own (no dict shared with the template or another
    call): the template's, for ``patient``, with the card's records as its reasons."""
    code = template["code"]
    resource = {**template, "code": {**code, "coding": [dict(c) for c in code["coding"]]},
                "subject": {"reference": patient}}
    if reasons:
        resource["reasonReference"] = list(reasons)
    return as_r5(resource) if r5 else resource


def _merge(texts: dict[str, tuple[str, ...]], lines: Iterable[tuple[str, str]],
           entries: dict[str, str] | None = None) -> None:
    """Add evidence lines to a list of records: a new record goes last, a known one gets the
    line if it lacks it (another fact of the same record); ``entries`` follow."""
    for reference, line in lines:
        known = texts.get(reference)
        if known is None:
            texts[reference] = (line,)
        elif line not in known:
            texts[reference] = (*known, line)
        else:
            continue
        if entries is not None:
            entries[reference] = _entry(reference, texts[reference])


def _entry(reference: str, lines: tuple[str, ...]) -> str:
    """A record in a card's evidence list, without its number."""
    return f"`{reference}`: {'; '.join(lines)}"


def _fact_ids(conclusion: Conclusion) -> list[str]:
    return sorted(str(f.get("id")) for f in conclusion.facts.values())


class CardBuilder:
    """Builds the cards of one evaluation in one language.

    A card's detail is a short clinical note: one bullet per conclusion (what the rules found,
    in the clinician's voice), each ending with markers (``[1, 2]``) into one numbered
    evidence list where every resource appears once with its line; then the article's
    sentences, each once; then the dates of the data. The rules behind the card are not in
    the prose: they are in the card's ``extension``, its ``links`` (each rule's catalogue
    page) and the result's trace. The tests a card wants, whatever the reasons, are one
    bullet and one suggestion, ordered as labs order them (``rulesets/orders.yaml``).

    Whatever no chart changes is read from the ruleset's per-language set-up (``_setup``);
    a call does only the chart's part: messages, evidence, markers, uuids and orders."""

    def __init__(self, knowledge: Knowledge, lang: Lang, catalogue: str | None = None,
                 fhir_version: str = "R4B"):
        self.k = knowledge
        self.lang: Lang = lang
        self._r5 = fhir_version == "R5"
        """Suggested resources in R5's shape when the chart came in R5."""
        self._ordered: set[str] = set()
        """Tests already ordered by a card of this build (cards built in kind order)."""
        self._catalogue = (catalogue or knowledge.cards.source.catalogue).rstrip("/")
        self._kind_order = knowledge.card_kind_order
        self._rule_order = knowledge.rule_order
        setup = self._set = _setup(knowledge, lang)
        self._override_reasons = setup.override_reasons
        self._notes = setup.notes
        self._status_words = setup.status_words
        self._status = setup.status
        self._sources = _SOURCES.setdefault((self._catalogue, lang), {})
        self._lines_by_fact: dict[str, Lines] = {}
        self._cited: dict[str, _Cited] = {}

    def _evidence_text(self, item: Evidence) -> str:
        """An evidence line in the card's language: a medication record's FHIR status code
        ("(active") in words, numbers with the language's decimal mark. The rest is as the
        reader wrote it, the record's own words (its display, a drug's name) as sent."""
        text = item.text
        if self._status is not None and item.reference.startswith("Medication"):
            text = self._status.sub(lambda m: f"({self._status_words[m.group(1)]}", text,
                                    count=1)
        if self.lang == "id":
            text = localise_number_text(text, "id")
        note = self._notes.get(item.match)
        return text if note is None else text + note

    def _lines(self, fact_id: str, evidence: Mapping[str, Evidence]) -> Lines:
        """An input fact's evidence lines (reference, text) and dates: the record that
        dates it first, then its own. Rendered once a call."""
        lines = self._lines_by_fact.get(fact_id)
        if lines is None:
            item = evidence.get(fact_id)
            if item is None:
                lines = ((), ())
            elif not item.also:  # most facts: one record
                lines = (((item.reference, self._evidence_text(item)),),
                         (item.date,) if item.date else ())
            elif len(item.also) == 1:  # a finding's record and the one that dates it
                first = item.also[0]
                lines = (((first.reference, self._evidence_text(first)),
                          (item.reference, self._evidence_text(item))),
                         tuple([date for date in (first.date, item.date) if date]))
            else:
                records = (*item.also, item)
                lines = (tuple((e.reference, self._evidence_text(e)) for e in records),
                         tuple(e.date for e in records if e.date))
            self._lines_by_fact[fact_id] = lines
        return lines

    def _cite(self, fact_id: str, provenance: Provenance,
              evidence: Mapping[str, Evidence]) -> _Cited:
        """A fact a rule fired on, as cards list it (worked out once a call)."""
        found = self._cited.get(fact_id)
        if found is None:
            inputs = provenance.of(fact_id)
            texts: dict[str, tuple[str, ...]] = {}
            dates: list[str] = []
            made = self._lines_by_fact
            for input_id in inputs:
                lines, input_dates = made.get(input_id) or self._lines(input_id, evidence)
                for reference, line in lines:
                    known = texts.get(reference)
                    if known is None:
                        texts[reference] = (line,)
                    elif line not in known:
                        texts[reference] = (*known, line)  # another line of the same record
                if input_dates:
                    dates += input_dates
            found = self._cited[fact_id] = _Cited(
                inputs, tuple(texts), texts, min(dates) if dates else None,
                max(dates) if dates else None)
        return found

    def build(self, conclusions: Iterable[Conclusion], evidence: Mapping[str, Evidence],
              provenance: Provenance, patient: str | None) -> list[BuiltCard]:
        groups: dict[str, _Group] = {}
        card_of, plans, texts = self._set.cards, self.k.cards.cards, self._set.kinds
        for conclusion in self._in_rule_order(conclusions):
            card = card_of[conclusion.card]
            group = groups.get(card)
            if group is None:
                group = groups[card] = _Group(card, plans[card], texts)
            group.conclusions.append(conclusion)
        for group in groups.values():  # on a card, each kind's lines together, lead first
            place = self._set.places[group.kind]
            group.conclusions.sort(key=lambda c: place[c.card])  # noqa: B023 (sorted here)
        self._ordered = set()  # tests a card already orders: each is asked for once
        kind_order = self._kind_order
        cards = [self._card(g, evidence, provenance, patient)
                 for g in sorted(groups.values(), key=lambda g: kind_order[g.kind])]
        cards.sort(key=lambda b: (INDICATOR_ORDER[b.card.indicator],
                                  kind_order[b.card.kind or ""], b.card.summary))
        return cards

    def _in_rule_order(self, conclusions: Iterable[Conclusion]) -> list[Conclusion]:
        """Conclusions in the ruleset's order of their rules, and those of one rule in the
        order of the ids of the facts each fired on (the second key made only when a rule
        concluded more than once)."""
        order = self._rule_order
        ordered = sorted(conclusions, key=lambda c: order[c.rule_id])
        start = 0
        for end in range(1, len(ordered) + 1):  # runs of one rule: by the facts' ids
            if end == len(ordered) or ordered[end].rule_id != ordered[start].rule_id:
                if end - start > 1:
                    ordered[start:end] = sorted(ordered[start:end], key=_fact_ids)
                start = end
        return ordered

    # -- pieces --------------------------------------------------------------------------
    def _card(self, group: _Group, evidence: Mapping[str, Evidence],
              provenance: Provenance, patient: str | None) -> BuiltCard:
        setup = self._set
        labels = setup.labels
        lang = self.lang
        citations: dict[str, tuple[str, ...]] = {}
        sources: dict[str, None] = {}  # general clinical knowledge: reference (date), each once
        beyond: set[str] = set()  # messages whose knowledge is not the article's
        rules: dict[str, _RuleText] = {}  # the rules behind the card
        by_message: dict[str, dict[str, None]] = {}
        due: dict[str, None] = {}  # tests with no current result, each once whatever the reasons
        also: dict[str, None] = {}
        reasons: dict[str, None] = {}
        rule_texts, suggested, kinds = setup.rules, setup.suggestions, setup.kinds
        for conclusion in group.conclusions:
            rule = rule_texts[conclusion.rule_id]
            suggestion = suggested.get(conclusion.suggest or "")
            key: str | None = None
            if suggestion is not None:
                if suggestion.tests or suggestion.also:
                    due.update(dict.fromkeys(suggestion.tests))
                    also.update(dict.fromkeys(suggestion.also))
                    if suggestion.reason is not None:  # why the due tests are due
                        reasons[suggestion.reason] = None
                if suggestion.tests:
                    key = _POOLED
            text: str | None = None
            if key is None:
                message = rule.message
                if not isinstance(message, str):
                    subject = kinds[conclusion.card].labels.get(conclusion.subject,
                                                                conclusion.subject)
                    message = message.render(lang, conclusion.facts, subject)
                key = text = message
            inputs = by_message.get(key)
            if inputs is None:
                inputs = by_message[key] = {}
            for fact in conclusion.facts.values():
                inputs[str(fact["id"])] = None
            if rule.beyond is not None:  # never printed under the article's quotation
                if text is not None:
                    beyond.add(text)
                sources[rule.beyond] = None
            elif rule.citation is not None:
                citations.setdefault(rule.citation, rule.quote)
            rules[conclusion.rule_id] = rule
        wanted = [t for t in dict.fromkeys([*due, *also]) if t not in self._ordered]
        self._ordered.update(wanted)
        plan = self.k.orders.plan(wanted)
        if _POOLED in by_message:
            text = self._tests_due(due, reasons, plan)
            by_message = {(text if k == _POOLED else k): v for k, v in by_message.items()}
        mark = f" *({labels['beyond_article_mark']})*" if beyond else ""
        # the card's records, numbered in the order its messages first cite them, each with
        # every line of its own the card's facts give; a fact whose input facts and records
        # are all new on the card (most) adds its list as it is
        made = self._cited
        texts: dict[str, tuple[str, ...]] = {}
        entries: dict[str, str] = {}
        seen: set[str] = set()  # input facts listed
        spans: dict[str, tuple[int, int] | None] = {}  # a fact listed whole: its numbers
        cited_facts: dict[str, _Cited] = {}
        for fact_ids in by_message.values():
            for fact_id in fact_ids:
                if fact_id in cited_facts:
                    continue
                cited = cited_facts[fact_id] = made.get(fact_id) or self._cite(
                    fact_id, provenance, evidence)
                if seen.isdisjoint(cited.inputs) and texts.keys().isdisjoint(cited.records):
                    spans[fact_id] = (len(texts) + 1, len(texts) + len(cited.records))
                    texts.update(cited.texts)
                    entries.update(cited.entries)
                    seen.update(cited.inputs)
                    continue
                spans[fact_id] = None
                for input_id in cited.inputs:  # some already listed: input by input
                    if input_id not in seen:
                        seen.add(input_id)
                        _merge(texts, self._lines(input_id, evidence)[0], entries)
        numbers: dict[str, int] | None = None
        lines: list[str] = []
        marked: dict[tuple[str, ...], str] = {}  # the same records behind several messages
        for message, fact_id_set in by_message.items():
            cited_ids = tuple(fact_id_set)
            marks = marked.get(cited_ids)
            if marks is None:
                runs = [spans[fact_id] for fact_id in cited_ids]
                if None not in runs:  # every fact listed whole: its numbers are a run
                    marks = _span_markers(runs)
                else:
                    if numbers is None:
                        numbers = {reference: n for n, reference in enumerate(texts, 1)}
                    found = {numbers[r] for fact_id in cited_ids
                             for r in cited_facts[fact_id].records}
                    marks = _markers(found) if found else ""
                marked[cited_ids] = marks
            note = mark if message in beyond else ""
            lines.append(f"- {message} {marks}{note}" if marks else f"- {message}{note}")
        if entries:
            lines += ["", f"**{labels['evidence']}**", ""]
            lines += [f"{n}. {entry}" for n, entry in enumerate(entries.values(), 1)]
        if citations:  # the lines without the mark come from the article
            heading = labels["article_unmarked" if beyond else "article"]
            lines += ["", f"**{heading}**", ""]
            for text in _distinct(citations):
                lines += citations[text]
        if sources:
            if lines[-1]:
                lines.append("")
            lines += [f"**{labels['beyond_article']}**", ""]
            lines += [f"- `{source}`" for source in sources]  # quoted as published
            lines.append("")
        oldest = min((c.oldest for c in cited_facts.values() if c.oldest), default=None)
        newest = max((c.newest for c in cited_facts.values() if c.newest), default=None)
        if oldest is not None and newest is not None:
            span = oldest if oldest == newest else labels["data_range"].format(
                oldest=oldest, newest=newest)
            lines.append(f"**{labels['data_age']}**: {span}")
        in_production = all([rule.production for rule in rules.values()])
        if not in_production:  # the clinician knows the advice has not been signed off
            lines += ["", f"*{labels['unreviewed']}*"]
        while lines and not lines[-1]:
            lines.pop()
        references = list(texts)
        identity = group.identity()
        versions = sorted([rule.versioned for rule in rules.values()])
        uuid_name = "|".join([patient or "-", group.kind, ",".join(identity),
                              *versions, *sorted(references)])
        urgencies = {rule.urgency for rule in rules.values()}
        settled = self._settled(group, urgencies)
        suggestions = self._suggestions(group, settled, patient, references, plan)
        orders = join_words([short for key, _, short in setup.tests if key in wanted],
                            labels["and"], lang)
        links, source = self._source(group, rules)
        summary = self._summary(group, lang, orders, ", ".join(reasons))
        card_id = card_uuid(uuid_name)
        extension = {EXTENSION_KEY: {
            "ruleset": self.k.version,
            "rules": [dict(rules[rule_id].entry) for rule_id in sorted(rules)],
            "reviewed": in_production,
            "kinds": sorted(group.present()),
            "subjects": identity,
        }}
        return BuiltCard(references, Card.model_validate({  # one validation, suggestions in
            "uuid": card_id,
            "summary": summary,
            "detail": "\n".join(lines),
            "indicator": "info" if settled else max(urgencies, key=URGENCY_RANK.__getitem__),
            "source": source,
            "suggestions": suggestions or None,
            "selectionBehavior": "any" if suggestions else None,
            "overrideReasons": list(self._override_reasons) or None,
            "links": links,
            "extension": extension,
        }))

    def _source(self, group: _Group, rules: Mapping[str, _RuleText]) -> tuple[list[Link],
                                                                               Source]:
        """The card's links (each rule's catalogue page, in the order the rules speak) and
        its source (the label, the first rule's page, the card as topic)."""
        made = self._sources
        links = []
        for rule_id in rules:
            found = made.get((group.kind, rule_id))
            if found is None:
                link = self._link(rule_id)
                found = made[(group.kind, rule_id)] = (link, Source(
                    label=self._set.source_label, url=link.url,
                    topic=self._set.topics[group.kind]))
            links.append(found[0])
        return links, made[(group.kind, next(iter(rules)))][1]

    def _summary(self, group: _Group, lang: Lang, orders: str, reasons: str) -> str:
        """The lead kind's summary, or the card's own when it holds two or more parts."""
        if group.plan.summary is not None:
            parts = parts_summary(group.plan, group.present(), lang, self.k.cards.labels["and"])
            if parts:
                return parts
        return group.texts.summary_of(group.subjects(), orders, reasons)

    @staticmethod
    def _settled(group: _Group, urgencies: set[Indicator]) -> bool:
        """Whether the card's settling kind is on it and nothing on it is critical (an
        evaluated, long-standing problem: warnings become info, and no urgent referral)."""
        settles = group.plan.settles
        if settles is None or settles not in group.present():
            return False
        return "critical" not in urgencies

    def _tests_due(self, due: Mapping[str, None], reasons: Mapping[str, None],
                   plan: list[LabTest | Panel]) -> str:
        """The one bullet for every test a card found due: which, why, and what to order."""
        lang, labels, orderables = self.lang, self._set.labels, self._set.orderables
        names = [name for key, name, _ in self._set.tests if key in due]
        what = [orderables[id(o)].name for o in plan] or names
        return labels["tests_due"].format(
            tests=join_words(names, labels["or"], lang), reasons="; ".join(reasons),
            orders=join_words(what, labels["and"], lang))

    def _link(self, rule_id: str) -> Link:
        """A link to the rule's catalogue page (a frozen model: every card may share it)."""
        title = self.k.rules_by_id[rule_id].rule.library.name(self.lang)
        label = self.k.cards.source.link_label(self.lang).format(rule=rule_id, title=title)
        return Link(label=label, url=self.rule_page(rule_id), type="absolute")

    def rule_page(self, rule_id: str) -> str:
        """The rule's page in the rule catalogue, in the card's language."""
        return f"{self._catalogue}/{self.lang}/rules/{rule_id}.html"

    def _suggestions(self, group: _Group, settled: bool, patient: str | None,
                     references: list[str], plan: list[LabTest | Panel]) -> list[dict[str, Any]]:
        """The card's procedures (a referral), then one suggestion ordering every test it
        wants, panels first. Draft ServiceRequests need a subject: none without a patient.
        Plain data: the card validates them as ``Suggestion`` models with itself."""
        # a settled card (an evaluated problem) suggests no urgent referral: it says when to
        # refer again instead
        present = group.present()
        kinds = [] if settled else [k for k in group.plan.kinds if k in present]
        wanted = dict.fromkeys([*(s for k in kinds for s in group.kinds[k].suggestions),
                                *(c.suggest for c in group.conclusions if c.suggest)])
        if patient is None or not (wanted or plan):
            return []
        reasons = [{"reference": r} for r in references
                   if " " not in r and not r.startswith("Patient/")]
        r5, suggested = self._r5, self._set.suggestions
        out: list[dict[str, Any]] = []
        for key in wanted:
            texts = suggested[key]
            if texts.template is None:
                continue  # tests: pooled below
            out.append({"label": texts.label,
                        "uuid": card_uuid(f"{patient}|{group.kind}|{key}"),
                        "actions": [{"type": "create", "description": texts.description,
                                     "resource": _service_request(texts.template, patient,
                                                                  reasons, r5)}]})
        if plan:
            labels, orderables = self._set.labels, self._set.orderables
            orders = [orderables[id(o)] for o in plan]
            names = join_words([o.name for o in orders], labels["and"], self.lang)
            codes = ",".join(o.code for o in orders)
            out.append({"label": labels["order_label"].format(orders=names),
                        "uuid": card_uuid(f"{patient}|{group.kind}|tests|{codes}"),
                        "actions": [{"type": "create", "description": o.description,
                                     "resource": _service_request(o.template, patient,
                                                                  reasons, r5)}
                                    for o in orders]})
        return out
