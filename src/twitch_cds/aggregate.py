"""Facts the rules cannot tell apart are asserted once; every member stays evidence.

A patient who twitches for months has a twitching record at every visit. Asserted one by one,
each record joins every weakness finding, low potassium and drug exposure, so firings grow as
a product of the chart's facts. Grouped on the fields the rules read (``knowledge/reads.py``),
the engine sees one fact per distinguishable record and firings stop growing with repeats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twitch_cds.knowledge.reads import KIND_FIELDS, FactReads

_ABSENT = object()


@dataclass
class Aggregated:
    facts: list[dict[str, Any]] = field(default_factory=list)
    """One engine fact per group, carrying only its id, type and the fields rules read."""
    members: dict[str, list[str]] = field(default_factory=dict)
    """Group fact id -> the ids of the facts it stands for (only groups of two or more)."""


def distinguished(fact: Mapping[str, Any],
                  reads: FactReads) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """What tells the fact apart (type, kind, every field read), and the fact as the engine
    needs it (its id, type and those fields). Input and derived facts alike."""
    fact_type = fact["type"]
    kind_field = KIND_FIELDS.get(fact_type)
    kind = fact.get(kind_field) if kind_field else None
    fields = reads.fields(fact_type, kind if isinstance(kind, str) else None)
    lean = {"id": fact["id"], "type": fact_type}
    lean.update((f, fact[f]) for f in fields if f in fact)
    return (fact_type, kind, *(fact.get(f, _ABSENT) for f in fields)), lean


def aggregate(facts: Iterable[dict[str, Any]], reads: FactReads) -> Aggregated:
    """Group engine facts on (type, kind, every field read); members sorted by fact id."""
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], list[str]]] = {}
    for fact in facts:
        key, lean = distinguished(fact, reads)
        group = groups.get(key)
        if group is None:
            groups[key] = (lean, [fact["id"]])
        else:
            group[1].append(fact["id"])
    out = Aggregated()
    taken = {fact_id for _, ids in groups.values() for fact_id in ids}
    for lean, ids in groups.values():
        if len(ids) > 1:
            ids.sort()  # the same group, members and id whatever the input order
            group_id = f"{ids[0]}(+{len(ids) - 1})"
            while group_id in taken:  # only a hostile id could collide; stay unique anyway
                group_id += "'"
            taken.add(group_id)
            lean["id"] = group_id
            out.members[group_id] = ids
        out.facts.append(lean)
    return out
