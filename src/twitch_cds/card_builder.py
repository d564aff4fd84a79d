"""Conclusions -> CDS Hooks cards, with every text taken from ``rulesets/cards.yaml`` and the
rule files, and the evidence behind each card named in it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twitch_cds.card_setup import Indicator, RuleText, lang_setup
from twitch_cds.card_text import (
    KindText,
    distinct_quotes,
    join_words,
    localise_number_text,
    markers,
    parts_summary,
    span_markers,
)
from twitch_cds.cds_hooks import INDICATOR_ORDER, Card, Link, Source
from twitch_cds.engine import Conclusion
from twitch_cds.facts import Evidence
from twitch_cds.knowledge.bundle import URGENCY_RANK, Knowledge
from twitch_cds.knowledge.cardtexts import CardPlan, Lang
from twitch_cds.knowledge.orders import LabTest, Panel, as_r5
from twitch_cds.provenance import Provenance

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
EXTENSION_KEY = "twitch-cds"
"""The card ``extension`` key under which the rules behind the card are named."""


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
    kinds: Mapping[str, KindText]
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
    def texts(self) -> KindText:
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


_SOURCES: dict[tuple[str, Lang], dict[tuple[str, str], tuple[Link, Source]]] = {}
"""Per rule catalogue and language: (card, rule id) -> the rule's link and the card's source
when that rule leads it. Bounded by the rules, the cards, the two languages and the catalogue
bases a process is given; the models are frozen, so every card may share them."""


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

    Whatever no chart changes is read from the ruleset's per-language set-up (``lang_setup``);
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
        setup = self._set = lang_setup(knowledge, lang)
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
        rules: dict[str, RuleText] = {}  # the rules behind the card
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
                    marks = span_markers(runs)
                else:
                    if numbers is None:
                        numbers = {reference: n for n, reference in enumerate(texts, 1)}
                    found = {numbers[r] for fact_id in cited_ids
                             for r in cited_facts[fact_id].records}
                    marks = markers(found) if found else ""
                marked[cited_ids] = marks
            note = mark if message in beyond else ""
            lines.append(f"- {message} {marks}{note}" if marks else f"- {message}{note}")
        if entries:
            lines += ["", f"**{labels['evidence']}**", ""]
            lines += [f"{n}. {entry}" for n, entry in enumerate(entries.values(), 1)]
        if citations:  # the lines without the mark come from the article
            heading = labels["article_unmarked" if beyond else "article"]
            lines += ["", f"**{heading}**", ""]
            for text in distinct_quotes(citations):
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

    def _source(self, group: _Group, rules: Mapping[str, RuleText]) -> tuple[list[Link],
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
