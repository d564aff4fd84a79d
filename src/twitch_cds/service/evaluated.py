"""What the HTTP side of a worker needs from one evaluation: each card's uuid, kind,
indicator, serialised JSON and evidence, and what the evaluation cost.

Cards cross from the evaluation process to the HTTP process in this form (plain data,
cheap to pickle): the HTTP process only filters them (quiet once addressed, order hooks),
counts them and writes them out, so it never rebuilds the pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass

from twitch_cds.result import EvaluationResult


@dataclass(frozen=True, slots=True)
class AnsweredCard:
    uuid: str
    kind: str | None
    indicator: str
    json: bytes
    """The card as the CDS Hooks response carries it (pydantic-core, ``exclude_none``)."""
    evidence: tuple[str, ...]
    """``ResourceType/id`` of the records behind it (order hooks keep the drafts' cards)."""


@dataclass(frozen=True, slots=True)
class Evaluated:
    cards: list[AnsweredCard]
    seconds: float
    """The evaluation's cost where it ran (parsing the body there included): learnt by
    admission control."""


def evaluated(result: EvaluationResult, seconds: float) -> Evaluated:
    return Evaluated([AnsweredCard(str(card.uuid), card.kind, card.indicator,
                                   card.model_dump_json(exclude_none=True).encode(),
                                   tuple(result.evidence.get(str(card.uuid), ())))
                      for card in result.cards], seconds)


def cards_json(cards: list[AnsweredCard]) -> bytes:
    """The CDS Hooks response body ``{"cards": [...]}``."""
    return b'{"cards":[' + b",".join(card.json for card in cards) + b"]}"
