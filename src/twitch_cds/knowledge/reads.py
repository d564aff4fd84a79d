"""Which fields of a fact any rule reads: what "records the rules cannot tell apart" means.

Two facts of the same type and kind (a finding's concept, a lab's analyte, a derived fact's
name) that agree on every field some rule reads lead to the same firings, the same messages
and the same card subjects. They can be asserted once, with every member kept as evidence.
The fields are derived from the rule files themselves: a pattern's field conditions (and the
fields its operands name), a message's ``{bind.field}`` placeholders, ``derive.copy`` sources
and ``conclude.subject``. A new rule that reads a new field splits the groups by itself.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import Any

from twitch_cds.knowledge.rules import GO_BIND, PARAMS_BIND, RuleFile

DERIVED = "derived"
KIND_FIELDS: dict[str, str] = {
    "finding": "concept",
    "lab": "analyte",
    "medication": "drug_class",
    "intake": "substance",
    DERIVED: "name",
}
"""Per fact type, the field that says what the fact is about (its kind)."""

_FORMATTER = string.Formatter()


class _Reader:
    """One pattern's view: which fact type, which kinds it can match, the fields it reads."""

    __slots__ = ("fact_type", "kinds", "fields")

    def __init__(self, fact_type: str, kinds: frozenset[str] | None) -> None:
        self.fact_type = fact_type
        self.kinds = kinds
        """The kinds the pattern is limited to; None when it matches every kind."""
        self.fields: set[str] = set()


def _kinds(pattern: Mapping[str, Any], kind_field: str | None) -> frozenset[str] | None:
    if kind_field is None:
        return None
    spec = pattern.get(kind_field)
    if isinstance(spec, str):
        return frozenset({spec})
    if isinstance(spec, list) and all(isinstance(v, str) for v in spec):
        return frozenset(spec)
    return None


def _operands(spec: Any) -> Iterable[Mapping[str, Any]]:
    """Operands that name a field (``{field: x}`` or ``{fact: b, field: x}``) in a spec."""
    if isinstance(spec, Mapping):
        if "field" in spec:
            yield spec
        else:
            for value in spec.values():
                yield from _operands(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from _operands(value)


def _parameters(rule: RuleFile) -> set[str]:
    """The parameters a rule compares with (``{param: name}``) or quotes (``{params.name}``)."""
    names: set[str] = set()

    def walk(spec: Any) -> None:
        if isinstance(spec, Mapping):
            if set(spec) == {"param"}:
                names.add(str(spec["param"]))
            for value in spec.values():
                walk(value)
        elif isinstance(spec, list):
            for value in spec:
                walk(value)

    walk([*rule.knowledge.when.values(), *rule.knowledge.unless])
    for text in (rule.knowledge.message.en, rule.knowledge.message.id):
        for _, name, _, _ in _FORMATTER.parse(text):
            if name and name.startswith(PARAMS_BIND + "."):
                names.add(name.split(".", 1)[1])
    return names


def _rule_readers(rule: RuleFile) -> list[_Reader]:
    knowledge = rule.knowledge
    readers: list[_Reader] = []
    by_bind: dict[str, _Reader] = {}
    patterns: list[tuple[str | None, Mapping[str, Any]]] = [*knowledge.when.items()]
    patterns += [(None, p) for p in knowledge.unless]
    for bind, pattern in patterns:
        fact_type = str(pattern.get("type"))
        reader = _Reader(fact_type, _kinds(pattern, KIND_FIELDS.get(fact_type)))
        reader.fields.update(f for f in pattern if f != "type")
        readers.append(reader)
        if bind is not None:
            by_bind[bind] = reader
    for reader, (_, pattern) in zip(readers, patterns, strict=True):
        for operand in _operands(dict(pattern)):
            target = by_bind.get(str(operand["fact"])) if "fact" in operand else reader
            if target is not None:  # None: the parameters fact, not a patient fact
                target.fields.add(str(operand["field"]))

    def read(name: str) -> None:
        bind, dot, field = name.partition(".")
        if dot and bind in by_bind and bind not in (PARAMS_BIND, GO_BIND):
            by_bind[bind].fields.add(field.split(".")[0].split("[")[0])

    for text in (knowledge.message.en, knowledge.message.id):
        for _, name, _, _ in _FORMATTER.parse(text):
            if name:
                read(name)
    if knowledge.derive is not None:
        for source in knowledge.derive.copy_fields.values():
            read(source)
    if knowledge.conclude is not None:
        read(knowledge.conclude.subject)
    return readers


class FactReads:
    """For each fact type and kind, the fields some rule reads (the kind field included)."""

    def __init__(self, rules: Iterable[RuleFile]) -> None:
        rules = list(rules)
        self._readers = [reader for rule in rules for reader in _rule_readers(rule)]
        self._cache: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self.parameters: tuple[str, ...] = tuple(sorted(set().union(
            *(_parameters(rule) for rule in rules))))
        """The parameters some rule compares with or quotes: only they go into a session."""

    def fields(self, fact_type: str, kind: str | None) -> tuple[str, ...]:
        """The fields read of a ``fact_type`` fact of this ``kind``, sorted."""
        key = (fact_type, kind)
        found = self._cache.get(key)
        if found is None:
            fields: set[str] = set()
            kind_field = KIND_FIELDS.get(fact_type)
            if kind_field is not None:
                fields.add(kind_field)
            for reader in self._readers:
                if reader.fact_type == fact_type and (
                        reader.kinds is None or kind in reader.kinds):
                    fields |= reader.fields
            fields -= {"id", "type"}
            found = self._cache[key] = tuple(sorted(fields))
        return found
