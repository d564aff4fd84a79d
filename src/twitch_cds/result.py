"""What ``evaluate()`` returns: cards, input issues, and a trace of the reasoning."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field

from twitch_cds.cds_hooks import Card
from twitch_cds.issues import InputIssue

UNCLASSIFIED = frozenset({"unclassified-medication", "unclassified-condition"})


class FactRef(BaseModel):
    """A fact a rule fired on: its id, the resource behind it, the value that matched."""

    model_config = ConfigDict(frozen=True)

    id: str
    reference: str | None = None
    text: str | None = None
    match: str | None = None
    """How the resource was recognised: ``code``, ``class`` (is-a prefix), ``broader`` (a
    broader code that counts, reported on the card) or ``name`` (text, the last resort)."""
    members: list[str] = []
    """When the fact stands for several records the rules cannot tell apart (the same
    finding at every visit): the references of all of them; ``reference`` is the first."""


class RuleFiring(BaseModel):
    """One rule that fired, with the facts that fired it."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    version: str
    facts: dict[str, FactRef]


class DerivedFinding(BaseModel):
    """A fact the rules derived (low potassium, chronic twitching, ...), with its basis."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    values: dict[str, Any]
    evidence: list[str]
    """References of the resources behind it."""


class Trace(BaseModel):
    model_config = ConfigDict(frozen=True)

    ruleset_version: str
    facts: int
    """How many facts were read from the resources (after trust checks)."""
    asserted: int = 0
    """How many facts the engine saw: records the rules cannot tell apart count once."""
    fired: list[RuleFiring]
    derived: list[DerivedFinding]


class EvaluationResult(BaseModel):
    """The answer for one patient: cards (critical first), input issues, and the trace."""

    model_config = ConfigDict(frozen=True)

    cards: list[Card]
    evidence: dict[str, list[str]]
    """Card uuid -> references (``ResourceType/id``) of the resources behind that card."""
    issues: list[InputIssue]
    patient: str | None
    """``Patient/id`` the data was about, when it could be told."""
    now: dt.datetime
    suppressed: list[str] = Field(default_factory=list)
    """Uuids of cards left out because the caller asked (``evaluate(suppress=...)``)."""
    _trace: Trace | Callable[[], Trace] | None = PrivateAttr(default=None)

    @classmethod
    def with_trace(cls, trace: Trace | Callable[[], Trace], **fields: Any) -> EvaluationResult:
        """A result whose trace is given, or built by ``trace()`` when first read."""
        result = cls(**fields)
        result._trace = trace
        return result

    @computed_field  # type: ignore[prop-decorator]
    @functools.cached_property
    def trace(self) -> Trace:
        """How the answer was reached: the rules that fired, on which facts, and what they
        derived. Built when first read (the service never reads it, so it costs nothing)."""
        source = self._trace
        if source is None:
            raise AttributeError("this result was made without a trace")
        return source() if callable(source) else source

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unclassified(self) -> int:
        """How many records the terminology could not classify (``unclassified-medication``
        and ``unclassified-condition`` issues): "no cards" never hides that something
        unrecognisable was sent."""
        return len({i.resource for i in self.issues if i.code in UNCLASSIFIED})

    def to_cds_hooks(self) -> dict[str, Any]:
        """The CDS Hooks response body: ``{"cards": [...]}``."""
        return {"cards": [card.to_json() for card in self.cards]}

    def cds_hooks_json(self, cards: list[Card] | None = None) -> bytes:
        """The same body as JSON bytes, serialised by pydantic-core (the service's path);
        ``cards`` picks a subset of ``self.cards``."""
        chosen = self.cards if cards is None else cards
        body = b",".join(card.model_dump_json(exclude_none=True).encode() for card in chosen)
        return b'{"cards":[' + body + b"]}"
