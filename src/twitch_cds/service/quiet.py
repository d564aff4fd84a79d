"""Quiet once addressed: a card a clinician overrode with a reason such as "already
addressed" is not shown again for that reason's period (``quiet_after_override``).

A card's uuid is a uuid5 of the patient, the card kind, the rules behind it and the records
it cites, so the same uuid means the same patient and the same evidence: a new record cited
(a new result, a new episode) or a new ruleset version makes a new uuid, and the card shows
again at once. The service asks the store for the overrides of the cards it is about to
answer, one query per call, and leaves out those still quiet; ``twitch_cds.evaluate(...,
suppress=...)`` lets an embedder do the same with its own store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping


def quiet_cards(overridden: Mapping[str, tuple[str, dt.datetime]],
                periods: Mapping[str, dt.timedelta], now: dt.datetime) -> set[str]:
    """The uuids of ``overridden`` cards (uuid -> (reason code, when)) whose reason has a
    period that has not yet run out at ``now``."""
    return {card for card, (code, when) in overridden.items()
            if code in periods and now < when + periods[code]}
