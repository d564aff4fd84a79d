"""``rulesets/cards.yaml``: card kinds, their texts in English and Indonesian, suggestions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    topic_system: str
    article: Text


class CardKind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    indicator: Literal["info", "warning", "critical"]
    group: Literal["kind", "subject"]
    display: Text
    summary: Text
    subjects: dict[str, Text] = Field(min_length=1)
    suggestions: list[str] = Field(default_factory=list)


class SuggestionTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    label: Text
    resources: list[dict[str, Any]] = Field(min_length=1)


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
