"""Input problems found while reading FHIR, reported instead of silently dropped."""

from __future__ import annotations

import re
from typing import Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twitch_cds.locale import Lang, Param, catalogue, render, words

Severity = Literal["error", "warning", "information"]
Action = Literal["skipped", "used-leniently", "value-not-used", "ignored", "used"]
IssueCode = Literal[
    # the input as a whole, and its envelope
    "request-invalid",          # a CDS Hooks envelope field is malformed; the prefetch is read
    "prefetch-missing",         # a prefetch key is null: the client did not provide it
    "prefetch-failed",          # the client sent an OperationOutcome for a prefetch key
    "not-a-resource",           # an entry or prefetch value without a resourceType
    "bundle-invalid",           # Bundle.entry is not a list, or Bundles nested too deeply
    "unknown-resource-type",    # resourceType is not a FHIR resource type (misspelt, invented)
    "unreadable-resource",      # reading this resource failed; the rest was evaluated
    "id-unusable",              # Resource.id is not a FHIR id; an internal label is used
    "nesting-too-deep",         # a field nested deeper than any FHIR resource needs
    # validation
    "validation-failed",        # a field the rules read failed validation: that value not used
    "validation-lenient",       # a field the rules never read failed validation: resource used
    # whose data
    "other-patient",            # the resource belongs to another patient than the one evaluated
    "several-patients",         # the input holds data for more than one patient
    "patient-unreferenced",     # a Patient resource that no other resource refers to
    # trust: statuses and dates
    "status-unusable",          # status / clinicalStatus / verificationStatus / adherence
    "status-assumed",           # no usable clinicalStatus: treated as active (used)
    "stale",                    # older than the parameter for its kind of data
    "future-date",              # dated after now beyond the tolerance
    "date-invalid",             # not a FHIR date
    "date-missing",             # no date where one is needed
    "onset-unusable",           # a Condition onset[x] that cannot be dated
    # values
    "value-missing",            # no value, or a dataAbsentReason
    "value-unreadable",         # a value of the wrong shape, or not a finite number
    "unit-missing",
    "unit-unknown",             # a unit not accepted for the analyte: the value is not used
    "implausible-value",        # outside the plausible limits in rulesets/measurements.yaml
    "range-unusable",           # the lab's referenceRange cannot be read or chosen
    # codes
    "code-without-system",      # a coding with no system whose code is in a value set
    "coding-malformed",         # a coding out of FHIR's shape that carries a code the rules read
    "text-only",                # words that name a finding, but no code: not used
    "reference-unresolved",     # a referenced resource is not in the input
    "not-systemic",             # a corticosteroid recognised but not systemic
    "unclassified-medication",  # a current drug no class and no table of ours can place
    "unclassified-condition",   # a current diagnosis outside every value set (or system)
]
"""Stable machine-readable issue codes (documented in docs/input-profile.md)."""

MAX_TEXT = 300
"""Characters of any one issue field kept: input text never floods a report."""
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def safe_text(text: str, limit: int = MAX_TEXT) -> str:
    """Text safe to print, log and encode on one line: control characters (newlines too)
    and lone surrogates replaced with U+FFFD, cut to ``limit`` characters."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # a printable text holds none of _UNSAFE's characters: most texts need no regex pass
    return text if text.isprintable() else _UNSAFE.sub("\ufffd", text)


class Problem(TypedDict):
    """An issue's text and what it was made from: ``InputIssue(..., **msg(...))``."""

    problem: str
    message_id: str
    params: dict[str, Param]


def msg(key: str, **params: Param) -> Problem:
    """An issue text from the catalogue (``locale/issues.yaml``): English now, any language
    later from the same key and parameters (``InputIssue.in_lang``)."""
    return {"problem": render("issues", key, params, "en"), "message_id": key,
            "params": params}


def issue_word(key: str) -> dict[str, str]:
    """A translatable word (``word.<key>`` in the catalogue) to fill a placeholder."""
    return words("issues", f"word.{key}")


def described(english: str, key: str, **params: Param) -> dict[str, str]:
    """A detail only English gives (a library's message): as is in English, the catalogue's
    words for it in other languages."""
    return {"en": english, "id": render("issues", key, params, "id")}


def validation_detail(message: str, error_type: str) -> dict[str, str]:
    """A validator's complaint: its own English message; in Indonesian, the catalogue's
    phrase for the error type (pydantic's messages exist only in English)."""
    key = f"pydantic.{error_type}"
    found = key in catalogue("issues")
    phrase = render("issues", key if found else "pydantic.other",
                    {} if found else {"type": error_type}, "id")
    return {"en": message, "id": phrase}


class InputIssue(BaseModel):
    """One problem with one resource: where it is, what was wrong, what twitch-cds did."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    resource: str
    """``ResourceType/id`` (or ``ResourceType at <where in the input>`` when it has no usable
    id)."""
    path: str
    """Field path inside the resource, FHIRPath-like (``valueQuantity.unit``)."""
    problem: str
    """What was wrong, for people, in the evaluation's language (``evaluate(lang=...)``); the
    words may change between versions: programs match on ``code``."""
    action: Action
    code: IssueCode
    """What kind of problem, for programs: stable across versions and languages."""
    message_id: str | None = None
    """The catalogue message ``problem`` was rendered from (``locale/issues.yaml``): stable
    across languages; None for a text made without the catalogue."""
    params: dict[str, Param] = Field(default_factory=dict)
    """The values in ``problem``: quoted input as sent, numbers, translatable words."""

    @field_validator("resource", "path", "problem")
    @classmethod
    def _safe(cls, value: str) -> str:
        return safe_text(value)

    @field_validator("params")
    @classmethod
    def _safe_params(cls, value: dict[str, Param]) -> dict[str, Param]:
        return {k: safe_text(v) if isinstance(v, str) else
                {lang: safe_text(t) for lang, t in v.items()} if isinstance(v, dict) else v
                for k, v in value.items()}

    def in_lang(self, lang: Lang) -> InputIssue:
        """This issue with ``problem`` in ``lang`` (rendered again from its message)."""
        try:
            text = safe_text(render("issues", self.message_id, self.params, lang)) \
                if self.message_id is not None else self.problem
        except (KeyError, IndexError):  # made by another version: keep the text it has
            return self
        return self if text == self.problem else self.model_copy(update={"problem": text})

    def __hash__(self) -> int:  # params is a dict: hash what identifies the issue
        return hash((self.severity, self.resource, self.path, self.problem, self.action,
                     self.code))

    def __str__(self) -> str:
        return (f"{self.severity}: {self.resource} {self.path}: {self.problem} "
                f"({self.action}, {self.code})")

