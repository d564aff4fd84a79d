"""Exceptions twitch-cds raises: each says what was wrong and what to do about it."""

from __future__ import annotations

from twitch_cds.locale import Lang, Param, render


class TwitchCdsError(Exception):
    """Base class for every error twitch-cds raises on purpose."""


class InputError(TwitchCdsError, ValueError):
    """The input cannot be read at all (not JSON, not FHIR, not a CDS Hooks request).

    Input that is only partly bad never raises: it is evaluated and the bad part is
    reported in ``EvaluationResult.issues``.

    The message is English (``str(error)``); ``in_lang`` gives it in another language from
    the same catalogue as the issue texts (``locale/issues.yaml``).
    """

    message_id: str | None = None
    params: dict[str, Param]

    @classmethod
    def of(cls, key: str, **params: Param) -> InputError:
        """The error for catalogue message ``key``, its English text as the message."""
        error = cls(render("issues", key, params, "en"))
        error.message_id, error.params = key, params
        return error

    def in_lang(self, lang: Lang) -> str:
        if self.message_id is None:
            return str(self)
        return render("issues", self.message_id, self.params, lang)


class RulesetError(TwitchCdsError):
    """A file in ``rulesets/`` is invalid; the message names the file and the rule."""


class EngineError(TwitchCdsError):
    """The inference engine failed mid-evaluation; no partial answer is returned."""
