"""Conclusions -> CDS Hooks cards, with every text taken from ``rulesets/cards.yaml`` and the
rule files, and the evidence behind each card named in it."""

from __future__ import annotations

import hashlib
import string
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twitch_cds.cds_hooks import INDICATOR_ORDER, Action, Card, Coding, Source, Suggestion
from twitch_cds.engine import Conclusion
from twitch_cds.facts import Evidence
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import CardKind, Lang
from twitch_cds.provenance import Provenance

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


class _FactFormatter(string.Formatter):
    """``{bind.field}`` placeholders in rule messages, read from the facts a rule fired on."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        bind, _, name = field_name.partition(".")
        value = kwargs.get(bind, {}).get(name)  # {subject} reads kwargs["subject"][""]
        return ("?" if value is None else value), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if value == "?" or (format_spec and not isinstance(value, int | float)):
            return str(value)
        return format(value, format_spec)


_FORMATTER = _FactFormatter()


@dataclass(frozen=True)
class BuiltCard:
    """A card and the references of the resources behind it."""

    references: list[str]
    card: Card


@dataclass
class _Block:
    lines: list[str] = field(default_factory=list)
    references: dict[str, None] = field(default_factory=dict)
    dates: list[str] = field(default_factory=list)


@dataclass
class _Group:
    kind: str
    texts: CardKind
    conclusions: list[Conclusion] = field(default_factory=list)
    _subjects: list[str] | None = field(default=None, init=False, repr=False)

    def subjects(self) -> list[str]:
        """Subjects in the order cards.yaml lists them, unknown ones last (all conclusions
        are in by the time this is asked)."""
        if self._subjects is None:
            order = {s: i for i, s in enumerate(self.texts.subjects)}
            unique = dict.fromkeys(c.subject for c in self.conclusions)
            self._subjects = sorted(unique, key=lambda s: (order.get(s, len(order)), s))
        return self._subjects


class CardBuilder:
    def __init__(self, knowledge: Knowledge, lang: Lang):
        self.k = knowledge
        self.lang: Lang = lang
        self._kind_order = knowledge.card_kind_order
        self._rule_order = knowledge.rule_order
        system = knowledge.cards.source.topic_system
        self._override_reasons = [Coding(system=system, code=r.code, display=r.display(lang))
                                  for r in knowledge.cards.override_reasons]
        labels = knowledge.cards.labels
        self._evidence_label = labels["evidence"](lang)
        self._by_name = f" ({labels['matched_by_name'](lang)})"
        self._blocks: dict[tuple[str, ...], _Block] = {}

    def _block(self, fact_ids: tuple[str, ...], evidence: Mapping[str, Evidence]) -> _Block:
        """The evidence lines for these facts: the same records behind several messages and
        cards (every self-care bullet rests on the twitching records) are written once."""
        block = self._blocks.get(fact_ids)
        if block is None:
            block = self._blocks[fact_ids] = _Block()
            for fact_id in fact_ids:
                item = evidence.get(fact_id)
                if item is None:
                    continue
                note = self._by_name if item.match == "name" else ""
                block.lines.append(f"  - {self._evidence_label}: `{item.reference}`: "
                                   f"{item.text}{note}")
                block.references[item.reference] = None
                if item.date:
                    block.dates.append(item.date)
        return block

    def build(self, conclusions: Iterable[Conclusion], evidence: Mapping[str, Evidence],
              provenance: Provenance, patient: str | None) -> list[BuiltCard]:
        groups: dict[tuple[str, str], _Group] = {}
        order = self._rule_order
        def position(c: Conclusion) -> tuple[int, list[str]]:
            return order[c.rule_id], sorted(str(f.get("id")) for f in c.facts.values())

        for conclusion in sorted(conclusions, key=position):
            texts = self.k.cards.kinds[conclusion.card]
            key = (conclusion.card, conclusion.subject if texts.group == "subject" else "")
            groups.setdefault(key, _Group(conclusion.card, texts)).conclusions.append(conclusion)
        cards = [self._card(g, evidence, provenance, patient) for g in groups.values()]
        cards.sort(key=lambda b: (INDICATOR_ORDER[b.card.indicator],
                                  self._kind_order[b.card.kind or ""], b.card.summary))
        return cards

    # -- pieces --------------------------------------------------------------------------
    def _summary(self, group: _Group) -> str:
        labels = [self._subject_label(group.texts, s) for s in group.subjects()]
        template = group.texts.summary(self.lang)
        for shown in range(len(labels), 0, -1):
            listed = ", ".join(labels[:shown])
            if shown < len(labels):
                listed += f" +{len(labels) - shown}"
            summary = template.format(subjects=listed)
            if len(summary) <= SUMMARY_LIMIT:
                return summary
        return template.format(subjects=f"{len(labels)}")[:SUMMARY_LIMIT]

    def _subject_label(self, texts: CardKind, subject: str) -> str:
        text = texts.subjects.get(subject)
        return text(self.lang) if text else subject

    def _card(self, group: _Group, evidence: Mapping[str, Evidence],
              provenance: Provenance, patient: str | None) -> BuiltCard:
        labels = self.k.cards.labels
        lines = [f"**{labels['why'](self.lang)}**", ""]
        references: dict[str, None] = {}
        dates: list[str] = []
        citations: dict[str, tuple[str, str]] = {}
        rule_versions: list[str] = []
        by_message: dict[str, dict[str, None]] = {}
        for conclusion in group.conclusions:
            rule = self.k.rules_by_id[conclusion.rule_id].rule
            message = getattr(rule.knowledge.message, self.lang)
            subject = self._subject_label(group.texts, conclusion.subject)
            text = _FORMATTER.format(message, **conclusion.facts, subject={"": subject}) \
                if "{" in message else message
            by_message.setdefault(text, {}).update(dict.fromkeys(
                provenance.inputs(str(f["id"]) for f in conclusion.facts.values())))
            citation = rule.library.citation
            citations.setdefault(citation.text, (citation.section, citation.gloss))
            rule_versions.append(f"{rule.id} {rule.maintenance.version}")
        for message, fact_ids in by_message.items():
            lines.append(f"- {message}")
            block = self._block(tuple(fact_ids), evidence)
            lines += block.lines
            references.update(block.references)
            dates += block.dates
        lines += ["", f"**{labels['article'](self.lang)}**", ""]
        for text, (section, gloss) in citations.items():
            lines.append(f"> {text}")
            if self.lang == "en":
                lines.append(f"> — *{gloss}*")
            lines.append(f"> ({section})")
            lines.append("")
        if dates:
            lines.append(f"**{labels['data_age'](self.lang)}**: {labels['newest'](self.lang)} "
                         f"{max(dates)}, {labels['oldest'](self.lang)} {min(dates)}")
            lines.append("")
        lines.append(f"{labels['rules'](self.lang)}: {', '.join(sorted(set(rule_versions)))}")
        identity = "|".join([patient or "-", group.kind, ",".join(sorted(group.subjects())),
                             *sorted(set(rule_versions)), *sorted(references)])
        source = self.k.cards.source
        suggestions = self._suggestions(group, patient, list(references))
        return BuiltCard(list(references), Card(
            uuid=card_uuid(identity),
            summary=self._summary(group),
            detail="\n".join(lines),
            indicator=group.texts.indicator,
            source=Source(
                label=source.label(self.lang),
                topic=Coding(system=source.topic_system, code=group.kind,
                             display=group.texts.display(self.lang)),
            ),
            suggestions=suggestions or None,
            selectionBehavior="any" if suggestions else None,
            overrideReasons=list(self._override_reasons) or None,
        ))

    def _suggestions(self, group: _Group, patient: str | None,
                     references: list[str]) -> list[Suggestion]:
        if patient is None:
            return []  # a ServiceRequest needs a subject
        wanted = dict.fromkeys([*group.texts.suggestions,
                                *(c.suggest for c in group.conclusions if c.suggest)])
        out: list[Suggestion] = []
        if not wanted:
            return out
        reasons = [{"reference": r} for r in references
                   if " " not in r and not r.startswith("Patient/")]
        for key in wanted:
            texts = self.k.cards.suggestions[key]
            actions = []
            for template in texts.resources:
                resource = dict(template)
                resource["subject"] = {"reference": patient}
                if reasons:
                    resource["reasonReference"] = list(reasons)
                what = (resource.get("code") or {}).get("text") or next(
                    (c.get("display") for c in (resource.get("code") or {}).get("coding", [])
                     if c.get("display")), texts.label(self.lang))
                actions.append(Action(type="create", description=f"{resource['resourceType']}: "
                                      f"{what}", resource=resource))
            out.append(Suggestion(
                label=texts.label(self.lang),
                uuid=card_uuid(f"{patient}|{group.kind}|{key}"),
                actions=actions,
            ))
        return out
