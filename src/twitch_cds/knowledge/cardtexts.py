"""``rulesets/cards.yaml``: card kinds, their texts in English and Indonesian, suggestions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Lang = Literal["en", "id"]


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    en: str = Field(min_length=1)
    id: str = Field(min_length=1)

    def __call__(self, lang: Lang) -> str:
        return self.en if lang == "en" else self.id


class SourceTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    label: Text
    """What the knowledge is: rules derived from a lay patient article, and whom it cites."""
    topic_system: str
    article: Text
    catalogue: str = Field(pattern=r"^https?://\S+[^/]$")
    """The default base of the rule catalogue; a rule's page is
    ``<base>/<lang>/rules/<rule-id>.html`` (``evaluate(catalogue=...)`` overrides it)."""
    link_label: Text
    """The label of a card's link to one of its rules' pages (``{title}``: the rule's title in
    the card's language; ``{rule}``: its id)."""


class Section(BaseModel):
    """An article heading shown in the card's language: the source's own (machine-translated)
    title is quoted only as a citation, never printed as if it were ours."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: Text
    quoted: bool = True
    """False for a place that is not a heading of the article (the opening paragraph)."""


class Correction(BaseModel):
    """A known mistranslation in the Indonesian article: the corrected reading an Indonesian
    card shows beside the verbatim quotation of ``text`` (a sentence of the article)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str = Field(min_length=10)
    reading: str = Field(min_length=10)
    why: str = Field(min_length=5)


class CardKind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    indicator: Literal["info", "warning", "critical"]
    group: Literal["kind", "subject"]
    display: Text
    summary: Text
    subjects: dict[str, Text] = Field(min_length=1)
    suggestions: list[str] = Field(default_factory=list)
    summary_orders: Text | None = None
    """The summary when the card orders tests: ``{subjects}`` and ``{orders}`` (their short
    names, "K, Na, Mg, Ca and creatinine")."""
    summary_due: Text | None = None
    """The summary when tests are all the card is about: ``{reasons}`` and ``{orders}``."""
    order_subjects: list[str] = Field(default_factory=list)
    """Subjects that only say tests are due: named by the orders, not in ``{subjects}``."""


LANGS: tuple[Lang, ...] = ("en", "id")


class SuggestionTexts(BaseModel):
    """A suggested action, built from ``rulesets/orders.yaml``: a procedure (a referral)
    with its label, or tests. Tests from every conclusion of a card are pooled into one
    suggestion, ordered as labs order them (panels); ``tests`` are those the rule found with
    no current result, ``also`` those ordered alongside (renal function with a diuretic's
    electrolytes), ``reason`` why they are wanted."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    label: Text | None = None
    procedure: str | None = None
    priority: Literal["routine", "urgent", "asap", "stat"] | None = None
    text: Text | None = None
    """The procedure's ``code.text`` when the order's own text is not specific enough."""
    tests: list[str] = Field(default_factory=list)
    also: list[str] = Field(default_factory=list)
    reason: Text | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SuggestionTexts:
        if (self.procedure is None) == (not (self.tests or self.also)):
            raise ValueError("a suggestion is either a procedure or tests")
        if self.procedure is not None and self.label is None:
            raise ValueError("a procedure suggestion needs a label")
        if (self.tests or self.also) and self.reason is None:
            raise ValueError("a tests suggestion needs a reason")
        return self


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    display: Text


class CardTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: SourceTexts
    labels: dict[str, Text]
    kinds: dict[str, CardKind]
    suggestions: dict[str, SuggestionTexts] = Field(default_factory=dict)
    override_reasons: list[OverrideReason] = Field(default_factory=list)
    evidence_words: dict[str, Text]
    status_words: dict[str, Text] = Field(default_factory=dict)
    """FHIR status codes of medication records, in words, for evidence lines."""
    sections: dict[str, Section] = Field(default_factory=dict)
    """Each article heading a rule cites (``citation.section``), in both languages."""
    corrections: list[Correction] = Field(default_factory=list)
