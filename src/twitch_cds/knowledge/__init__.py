"""The clinical knowledge in ``rulesets/``: value sets, parameters, rules and card texts,
loaded and checked once per process."""

from twitch_cds.knowledge.bundle import Knowledge, load_knowledge

__all__ = ["Knowledge", "load_knowledge"]
