"""Rule files (``rulesets/rules/**/*.yaml``): their schema, their checks, and their
compilation into the durable-rules JSON grammar.

A rule file reads like an Arden Syntax medical logic module: ``maintenance`` (id, version,
date, validation, author, institution, the clinical reviewer), ``library`` (title, purpose,
the article sentence it encodes, keywords, links) and ``knowledge`` (the hooks that evoke it,
the facts it needs, its logic, what it concludes).
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

OPERATORS = {"lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte", "ne": "$neq", "eq": None}
BIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SUGGEST_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\.(analyte)\}")
"""The one placeholder a suggestion key may hold: a bound fact's analyte."""
PARAMS_BIND = "params"
GO_BIND = "go"
CONCEPT_FIELDS = {"concept": "finding", "drug_class": "medication", "analyte": "lab"}
"""Fields whose values are value-set ids, and the fact type each belongs to."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Validation = Literal["research", "testing", "production", "expired"]
Hook = Literal["patient-view", "order-select", "order-sign"]
"""The CDS Hooks a rule can be meant for (the hooks the service answers)."""


class Maintenance(_Strict):
    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    date: dt.date
    validation: Validation
    """Arden's review state: ``testing`` until a clinician has reviewed the rule."""
    author: str = Field(min_length=1)
    institution: str = Field(min_length=1)
    specialist: str
    """The clinical reviewer who approved this version; empty until someone has."""
    reviewed: dt.date | None = None
    """When the specialist approved this version."""

    @model_validator(mode="after")
    def _production_is_reviewed(self) -> Maintenance:
        if self.validation == "production" and not (self.specialist.strip() and self.reviewed):
            raise ValueError("validation: production needs a specialist (the clinical "
                             "reviewer) and the date they reviewed this version (reviewed)")
        if self.reviewed is not None and self.reviewed < self.date:
            raise ValueError("reviewed is before this version's date: the review was of an "
                             "earlier version; review again or keep validation: testing")
        return self


class Citation(_Strict):
    section: str = Field(min_length=1)
    """The article's heading the sentence stands under."""
    text: str = Field(min_length=10)
    """The Indonesian words, verbatim from the article."""
    gloss: str = Field(min_length=10)
    """An English gloss of those words."""


class KnowledgeSource(_Strict):
    """Where a rule's knowledge comes from when it is not the article: general clinical
    knowledge (known-disease handling, critical laboratory limits) with its own guideline or
    reference and date. Its card line is printed without the article's quotation beneath it
    (card_builder: "Not from the article"), the reference listed instead."""

    kind: Literal["general-clinical-knowledge"]
    reference: str = Field(min_length=10)
    """The guideline, textbook or reference the rule follows, named so a reviewer finds it."""
    date: str = Field(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$")
    """The reference's date (year, year-month or full date)."""

    @field_validator("date", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        """YAML reads ``2024-05-01`` as a date and ``2024`` as a number: both are text here."""
        return value.isoformat() if isinstance(value, dt.date) else \
            str(value) if isinstance(value, int) else value


class Link(_Strict):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)


class Library(_Strict):
    title: str = Field(min_length=5)
    """The rule's name in English (the catalogue's heading, the English card's rule link)."""
    title_id: str | None = Field(default=None, min_length=5)
    """The rule's name in Indonesian: the Indonesian card's rule link and catalogue page (every
    rule file has one: tests/test_governance.py)."""
    purpose: str = Field(min_length=5)
    explanation: str = Field(min_length=5)
    citation: Citation | None = None
    """The article sentence the rule encodes; absent for a rule of general clinical
    knowledge (then ``knowledge_source`` says where it comes from)."""
    knowledge_source: KnowledgeSource | None = None
    keywords: list[str] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    """Where a reviewer reads more: the value sets the rule reads (checked at load)."""

    def name(self, lang: str) -> str:
        """The rule's title in the card's language (English when no Indonesian one is given)."""
        return self.title_id if lang == "id" and self.title_id else self.title

    @model_validator(mode="after")
    def _has_a_source(self) -> Library:
        if self.citation is None and self.knowledge_source is None:
            raise ValueError("library needs a citation (the article sentence) or a "
                             "knowledge_source (general clinical knowledge, with reference)")
        return self


class Texts(_Strict):
    en: str = Field(min_length=1)
    id: str = Field(min_length=1)


class Derive(_Strict):
    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    copy_fields: dict[str, str] = Field(default_factory=dict, alias="copy")
    """Fields of the derived fact, each taken from a bound fact: ``analyte: lab.analyte``."""
    set_fields: dict[str, str | float | bool] = Field(default_factory=dict, alias="set")
    """Fields of the derived fact with fixed values: ``analyte: electrolyte-disorder``."""


class Conclude(_Strict):
    card: str
    """The card kind (a code of the card-kind concept in our CodeSystem)."""
    subject: str
    """What the card is about: a fixed code, or ``bind.field`` for one card per value."""
    suggest: str | None = None
    """A suggestion (from cards.yaml) this conclusion adds to its card. It may name an
    analyte of a bound fact (``critical-{crit.analyte}``): one suggestion per analyte, each
    of which the loader checks in cards.yaml."""


class Knowledge(_Strict):
    evoke: list[Hook] = Field(min_length=1)
    """The CDS Hooks this rule is meant for (Arden's evoke slot)."""
    when: dict[str, dict[str, Any]] = Field(min_length=1)
    """The facts the rule needs: bind name -> pattern (``type`` plus field conditions)."""
    unless: list[dict[str, Any]] = Field(default_factory=list)
    """Facts whose presence keeps the rule quiet (checked once every fact is in)."""
    derive: Derive | None = None
    """A fact the rule adds for other rules. A concluding rule may derive one too: a red
    flag's rule concludes its card line and derives ``red-flag``, on which other rules'
    ``unless`` can wait."""
    conclude: Conclude | None = None
    urgency: Literal["critical", "warning", "info"] | None = None
    message: Texts

    @field_validator("when")
    @classmethod
    def _bind_names(cls, when: dict[str, Any]) -> dict[str, Any]:
        for bind in when:
            if not BIND_NAME.match(bind) or bind in (PARAMS_BIND, GO_BIND):
                raise ValueError(f"bind name {bind!r} must be lower_snake_case and not reserved")
        return when

    @model_validator(mode="after")
    def _one_outcome(self) -> Knowledge:
        if self.derive is None and self.conclude is None:
            raise ValueError("knowledge needs derive, conclude or both")
        if self.conclude is not None and self.urgency is None:
            raise ValueError("a rule that concludes needs an urgency")
        return self


class RuleFile(_Strict):
    maintenance: Maintenance
    library: Library
    knowledge: Knowledge

    @property
    def id(self) -> str:
        return self.maintenance.id


class RuleCheckError(ValueError):
    """A rule refers to something that does not exist; the loader adds file and rule."""


class Schema:
    """What rules may refer to: fact types and their fields, value sets, parameters."""

    def __init__(
        self,
        fact_fields: Mapping[str, set[str]],
        valuesets: set[str],
        parameters: set[str],
        card_kinds: set[str],
        concept_fields: Mapping[str, str],
        valueset_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.fact_fields = {k: set(v) for k, v in fact_fields.items()}
        self.valuesets = valuesets
        self.parameters = parameters
        self.card_kinds = card_kinds
        self.concept_fields = dict(concept_fields)
        """Fields whose values must be value-set ids: ``{"concept": "finding", ...}``."""
        self.valueset_urls = dict(valueset_urls or {})
        """Canonical URL of each value set: a rule links to those it reads."""
        self.derived: dict[str, set[str]] = {}


def _operand(value: Any, bind: str, rule: RuleFile, schema: Schema, binds: dict[str, str]) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"param"}:
            if value["param"] not in schema.parameters:
                raise RuleCheckError(f"unknown parameter {value['param']!r}")
            return {PARAMS_BIND: value["param"]}
        if set(value) == {"field"}:
            return {"$m": value["field"]}  # the fact being matched
        if set(value) in ({"fact", "field"}, {"fact", "field", "plus"}):
            if value["fact"] not in binds:
                raise RuleCheckError(f"operand refers to unbound fact {value['fact']!r}")
            other = {value["fact"]: value["field"]}
            if "plus" not in value:
                return other
            if not isinstance(value["plus"], Mapping) or set(value["plus"]) != {"param"}:
                raise RuleCheckError(f"operand {dict(value)!r}: plus must be a {{param: name}}")
            # another fact's field plus a parameter: a window that starts at that fact
            return {"$add": {"$l": other, "$r": _operand(value["plus"], bind, rule, schema,
                                                          binds)}}
        raise RuleCheckError(f"operand {dict(value)!r} must be a value, field, param, "
                             "fact+field or fact+field+plus")
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise RuleCheckError(f"operand {value!r} is not a number, string or boolean")


def _reads_params(operand: Any) -> bool:
    """Whether a compiled operand (a window's sum included) reads the parameters fact."""
    if isinstance(operand, dict):
        return PARAMS_BIND in operand or any(_reads_params(v) for v in operand.values())
    return False


def _fields_for(pattern: Mapping[str, Any], schema: Schema) -> tuple[str, set[str]]:
    fact_type = pattern.get("type")
    if fact_type == "derived":
        name = pattern.get("name")
        if name not in schema.derived:
            raise RuleCheckError(
                f"derived fact {name!r} is not derived by any rule"
            )
        return "derived", schema.derived[name] | {"type", "name", "id"}
    if fact_type not in schema.fact_fields:
        known = ", ".join(sorted([*schema.fact_fields, "derived"]))
        raise RuleCheckError(f"unknown fact type {fact_type!r}; known: {known}")
    return str(fact_type), schema.fact_fields[str(fact_type)]


def compile_pattern(
    bind: str, pattern: Mapping[str, Any], rule: RuleFile, schema: Schema, binds: dict[str, str]
) -> tuple[dict[str, Any], bool]:
    """One pattern to durable JSON; also says whether it reads the parameters fact."""
    fact_type, fields = _fields_for(pattern, schema)
    terms: list[dict[str, Any]] = []
    uses_params = False
    for field, spec in pattern.items():
        if field not in fields:
            raise RuleCheckError(f"fact type {fact_type!r} has no field {field!r}")
        if schema.concept_fields.get(field) == fact_type:
            values = spec if isinstance(spec, list) else [spec]
            for value in values:
                if value not in schema.valuesets:
                    raise RuleCheckError(f"unknown value set {value!r} in {field}")
        if isinstance(spec, list):
            if not spec:
                raise RuleCheckError(f"{field}: an empty any-of list never matches")
            alternatives = [{field: _operand(v, bind, rule, schema, binds)} for v in spec]
            terms.append({"$or": alternatives} if len(alternatives) > 1 else alternatives[0])
        elif isinstance(spec, Mapping) and not set(spec) & {"param", "field", "fact"}:
            for op, operand in spec.items():
                if op == "exists":
                    terms.append({"$ex" if operand else "$nex": {field: 1}})
                    continue
                if op not in OPERATORS:
                    raise RuleCheckError(f"{field}: unknown operator {op!r}")
                value = _operand(operand, bind, rule, schema, binds)
                uses_params = uses_params or _reads_params(value)
                durable_op = OPERATORS[op]
                terms.append({field: value} if durable_op is None else {durable_op: {field: value}})
        else:
            value = _operand(spec, bind, rule, schema, binds)
            uses_params = uses_params or _reads_params(value)
            terms.append({field: value})
    return (terms[0] if len(terms) == 1 else {"$and": terms}), uses_params


PLACEHOLDER = string.Formatter()


def check_message(rule: RuleFile, schema: Schema, binds: dict[str, str]) -> None:
    binds = {**binds, PARAMS_BIND: "parameters"}
    for lang, text in (("en", rule.knowledge.message.en), ("id", rule.knowledge.message.id)):
        for _, name, _, _ in PLACEHOLDER.parse(text):
            if name is None or (name == "subject" and rule.knowledge.conclude is not None):
                continue  # {subject}: the conclusion's subject, in the card's language
            bind, _, field = name.partition(".")
            if bind not in binds or not field:
                raise RuleCheckError(f"message.{lang}: placeholder {{{name}}} names no bound fact")
            if bind == PARAMS_BIND and field not in schema.parameters:
                raise RuleCheckError(f"message.{lang}: unknown parameter {field!r}")


def valuesets_in(patterns: Iterable[Mapping[str, Any]],
                 concept_fields: Mapping[str, str] = CONCEPT_FIELDS) -> list[str]:
    """The value sets these ``when``/``unless`` patterns name, in order."""
    names: list[str] = []
    for pattern in patterns:
        for field, spec in pattern.items():
            if concept_fields.get(field) == pattern.get("type"):
                for value in spec if isinstance(spec, list) else [spec]:
                    if isinstance(value, str) and value not in names:
                        names.append(value)
    return names


def valuesets_read(rule: RuleFile, schema: Schema) -> list[str]:
    """The value sets a rule's ``when`` and ``unless`` patterns name, in order."""
    return valuesets_in([*rule.knowledge.when.values(), *rule.knowledge.unless],
                        schema.concept_fields)


def check_links(rule: RuleFile, schema: Schema) -> None:
    """A reviewer reaches every value set the rule reads from the rule's own links."""
    linked = {link.url for link in rule.library.links}
    for name in valuesets_read(rule, schema):
        url = schema.valueset_urls.get(name)
        if url is not None and url not in linked:
            raise RuleCheckError(f"library.links: no link to value set {name!r} ({url}), "
                                 "which the rule reads")


def declare_derivation(rule: RuleFile, schema: Schema) -> None:
    """First pass: make a rule's derived fact known, so rules in any file may use it."""
    if rule.knowledge.derive is not None:
        known = schema.derived.setdefault(rule.knowledge.derive.name, set())
        known |= set(rule.knowledge.derive.copy_fields) | set(rule.knowledge.derive.set_fields)


def _message_uses_params(rule: RuleFile) -> bool:
    texts = (rule.knowledge.message.en, rule.knowledge.message.id)
    return any((name or "").startswith(PARAMS_BIND + ".")
               for text in texts for _, name, _, _ in PLACEHOLDER.parse(text))


def compile_rule(rule: RuleFile, schema: Schema) -> dict[str, Any]:
    """The rule in durable-rules' JSON grammar (without ``run``)."""
    knowledge = rule.knowledge
    binds: dict[str, str] = {}
    patterns: list[dict[str, Any]] = []
    needs_params = False
    for bind, pattern in knowledge.when.items():
        compiled, uses = compile_pattern(bind, pattern, rule, schema, binds)
        binds[bind] = str(pattern.get("type"))
        patterns.append({bind: compiled})
        needs_params = needs_params or uses
    for index, pattern in enumerate(knowledge.unless):
        compiled, uses = compile_pattern(f"not{index}", pattern, rule, schema, binds)
        patterns.append({f"not{index}$not": compiled})
        needs_params = needs_params or uses
    if knowledge.unless:
        # Negation is only sound once every fact is in (pitfall 4): wait for the go fact.
        patterns.insert(0, {GO_BIND: {"type": "go"}})
    check_message(rule, schema, binds)
    check_links(rule, schema)
    if needs_params or _message_uses_params(rule):
        patterns.insert(0, {PARAMS_BIND: {"type": "parameters"}})
    if knowledge.derive is not None:
        for field, source in knowledge.derive.copy_fields.items():
            bind, _, source_field = source.partition(".")
            if bind not in binds or not source_field:
                raise RuleCheckError(f"derive.copy.{field}: {source!r} names no bound fact field")
    if knowledge.conclude is not None:
        if knowledge.conclude.card not in schema.card_kinds:
            raise RuleCheckError(f"unknown card kind {knowledge.conclude.card!r}")
        bind, dot, _ = knowledge.conclude.subject.partition(".")
        if dot and bind not in binds:
            raise RuleCheckError(f"conclude.subject {knowledge.conclude.subject!r} is unbound")
    return {"all": patterns}
