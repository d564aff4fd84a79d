"""``rulesets/cards.yaml``: card kinds, their texts in English and Indonesian, suggestions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

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


LANGS: tuple[Lang, ...] = ("en", "id")


def localise(value: Any, lang: Lang) -> Any:
    """A resource template in one language: every ``{en: ..., id: ...}`` text becomes the
    string of ``lang``; everything else is copied as it is."""
    if isinstance(value, dict):
        if set(value) == set(LANGS) and all(isinstance(v, str) for v in value.values()):
            return value[lang]
        return {k: localise(v, lang) for k, v in value.items()}
    if isinstance(value, list):
        return [localise(v, lang) for v in value]
    return value


class SuggestionTexts(BaseModel):
    """A suggested action: its label, and FHIR resources whose texts may be given in both
    languages (``text: {en: ..., id: ...}``), so that an Indonesian card carries no English
    text of ours. Each resource is validated with fhir.resources in both languages at load."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: Text
    resources: list[dict[str, Any]] = Field(min_length=1)
    _by_lang: dict[str, list[dict[str, Any]]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _valid_fhir(self) -> SuggestionTexts:
        from fhir.resources.R4B import get_fhir_model_class

        for lang in LANGS:
            rendered = [localise(r, lang) for r in self.resources]
            for resource in rendered:
                model = get_fhir_model_class(str(resource.get("resourceType")))
                # the subject is added per patient when the card is built
                model.model_validate({**resource, "subject": {"reference": "Patient/x"}})
            self._by_lang[lang] = rendered
        return self

    def resources_in(self, lang: Lang) -> list[dict[str, Any]]:
        """The resource templates with their texts in ``lang``."""
        return self._by_lang[lang]


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
