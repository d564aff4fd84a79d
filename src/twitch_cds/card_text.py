"""Card wording: rule messages filled from the facts, summaries within CDS Hooks' 140
characters, evidence markers, and numbers written the way the card's language writes them."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twitch_cds.knowledge.cardtexts import CardKind, CardPlan, Lang, Text

SUMMARY_LIMIT = 139


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


FORMATTERS: dict[Lang, _FactFormatter] = {"en": _FactFormatter("en"),
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
            text = FORMATTERS[lang].format(self.template, **facts, subject={"": subject})
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
    return KindText.of(texts, lang).summary_of(subjects, orders, reasons)


@dataclass(frozen=True, slots=True)
class KindText:
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
    def of(cls, texts: CardKind, lang: Lang) -> KindText:
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


def distinct_quotes(quotes: Iterable[str]) -> list[str]:
    """The article passages to quote, each once: a passage that another one on the same
    card contains (one rule cites a sentence, another the paragraph around it) is left out."""
    texts = list(quotes)
    if len(texts) < 2:
        return texts
    return [t for t in texts if not any(t != other and t in other for other in texts)]


def markers(numbers: Iterable[int]) -> str:
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


def span_markers(spans: Iterable[tuple[int, int] | None]) -> str:
    """``markers`` of every number in these runs (``(first, last)``; an empty run has
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
