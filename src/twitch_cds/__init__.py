"""twitch-cds: clinical decision support for leg-muscle twitching after walking.

    import twitch_cds
    result = twitch_cds.evaluate(bundle, now="2026-11-24T09:00:00Z")
    for card in result.cards: print(card.indicator, card.summary)
"""

from twitch_cds.cds_hooks import Card, CdsHooksRequest
from twitch_cds.errors import EngineError, InputError, RulesetError, TwitchCdsError
from twitch_cds.evaluate import evaluate, set_default_parameters
from twitch_cds.fhir_in.validation_cache import configure_validation_cache
from twitch_cds.issues import InputIssue
from twitch_cds.knowledge.bundle import Knowledge, load_knowledge
from twitch_cds.result import DerivedFinding, EvaluationResult, RuleFiring, Trace
from twitch_cds.screening import screen

__all__ = [
    "Card",
    "CdsHooksRequest",
    "DerivedFinding",
    "EngineError",
    "EvaluationResult",
    "InputError",
    "InputIssue",
    "Knowledge",
    "RuleFiring",
    "RulesetError",
    "Trace",
    "TwitchCdsError",
    "configure_validation_cache",
    "evaluate",
    "load_knowledge",
    "screen",
    "set_default_parameters",
]
__version__ = "0.1.0"
