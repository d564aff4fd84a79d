"""The ``check-incomplete`` card: what the EHR gets when the twitching check cannot finish.

An empty ``{"cards": []}`` would read as "no guidance" and hide any red flag the chart
carries, so when the time budget passes, the worker is too busy to take the call on
(``overload``) or the evaluation fails, the service answers this one warning card instead:
the check did not finish, review the chart for red flags. Its
texts are data in ``rulesets/cards.yaml`` (kind ``check-incomplete``, detail
``labels.check_incomplete``).
"""

from __future__ import annotations

import uuid
from typing import Literal

from twitch_cds.cds_hooks import Card, Coding, Source
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang

KIND = "check-incomplete"
Reason = Literal["time-budget", "overload", "failure"]


def check_incomplete_card(knowledge: Knowledge, hook_instance: str | None, reason: Reason,
                          lang: Lang) -> Card:
    """One warning card; its uuid derives from ``hookInstance`` alone (stable on retries),
    or is random for a call shed before its body (and so its ``hookInstance``) was read."""
    texts = knowledge.cards.kinds[KIND]
    source = knowledge.cards.source
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"{source.topic_system}#{KIND}")
    return Card(
        uuid=str(uuid.uuid5(namespace, hook_instance) if hook_instance else uuid.uuid4()),
        summary=texts.summary(lang).format(subjects=texts.subjects[reason](lang)),
        detail=knowledge.cards.labels[KIND.replace("-", "_")](lang),
        indicator=texts.indicator,
        source=Source(label=source.label(lang),
                      topic=Coding(system=source.topic_system, code=KIND,
                                   display=texts.display(lang))),
        overrideReasons=[
            Coding(system=source.topic_system, code=r.code, display=r.display(lang))
            for r in knowledge.cards.override_reasons
        ] or None,
    )
