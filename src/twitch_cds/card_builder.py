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

from twitch_cds.cds_hooks import INDICATOR_ORDER, Action, Card, Coding, Link, Source, Suggestion
from twitch_cds.engine import Conclusion
from twitch_cds.facts import Evidence
from twitch_cds.knowledge.bundle import URGENCY_RANK, Knowledge
from twitch_cds.knowledge.cardtexts import CardKind, CardPlan, Lang, SuggestionTexts, Text
from twitch_cds.knowledge.orders import LabTest, Panel, as_r5
from twitch_cds.knowledge.rules import Maintenance
from twitch_cds.provenance import Provenance

Indicator = Literal["info", "warning", "critical"]

CARD_NAMESPACE = uuid.UUID("5b0c3f4e-6f1e-4c51-9d43-1f6b1c2a7e10")
"""uuid5 namespace: a card's uuid derives from patient, rules, versions and evidence."""


def card_uuid(name: str) -> str:
    """``str(uuid.uuid5(CARD_NAMESPACE, name))``, without the import ``uuid5`` does on every
    call (measured as a sixth of the card builder's time)."""
    digest = bytearray(hashlib.sha1(CARD_NAMESPACE.bytes + name.encode("utf-8"),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
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
    text = _FORMATTERS[lang].format(template, **facts, subject={"": subject})
    return text[:1].upper() + text[1:] if template.startswith("{") else text


_FORMATTERS: dict[Lang, _FactFormatter] = {"en": _FactFormatter("en"),
                                           "id": _FactFormatter("id")}


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
    if orders and texts.summary_orders is not None:
        subjects = [s for s in subjects if s not in texts.order_subjects]
        if not subjects and texts.summary_due is not None:
            return texts.summary_due(lang).format(reasons=reasons, orders=orders)[
                :SUMMARY_LIMIT]
        template = texts.summary_orders(lang).replace("{orders}", orders)
    else:
        template = texts.summary(lang)
    labels = [_label(texts, s, lang) for s in subjects]
    for shown in range(len(labels), 0, -1):
        listed = ", ".join(labels[:shown])
        if shown < len(labels):
            listed += f" +{len(labels) - shown}"
        summary = template.format(subjects=listed)
        if len(summary) <= SUMMARY_LIMIT:
            return summary
    return template.format(subjects=f"{len(labels)}")[:SUMMARY_LIMIT]


def _label(texts: CardKind, subject: str, lang: Lang) -> str:
    text = texts.subjects.get(subject)
    return text(lang) if text else subject


def reference_text(reference: str, date: str) -> str:
    """A knowledge source as cited: its reference, with its date unless the reference
    already gives it (``JAMA. 1990;263:704``)."""
    return reference if date in reference else f"{reference} ({date})"


def _distinct(quotes: Iterable[str]) -> list[str]:
    """The article passages to quote, each once: a passage that another one on the same
    card contains (one rule cites a sentence, another the paragraph around it) is left out."""
    texts = list(quotes)
    return [t for t in texts if not any(t != other and t in other for other in texts)]


def _markers(numbers: Iterable[int]) -> str:
    """``[1, 3–5]``: evidence markers (distinct numbers), runs of consecutive numbers
    written as a range."""
    ordered = sorted(numbers)
    runs: list[list[int]] = []
    for n in ordered:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [f"{r[0]}" if len(r) == 1 else f"{r[0]}–{r[-1]}" if len(r) > 2
             else f"{r[0]}, {r[1]}" for r in runs]
    return f"[{', '.join(parts)}]"


def _rule_entry(rule_id: str, version: str, maintenance: Maintenance) -> dict[str, str]:
    """A rule in the card's extension: id, version and its clinical review state (a
    ``production`` rule has an approving review of its content; see knowledge/reviews.py)."""
    entry = {"id": rule_id, "version": version, "validation": maintenance.validation}
    if maintenance.validation == "production" and maintenance.reviewed is not None:
        entry["reviewed"] = maintenance.reviewed.isoformat()
    return entry


@dataclass
class _TestOrders:
    """The tests a card asks for, pooled from every conclusion that wants one: each test
    once, whatever the reasons."""

    due: dict[str, None] = field(default_factory=dict)
    """Tests with no current result (orders.yaml order is applied when listing)."""
    also: dict[str, None] = field(default_factory=dict)
    reasons: dict[str, None] = field(default_factory=dict)

    def add(self, suggestion: SuggestionTexts, lang: Lang) -> None:
        self.due.update(dict.fromkeys(suggestion.tests))
        self.also.update(dict.fromkeys(suggestion.also))
        if suggestion.reason is not None and suggestion.tests:  # why the due tests are due
            self.reasons[suggestion.reason(lang)] = None


@dataclass(frozen=True)
class BuiltCard:
    """A card and the references of the resources behind it."""

    references: list[str]
    card: Card


Lines = tuple[tuple[str, str, str | None], ...]
_LINKS: dict[tuple[str, str, str], Link] = {}
"""Rule links already made: (catalogue, language, rule id) -> link. Bounded by the rules,
the two languages and the catalogue bases a process is given."""
_POOLED = "\0tests-due"
"""The key, among a card's messages, of the one bullet naming every test due."""
"""A fact's evidence lines: (reference, text in the card's language, date)."""


@dataclass
class _Group:
    """The conclusions on one card (``rulesets/cards.yaml``, ``cards``): every conclusion
    kind the card gathers; the first of them present (in the card's order) leads."""

    kind: str
    """The card (``source.topic.code``)."""
    plan: CardPlan
    kinds: Mapping[str, CardKind]
    conclusions: list[Conclusion] = field(default_factory=list)
    _subjects: list[str] | None = field(default=None, init=False, repr=False)
    _present: set[str] | None = field(default=None, init=False, repr=False)
    _lead: str | None = field(default=None, init=False, repr=False)

    @property
    def lead(self) -> str:
        """The conclusion kind whose summary the card shows."""
        if self._lead is None:
            present = self.present()
            self._lead = next(k for k in self.plan.kinds if k in present)
        return self._lead

    @property
    def texts(self) -> CardKind:
        return self.kinds[self.lead]

    def subjects(self) -> list[str]:
        """The lead kind's subjects in the order cards.yaml lists them, unknown ones last."""
        if self._subjects is None:
            texts = self.texts
            listed = texts.summary_subjects_of or self.lead
            order = {s: i for i, s in enumerate(texts.subjects)}
            unique = dict.fromkeys(c.subject for c in self.conclusions if c.card == listed)
            self._subjects = sorted(unique, key=lambda s: (order.get(s, len(order)), s))
        return self._subjects

    def present(self) -> set[str]:
        """The conclusion kinds on the card (asked once the card's conclusions are all in)."""
        if self._present is None:
            self._present = {c.card for c in self.conclusions}
        return self._present

    def identity(self) -> list[str]:
        """Every kind and subject on the card (part of its uuid)."""
        return sorted({f"{c.card}:{c.subject}" for c in self.conclusions})


@dataclass(frozen=True)
class _LangSetup:
    """What every card builder of one ruleset and language shares, made once a process."""

    knowledge: Knowledge
    """Kept so that the id the setup is filed under cannot be reused by another ruleset."""
    override_reasons: list[Coding]
    notes: dict[str, str]
    """What an evidence line adds when a record was not matched by its own code."""
    status_words: dict[str, str]
    status: re.Pattern[str] | None
    """A medication record's FHIR status code in its evidence line (``(active``)."""


_SETUPS: dict[tuple[int, Lang], _LangSetup] = {}


def _setup(knowledge: Knowledge, lang: Lang) -> _LangSetup:
    """The ruleset's per-language card set-up, made on first use (about 12 µs a call before)."""
    found = _SETUPS.get((id(knowledge), lang))
    if found is not None and found.knowledge is knowledge:
        return found
    system = knowledge.cards.source.topic_system
    labels = knowledge.cards.labels
    words = knowledge.cards.status_words
    found = _SETUPS[(id(knowledge), lang)] = _LangSetup(
        knowledge=knowledge,
        override_reasons=[Coding(system=system, code=r.code, display=r.display(lang))
                          for r in knowledge.cards.override_reasons],
        notes={"name": f" ({labels['matched_by_name'](lang)})",
               "broader": f" ({labels['matched_broader'](lang)})"},
        status_words={code: text(lang) for code, text in words.items()},
        status=re.compile(
            r"\((" + "|".join(re.escape(code) for code in words) + r")(?=[,)])")
        if words else None)
    return found


class CardBuilder:
    """Builds the cards of one evaluation in one language.

    A card's detail is a short clinical note: one bullet per conclusion (what the rules found,
    in the clinician's voice), each ending with markers (``[1, 2]``) into one numbered
    evidence list where every resource appears once with its line; then the article's
    sentences, each once; then the dates of the data. The rules behind the card are not in
    the prose: they are in the card's ``extension``, its ``links`` (each rule's catalogue
    page) and the result's trace. The tests a card wants, whatever the reasons, are one
    bullet and one suggestion, ordered as labs order them (``rulesets/orders.yaml``)."""

    def __init__(self, knowledge: Knowledge, lang: Lang, catalogue: str | None = None,
                 fhir_version: str = "R4B"):
        self.k = knowledge
        self.lang: Lang = lang
        self._r5 = fhir_version == "R5"
        self._ordered: set[str] = set()
        """Tests already ordered by a card of this build (cards built in kind order)."""
        """Suggested resources in R5's shape when the chart came in R5."""
        self._catalogue = (catalogue or knowledge.cards.source.catalogue).rstrip("/")
        self._kind_order = knowledge.card_kind_order
        self._rule_order = knowledge.rule_order
        setup = _setup(knowledge, lang)
        self._override_reasons = setup.override_reasons
        self._notes = setup.notes
        self._status_words = setup.status_words
        self._status = setup.status
        self._lines_by_fact: dict[str, Lines] = {}

    def _evidence_text(self, item: Evidence) -> str:
        """An evidence line in the card's language: a medication record's FHIR status code
        ("(active") in words, numbers with the language's decimal mark. The rest is as the
        reader wrote it, the record's own words (its display, a drug's name) as sent."""
        text = item.text
        if self._status is not None and item.reference.startswith("Medication"):
            text = self._status.sub(lambda m: f"({self._status_words[m.group(1)]}", text,
                                    count=1)
        note = self._notes.get(item.match, "")
        return localise_number_text(text, self.lang) + note

    def _lines(self, fact_id: str, evidence: Mapping[str, Evidence]) -> Lines:
        """A fact's evidence lines (reference, text, date): the record that dates it first,
        then its own. A record behind many messages and cards is rendered once a call."""
        lines = self._lines_by_fact.get(fact_id)
        if lines is None:
            item = evidence.get(fact_id)
            lines = self._lines_by_fact[fact_id] = () if item is None else tuple(
                (e.reference, self._evidence_text(e), e.date) for e in (*item.also, item))
        return lines

    @staticmethod
    def _list(fact_lines: Lines, numbers: dict[str, int], entries: dict[str, list[str]],
              dates: set[str]) -> tuple[int, ...]:
        """Number a fact's records on the card (each record once, each of its lines once) and
        note their dates; the numbers its markers cite."""
        out = []
        for reference, text, date in fact_lines:
            number = numbers.get(reference)
            if number is None:
                number = numbers[reference] = len(numbers) + 1
                entries[reference] = [text]
            elif text not in (known := entries[reference]):
                known.append(text)  # another fact of the same record: its line too
            out.append(number)
            if date:
                dates.add(date)
        return tuple(out)

    def build(self, conclusions: Iterable[Conclusion], evidence: Mapping[str, Evidence],
              provenance: Provenance, patient: str | None) -> list[BuiltCard]:
        groups: dict[tuple[str, str], _Group] = {}
        order = self._rule_order
        def position(c: Conclusion) -> tuple[int, list[str]]:
            return order[c.rule_id], sorted(str(f.get("id")) for f in c.facts.values())

        kinds, plans = self.k.cards.kinds, self.k.cards.cards
        for conclusion in sorted(conclusions, key=position):
            card = kinds[conclusion.card].card
            group = groups.get((card, ""))
            if group is None:
                group = groups[(card, "")] = _Group(card, plans[card], kinds)
            group.conclusions.append(conclusion)
        for group in groups.values():  # on a card, each kind's lines together, lead first
            place = {kind: i for i, kind in enumerate(group.plan.kinds)}
            group.conclusions.sort(key=lambda c: place[c.card])
        self._ordered = set()  # tests a card already orders: each is asked for once
        kind_order = self._kind_order
        cards = [self._card(g, evidence, provenance, patient)
                 for g in sorted(groups.values(), key=lambda g: kind_order[g.kind])]
        cards.sort(key=lambda b: (INDICATOR_ORDER[b.card.indicator],
                                  self._kind_order[b.card.kind or ""], b.card.summary))
        return cards

    # -- pieces --------------------------------------------------------------------------
    def _card(self, group: _Group, evidence: Mapping[str, Evidence],
              provenance: Provenance, patient: str | None) -> BuiltCard:
        labels = self.k.cards.labels
        lang = self.lang
        citations: dict[str, tuple[str, str]] = {}
        sources: dict[str, None] = {}  # general clinical knowledge: reference (date), each once
        beyond: set[str] = set()  # messages whose knowledge is not the article's
        rules: dict[str, str] = {}
        reviewed: dict[str, Maintenance] = {}  # the review slots of each rule behind the card
        by_message: dict[str, dict[str, None]] = {}
        tests = _TestOrders()
        pooled = _POOLED  # the place of the one bullet naming the tests due
        for conclusion in group.conclusions:
            rule = self.k.rules_by_id[conclusion.rule_id].rule
            inputs = dict.fromkeys(
                provenance.inputs(str(f["id"]) for f in conclusion.facts.values()))
            suggestion = self.k.cards.suggestions.get(conclusion.suggest or "")
            if suggestion is not None and (suggestion.tests or suggestion.also):
                tests.add(suggestion, lang)
            text: str | None = None
            if suggestion is not None and suggestion.tests:
                by_message.setdefault(pooled, {}).update(inputs)
            else:
                subject = _label(group.kinds[conclusion.card], conclusion.subject, lang)
                text = render_message(getattr(rule.knowledge.message, lang), lang,
                                      conclusion.facts, subject)
                by_message.setdefault(text, {}).update(inputs)
            beyond_article = rule.library.knowledge_source
            if beyond_article is not None:  # never printed under the article's quotation
                if text is not None:
                    beyond.add(text)
                sources.setdefault(
                    reference_text(beyond_article.reference, beyond_article.date), None)
            elif (citation := rule.library.citation) is not None:
                citations.setdefault(citation.text, (citation.section, citation.gloss))
            rules[rule.id] = rule.maintenance.version
            reviewed[rule.id] = rule.maintenance
        wanted = [t for t in dict.fromkeys([*tests.due, *tests.also]) if t not in self._ordered]
        self._ordered.update(wanted)
        plan = self.k.orders.plan(wanted)
        if pooled in by_message:
            text = self._tests_due(tests, plan)
            by_message = {(text if k == pooled else k): v for k, v in by_message.items()}
        mark = f" *({labels['beyond_article_mark'](lang)})*" if beyond else ""
        lines: list[str] = []
        numbers: dict[str, int] = {}
        entries: dict[str, list[str]] = {}
        dates: set[str] = set()
        marked: dict[tuple[str, ...], str] = {}  # the same records behind several messages
        listed: dict[str, tuple[int, ...]] = {}  # a fact listed already: its lines' numbers
        for message, fact_id_set in by_message.items():
            fact_ids = tuple(fact_id_set)
            marks = marked.get(fact_ids)
            note = mark if message in beyond else ""
            if marks is not None:  # numbered and listed already: only the markers again
                lines.append(f"- {message} {marks}{note}" if marks else f"- {message}{note}")
                continue
            cited: dict[int, None] = {}
            for fact_id in fact_ids:
                fact_numbers = listed.get(fact_id)
                if fact_numbers is None:  # the fact's lines, listed once a card
                    fact_numbers = listed[fact_id] = self._list(
                        self._lines(fact_id, evidence), numbers, entries, dates)
                cited.update(dict.fromkeys(fact_numbers))
            marks = marked[fact_ids] = _markers(cited) if cited else ""
            lines.append(f"- {message} {marks}{note}" if marks else f"- {message}{note}")
        if numbers:
            lines += ["", f"**{labels['evidence'](lang)}**", ""]
            lines += [f"{n}. `{ref}`: {'; '.join(entries[ref])}" for ref, n in numbers.items()]
        if citations:  # the lines without the mark come from the article
            heading = labels["article_unmarked" if beyond else "article"](lang)
            lines += ["", f"**{heading}**", ""]
        for text in _distinct(citations):
            section, gloss = citations[text]
            lines.append(f"> {text}")
            if lang == "en":
                lines.append(f"> — *{gloss}*")
            else:
                lines += [f"> *{labels['correction'](lang)}: {c.reading}*"
                          for c in self.k.cards.corrections if c.text in text]
            lines.append(f"> ({self._section(section)})")
            lines.append("")
        if sources:
            if lines[-1]:
                lines.append("")
            lines += [f"**{labels['beyond_article'](lang)}**", ""]
            lines += [f"- `{source}`" for source in sources]  # quoted as published
            lines.append("")
        if dates:
            oldest, newest = min(dates), max(dates)
            span = oldest if oldest == newest else labels["data_range"](lang).format(
                oldest=oldest, newest=newest)
            lines.append(f"**{labels['data_age'](lang)}**: {span}")
        in_production = all(m.validation == "production" for m in reviewed.values())
        if not in_production:  # the clinician knows the advice has not been signed off
            lines += ["", f"*{labels['unreviewed'](lang)}*"]
        while lines and not lines[-1]:
            lines.pop()
        references = list(numbers)
        versions = sorted(f"{rule_id} {version}" for rule_id, version in rules.items())
        identity = "|".join([patient or "-", group.kind, ",".join(group.identity()),
                             *versions, *sorted(references)])
        source = self.k.cards.source
        suggestions = self._suggestions(group, patient, references, plan)
        shorts = [self.k.orders.tests[t].short(lang) for t in self.k.orders.tests if t in wanted]
        links = [self._link(rule_id)
                 for rule_id in dict.fromkeys(c.rule_id for c in group.conclusions)]
        return BuiltCard(references, Card(
            uuid=card_uuid(identity),
            summary=self._summary(group, lang, join_words(shorts, labels["and"](lang), lang),
                                  ", ".join(tests.reasons)),
            detail="\n".join(lines),
            indicator=self._indicator(group),
            source=Source(
                label=source.label(lang),
                url=links[0].url,
                topic=Coding(system=source.topic_system, code=group.kind,
                             display=group.plan.display(lang)),
            ),
            suggestions=suggestions or None,
            selectionBehavior="any" if suggestions else None,
            overrideReasons=list(self._override_reasons) or None,
            links=links,
            extension={EXTENSION_KEY: {
                "ruleset": self.k.version,
                "rules": [_rule_entry(rule_id, rules[rule_id], reviewed[rule_id])
                          for rule_id in sorted(rules)],
                "reviewed": in_production,
                "kinds": sorted(group.present()),
                "subjects": group.identity(),
            }},
        ))

    def _summary(self, group: _Group, lang: Lang, orders: str, reasons: str) -> str:
        """The lead kind's summary, or the card's own when it holds two or more parts."""
        return (parts_summary(group.plan, group.present(), lang, self.k.cards.labels["and"])
                or summary_text(group.texts, group.subjects(), lang, orders=orders,
                                reasons=reasons))

    def _indicator(self, group: _Group) -> Indicator:
        """The highest urgency among the rules behind the card (each rule's ``urgency``, the
        card plan's policy); a settling kind on the card (an evaluated, long-standing
        problem) makes warnings info, never a critical conclusion."""
        urgencies = self._urgencies(group)
        if self._settled(group, urgencies):
            return "info"
        return max(urgencies, key=URGENCY_RANK.__getitem__)

    def _urgencies(self, group: _Group) -> set[Indicator]:
        rules = self.k.rules_by_id
        return {rules[c.rule_id].rule.knowledge.urgency or "info" for c in group.conclusions}

    def _settled(self, group: _Group, urgencies: set[Indicator] | None = None) -> bool:
        """Whether the card's settling kind is on it and nothing on it is critical."""
        settles = group.plan.settles
        if settles is None or settles not in group.present():
            return False
        return "critical" not in (urgencies or self._urgencies(group))

    def _tests_due(self, tests: _TestOrders, plan: list[LabTest | Panel]) -> str:
        """The one bullet for every test a card found due: which, why, and what to order."""
        lang, labels, orders = self.lang, self.k.cards.labels, self.k.orders
        due = [orders.tests[t].name(lang) for t in orders.tests if t in tests.due]
        what = [o.name(lang) for o in plan] or due
        return labels["tests_due"](lang).format(
            tests=join_words(due, labels["or"](lang), lang), reasons="; ".join(tests.reasons),
            orders=join_words(what, labels["and"](lang), lang))

    def _link(self, rule_id: str) -> Link:
        """A link to the rule's catalogue page, made once per rule and language (a frozen
        model: every card may share it)."""
        key = (self._catalogue, self.lang, rule_id)
        link = _LINKS.get(key)
        if link is None:
            title = self.k.rules_by_id[rule_id].rule.library.name(self.lang)
            label = self.k.cards.source.link_label(self.lang).format(rule=rule_id, title=title)
            link = _LINKS[key] = Link(label=label, url=self.rule_page(rule_id), type="absolute")
        return link

    def rule_page(self, rule_id: str) -> str:
        """The rule's page in the rule catalogue, in the card's language."""
        return f"{self._catalogue}/{self.lang}/rules/{rule_id}.html"

    def _section(self, section: str) -> str:
        """The cited section in the card's language; the article's own heading (machine
        translated, "Cara Berkedut Kurang") is quoted as a citation only."""
        known = self.k.cards.sections.get(section)
        if known is None:
            return f"“{section}”"
        if not known.quoted:
            return known.title(self.lang)
        return self.k.cards.labels["section"](self.lang).format(
            title=known.title(self.lang), source=section)

    def _suggestions(self, group: _Group, patient: str | None, references: list[str],
                     plan: list[LabTest | Panel]) -> list[Suggestion]:
        """The card's procedures (a referral), then one suggestion ordering every test it
        wants, panels first. Draft ServiceRequests need a subject: none without a patient."""
        # a settled card (an evaluated problem) suggests no urgent referral: it says when to
        # refer again instead
        kinds = [] if self._settled(group) else [
            k for k in group.plan.kinds if k in group.present()]
        wanted = dict.fromkeys([*(s for k in kinds for s in group.kinds[k].suggestions),
                                *(c.suggest for c in group.conclusions if c.suggest)])
        if patient is None or not (wanted or plan):
            return []
        lang = self.lang
        reasons = [{"reference": r} for r in references
                   if " " not in r and not r.startswith("Patient/")]
        def request(resource: dict[str, Any]) -> dict[str, Any]:
            resource["subject"] = {"reference": patient}
            if reasons:
                resource["reasonReference"] = list(reasons)
            return as_r5(resource) if self._r5 else resource

        out: list[Suggestion] = []
        for key in wanted:
            texts = self.k.cards.suggestions[key]
            if texts.procedure is None or texts.label is None:
                continue  # tests: pooled below
            procedure = self.k.orders.procedures[texts.procedure]
            resource = request(procedure.service_request(lang, texts.text, texts.priority))
            shown = texts.text or procedure.text
            out.append(Suggestion(
                label=texts.label(lang), uuid=card_uuid(f"{patient}|{group.kind}|{key}"),
                actions=[Action(type="create", resource=resource,
                                description=shown(lang) if shown else texts.label(lang))]))
        if plan:
            labels = self.k.cards.labels
            names = join_words([o.name(lang) for o in plan], labels["and"](lang), lang)
            codes = ",".join(o.coding.code for o in plan)
            actions = []
            for order in plan:
                resource = request(order.service_request(lang))
                what = order.text(lang) if order.text else order.name(lang)
                actions.append(Action(type="create", resource=resource, description=what))
            out.append(Suggestion(label=labels["order_label"](lang).format(orders=names),
                                  uuid=card_uuid(f"{patient}|{group.kind}|tests|{codes}"),
                                  actions=actions))
        return out
