"""Which patients cannot lead to a card, decided from the rules and the value sets alone.

The rule files say which findings every card needs: a rule fires only when each of its
``when`` bindings is met, a ``finding`` binding names its concepts (value sets), and a
``derived`` binding is met only when some rule deriving it fires. ``CardGate`` walks that
graph for the finding concepts a patient's codings fall in. Every other kind of binding (a
lab, a medication, an intake) is assumed met, and every coding anywhere in a resource is
looked up, so the gate only ever errs towards a full evaluation: a patient it turns away
has, in no resource, a code of the concepts every card rule needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.rules import RuleFile
from twitch_cds.knowledge.terminology import ICD10_SYSTEMS, PREFIX_SYSTEMS, Terminology

_MAX_DEPTH = 64
"""Nesting walked for codings (technical bound: FHIR resources nest a few levels)."""


def _concepts(pattern: Mapping[str, Any]) -> frozenset[str] | None:
    concept = pattern.get("concept")
    if isinstance(concept, str):
        return frozenset({concept})
    if isinstance(concept, list) and all(isinstance(c, str) for c in concept):
        return frozenset(concept)
    return None  # any finding (or a condition the gate does not read): assumed met


class CardGate:
    """``could_card(resources)``: False only when no card rule can fire for this data."""

    def __init__(self, knowledge: Knowledge) -> None:
        self._terminology = knowledge.terminology
        self._findings = knowledge.concepts.findings
        rules = [compiled.rule for compiled in knowledge.rules]
        self._derivers: dict[str, list[RuleFile]] = {}
        for rule in rules:
            if rule.knowledge.derive is not None:
                self._derivers.setdefault(rule.knowledge.derive.name, []).append(rule)
        self._card_rules = [r for r in rules if r.knowledge.conclude is not None]
        self._memo: dict[frozenset[str], bool] = {}
        self.gate_concepts = self._needed()
        """Finding concepts of which a patient needs at least one for any card."""
        self._raw, self._anchors = _raw_pattern(self._terminology, self.gate_concepts)

    def _needed(self) -> frozenset[str]:
        everything = frozenset(self._findings)
        # drop each concept that some card can do without (for reports and the benchmark)
        needed = set(everything)
        for concept in sorted(everything):
            if self._any_card(everything - frozenset(needed)):
                break
            if not self._any_card(everything - (frozenset(needed) - {concept})):
                needed.discard(concept)
        return frozenset(needed)

    def _any_card(self, present: frozenset[str]) -> bool:
        found = self._memo.get(present)
        if found is None:
            found = self._memo[present] = any(
                self._rule_can_fire(r, present, set()) for r in self._card_rules)
        return found

    def _rule_can_fire(self, rule: RuleFile, present: frozenset[str], visiting: set[str]) -> bool:
        if rule.id in visiting:
            return False  # a derivation cycle adds nothing new
        visiting = visiting | {rule.id}
        for pattern in rule.knowledge.when.values():
            kind = pattern.get("type")
            if kind == "finding":
                wanted = _concepts(pattern)
                if wanted is not None and not wanted & present:
                    return False
            elif kind == "derived":
                derivers = self._derivers.get(str(pattern.get("name")), [])
                if not any(self._rule_can_fire(d, present, visiting) for d in derivers):
                    return False
        return True

    def concepts_in(self, resources: Iterable[Any]) -> frozenset[str]:
        """The finding concepts any coding in these resources falls in."""
        found: set[str] = set()
        for resource in resources:
            self._walk(resource, found, 0)
        return frozenset(found)

    def _walk(self, value: Any, found: set[str], depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, dict):
            system, code = value.get("system"), value.get("code")
            if isinstance(system, str) and isinstance(code, str):
                for match in self._terminology.lookup(system, code):
                    if match.valueset in self._findings:
                        found.add(match.valueset)
            for item in value.values():
                if isinstance(item, dict | list):
                    self._walk(item, found, depth + 1)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict | list):
                    self._walk(item, found, depth + 1)

    def may_card_raw(self, lines: Iterable[bytes]) -> bool:
        """False when no line's raw JSON even spells a code of the gate concepts (a line
        with a ``\\u`` escape always counts as spelling one). Necessary, not sufficient:
        a True is then decided by ``could_card`` on the parsed resources."""
        blob = b"\n".join(lines).lower()
        if b"\\u" in blob:
            return True
        # a few substring scans (C speed) decide most patients; the pattern the rest
        return any(a in blob for a in self._anchors) and self._raw.search(blob) is not None

    def could_card(self, resources: Iterable[Any]) -> bool:
        """False when, whatever their labs and medications, no card rule can fire."""
        return self._any_card(self.concepts_in(resources))


def _spelling(system: str, code: str) -> tuple[bytes, bytes]:
    """(pattern, anchor) for a code as its raw JSON may spell it before the terminology
    normalises it: any case, and for ICD-10 (WHO or CM) with or without the dot. The anchor is a
    lower-case substring every such spelling contains."""
    code = code.strip().lower()
    text = re.escape(code)
    anchor = code
    if system in ICD10_SYSTEMS and "." in code:
        text = text.replace(r"\.", r"\.?")
        anchor = code.split(".")[0]
    return text.encode(), anchor.encode()


def _raw_pattern(terminology: Terminology,
                 concepts: frozenset[str]) -> tuple[re.Pattern[bytes], frozenset[bytes]]:
    pairs = [_spelling(system, code) for system, code in terminology.codes(concepts)]
    pairs += [_spelling(system, prefix) for system, prefix in terminology.classes(concepts)
              if system in PREFIX_SYSTEMS]
    if not pairs:
        return re.compile(b"(?!)"), frozenset()
    pattern = re.compile(b"|".join(sorted({p for p, _ in pairs})), re.IGNORECASE)
    return pattern, frozenset(a for _, a in pairs)
