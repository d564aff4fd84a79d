"""One bucket of the partitioned export: group by patient, evaluate, summarise.

Runs in a worker process (one engine each) or in the calling process; returns plain data,
so results are the same whichever way the buckets were run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.screening.evaluate_many import PatientResult, evaluate_many, gate_for
from twitch_cds.screening.partition import Rejected, patient_of

INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Settings:
    now: dt.datetime
    lang: Lang = "en"
    parameters: Mapping[str, float] = field(default_factory=dict)


@dataclass
class BucketOutcome:
    patients: int = 0
    resources: int = 0
    evaluated: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    rows: list[dict[str, Any]] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def _group(path: Path, files: list[str],
           outcome: BucketOutcome) -> dict[str, tuple[list[Any], list[bytes]]]:
    """Each patient's parsed resources and raw lines (every line is parsed, so that every
    unreadable line is reported whether or not its patient is evaluated)."""
    groups: dict[str, tuple[list[Any], list[bytes]]] = {}
    with open(path, "rb") as handle:
        for raw in handle:
            index, number, pid, line = raw.rstrip(b"\n").split(b"\t", 3)
            where = (files[int(index)], int(number))
            try:
                resource = json.loads(line)
            except ValueError as exc:
                outcome.rejected.append(Rejected(*where, f"not JSON: {exc}"))
                continue
            actual = patient_of(resource)
            if actual != pid.decode("ascii"):
                outcome.rejected.append(Rejected(
                    *where, "patient reference read inconsistently: "
                    f"{pid.decode('ascii')!r} by pattern, {actual!r} parsed; not screened"))
                continue
            group = groups.setdefault(actual, ([], []))
            group[0].append(resource)
            group[1].append(line)
    return groups


def row_for(result: PatientResult) -> dict[str, Any]:
    """The worklist row of a patient with cards."""
    cards = result.cards
    cited = dict.fromkeys(ref for card in cards for ref in result.evidence.get(str(card.uuid), []))
    return {
        "patient": result.patient_id,
        "indicator": min((c.indicator for c in cards), key=lambda i: INDICATOR_ORDER[i]),
        "kinds": list(dict.fromkeys(c.kind for c in cards if c.kind)),
        "summaries": [c.summary for c in cards],
        "references": list(cited),
    }


def run_bucket(path: Path, files: list[str], settings: Settings) -> BucketOutcome:
    outcome = BucketOutcome()
    groups = _group(path, files, outcome)
    gate = gate_for(default_knowledge())
    patients = ((pid, resources, gate.may_card_raw(lines))
                for pid, (resources, lines) in sorted(groups.items()))
    for result in evaluate_many(patients, now=settings.now, lang=settings.lang,
                                parameters=settings.parameters):
        outcome.patients += 1
        outcome.resources += result.resources
        outcome.evaluated += result.evaluated
        if result.error is not None:
            outcome.failed.append({"patient": result.patient_id, "error": result.error})
            continue
        if not result.cards:
            continue
        outcome.kinds.update({str(k) for k in row_for(result)["kinds"]})
        outcome.rows.append(row_for(result))
        outcome.responses.append(json.dumps({
            "patient": result.patient_id,
            "response": {"cards": [c.to_json() for c in result.cards]},
            "evidence": result.evidence,
            "issues": [i.model_dump(mode="json", exclude_none=True) for i in result.issues],
        }, ensure_ascii=False, sort_keys=True))
    return outcome
