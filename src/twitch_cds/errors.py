"""Exceptions twitch-cds raises: each says what was wrong and what to do about it."""

from __future__ import annotations


class TwitchCdsError(Exception):
    """Base class for every error twitch-cds raises on purpose."""


class InputError(TwitchCdsError, ValueError):
    """The input cannot be read at all (not JSON, not FHIR, not a CDS Hooks request).

    Input that is only partly bad never raises: it is evaluated and the bad part is
    reported in ``EvaluationResult.issues``.
    """


class RulesetError(TwitchCdsError):
    """A file in ``rulesets/`` is invalid; the message names the file and the rule."""


class EngineError(TwitchCdsError):
    """The inference engine failed mid-evaluation; no partial answer is returned."""
