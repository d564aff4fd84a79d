"""One bucket of the partitioned export: group by patient, evaluate, write a part file.

Runs in a worker process (one engine each) or in the calling process. Only a bucket's raw
lines are held while it is grouped; each patient's lines are parsed when the patient's
turn comes and let go after, so memory stays bounded by the bucket size. The results go to
the bucket's part file, which appears (renamed from a temporary file) only when complete:
a finished part is never redone when an interrupted run is resumed, and the parent gets
only counts back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.screening.evaluate_many import PatientResult, evaluate_many, gate_for
from twitch_cds.screening.partition import Rejected, bucket_name, patient_of, share_dir
from twitch_cds.screening.parts import PartWriter, part_path, read_part_header

INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Settings:
    now: dt.datetime
    lang: Lang = "en"
    parameters: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BucketTask:
    """Where bucket ``bucket``'s lines are: one file per share that had any."""

    bucket: int
    work: Path
    files: list[str]
    offsets: list[int]
    """Per share: lines of its file before it."""


@dataclass
class BucketCounts:
    """What the parent hears about a finished bucket (the rest is in its part file)."""

    bucket: int
    patients: int = 0
    resources: int = 0
    evaluated: int = 0
    resumed: bool = False


Located = tuple[int, int, bytes]  # file index, line number in the file, raw JSON


def _raw_groups(task: BucketTask) -> dict[str, list[Located]]:
    """Each patient's raw lines with where they are, in share (so file) order."""
    groups: dict[str, list[Located]] = {}
    name = bucket_name(task.bucket)
    for share, offset in enumerate(task.offsets):
        try:
            handle = open(share_dir(task.work, share) / name, "rb")  # noqa: SIM115
        except FileNotFoundError:
            continue  # no line of this share fell in this bucket
        with handle:
            for raw in handle:
                index, number, pid, line = raw.rstrip(b"\n").split(b"\t", 3)
                groups.setdefault(pid.decode("ascii"), []).append(
                    (int(index), offset + int(number), line))
    return groups


def _loads(line: bytes) -> Any:
    """``json.loads(line)``; the usual line (an object in UTF-8) is decoded first, which
    spares json its encoding detection. Any other line gets the bytes reading as it was."""
    if line[:1] == b"{" and b"\x00" not in line[:4]:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return json.loads(text)
    return json.loads(line)


def _refers(resource: Any, pid: str) -> bool:
    """The common case of ``patient_of(resource) == pid``, decided without its general
    reading: a non-Patient resource whose ``subject`` is exactly ``Patient/<pid>`` (``pid``
    came from the partitioning pattern, so it is a FHIR id)."""
    if type(resource) is not dict or resource.get("resourceType") == "Patient":
        return False
    subject = resource.get("subject")
    return type(subject) is dict and subject.get("reference") == "Patient/" + pid


def _parsed(task: BucketTask, pid: str, located: list[Located],
            rejected: list[Rejected]) -> tuple[list[Any], list[bytes]]:
    """A patient's resources and their raw lines. Every line is parsed, so that every
    unreadable line is reported whether or not its patient is evaluated."""
    resources: list[Any] = []
    lines: list[bytes] = []
    for index, number, line in located:
        where = (task.files[index], number)
        try:
            resource = _loads(line)
        except ValueError as exc:
            rejected.append(Rejected(*where, f"not JSON: {exc}"))
            continue
        actual = pid if _refers(resource, pid) else patient_of(resource)
        if actual != pid:
            rejected.append(Rejected(
                *where, "patient reference read inconsistently: "
                f"{pid!r} by pattern, {actual!r} parsed; not screened"))
            continue
        resources.append(resource)
        lines.append(line)
    return resources, lines


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


def run_bucket(task: BucketTask, settings: Settings) -> BucketCounts:
    """Screen one bucket into its part file (a finished part is read, not redone)."""
    target = part_path(task.work, task.bucket)
    header = read_part_header(target)
    if header is not None:
        return BucketCounts(task.bucket, header["patients"], header["resources"],
                            header["evaluated"], resumed=True)
    groups = _raw_groups(task)
    gate = gate_for(default_knowledge())
    rejected: list[Rejected] = []
    counts = BucketCounts(task.bucket)
    kinds: Counter[str] = Counter()

    def patients() -> Iterator[tuple[str, list[Any], bool]]:
        for pid in sorted(groups):
            resources, lines = _parsed(task, pid, groups.pop(pid), rejected)
            yield pid, resources, gate.may_card_raw(lines)

    with PartWriter(target) as part:
        for result in evaluate_many(patients(), now=settings.now, lang=settings.lang,
                                    parameters=settings.parameters):
            counts.patients += 1
            counts.resources += result.resources
            counts.evaluated += result.evaluated
            if result.error is not None:
                part.failed({"patient": result.patient_id, "error": result.error})
                continue
            if not result.cards:
                continue
            row = row_for(result)
            kinds.update({str(k) for k in row["kinds"]})
            part.row(row)
            part.response(json.dumps({
                "patient": result.patient_id,
                "response": {"cards": [c.to_json() for c in result.cards]},
                "evidence": result.evidence,
                "issues": [i.model_dump(mode="json", exclude_none=True) for i in result.issues],
            }, ensure_ascii=False, sort_keys=True))
        for item in rejected:
            part.rejected(item)
        part.header({"patients": counts.patients, "resources": counts.resources,
                     "evaluated": counts.evaluated, "kinds": dict(sorted(kinds.items())),
                     "pid": os.getpid()})
    return counts
