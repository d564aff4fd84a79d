"""The knowledge as CPG-on-FHIR resources in an NPM-style FHIR package.

* the CodeSystem and every ValueSet of ``rulesets/terminology/`` as shipped (expansions
  included);
* one PlanDefinition per rule (``type: eca-rule``): the trigger from the rule's ``evoke``
  hooks, the condition as text (the rule's logic in words) with a reference to the rule
  file, and an action with what the card says (its summary, the CDS Hooks indicator, the
  rule's card line) and the suggestion as an ActivityDefinition;
* one ActivityDefinition per suggestion of ``cards.yaml``;
* a Library for the ruleset: its version (digest) and content hash, every artifact above
  as a related artifact.

Each resource carries its rule's review state (``status``, ``approvalDate``, ``reviewer``
and a review-state extension) and is validated with fhir.resources before it is written:
R5 with its R5 models, R4 (4.0.1) with its R4B models, the nearest release fhir.resources
ships. The conditions are not executable: there is no CQL; the rule files are the logic.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from twitch_cds import __version__
from twitch_cds.card_text import summary_text
from twitch_cds.knowledge.bundle import CompiledRule, Knowledge
from twitch_cds.knowledge.cardtexts import SuggestionTexts
from twitch_cds.knowledge.reviews import RuleReview, rule_hash

FhirVersion = Literal["R4", "R5"]
CANONICAL = "https://twitch-cds.github.io/fhir"
EXTENSIONS = f"{CANONICAL}/StructureDefinition"
FHIR_VERSIONS: dict[FhirVersion, str] = {"R4": "4.0.1", "R5": "5.0.0"}
CORE_PACKAGES: dict[FhirVersion, str] = {"R4": "hl7.fhir.r4.core", "R5": "hl7.fhir.r5.core"}
PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
STATUS: dict[str, str] = {"research": "draft", "testing": "draft", "production": "active",
                          "expired": "retired"}
"""Arden's validation slot as a FHIR publication status."""
PRIORITY: dict[str, str] = {"critical": "urgent", "warning": "routine", "info": "routine"}
"""The CDS Hooks indicator as a request priority (the indicator itself is an extension)."""
RULE_LANGUAGE = "text/x-twitch-cds-rule+yaml"
"""The condition's language: a twitch-cds rule file, run by twitch-cds (not CQL)."""


class PackageError(ValueError):
    """A resource of the package does not validate; names the resource and the fault."""


def _validator(version: FhirVersion) -> Any:
    if version == "R5":
        from fhir.resources import get_fhir_model_class
    else:
        from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class


def validate(resource: Mapping[str, Any], version: FhirVersion) -> None:
    """Validate one resource with fhir.resources; ``PackageError`` names what fails."""
    model = _validator(version)(str(resource["resourceType"]))
    try:
        model.model_validate(dict(resource))
    except Exception as exc:  # pydantic's ValidationError, or a model's own check
        raise PackageError(f"{resource['resourceType']}/{resource.get('id')} ({version}): "
                           f"{exc}") from exc


def _review_extension(state: RuleReview) -> dict[str, Any]:
    return {"url": f"{EXTENSIONS}/review-state", "valueCode": state.state}


def _review_fields(compiled: CompiledRule, state: RuleReview) -> dict[str, Any]:
    """status, approvalDate, lastReviewDate and reviewer from the rule and its review."""
    maintenance = compiled.rule.maintenance
    out: dict[str, Any] = {"status": STATUS[maintenance.validation]}
    approved = state.current if state.state == "reviewed" else None
    if approved is not None:
        out["approvalDate"] = approved.date.isoformat()
        out["reviewer"] = [{"name": f"{approved.reviewer}, {approved.role}"}]
    if state.latest is not None:
        out["lastReviewDate"] = state.latest.date.isoformat()
    return out


def suggestion_title(suggestion: SuggestionTexts) -> str:
    """A suggestion's title in English: its label, or the tests it orders."""
    if suggestion.label is not None:
        return suggestion.label("en")
    return "Order " + ", ".join([*suggestion.tests, *suggestion.also])


def activity_definitions(knowledge: Knowledge) -> list[dict[str, Any]]:
    """One ActivityDefinition per suggestion of cards.yaml: the request its action creates
    (a procedure such as a referral, or tests): its standard code when it orders one thing,
    and its text."""
    out = []
    for key, suggestion in knowledge.cards.suggestions.items():
        title = suggestion_title(suggestion)
        text = suggestion.text("en") if suggestion.text is not None else title
        resource: dict[str, Any] = {
            "resourceType": "ActivityDefinition", "id": key,
            "url": f"{CANONICAL}/ActivityDefinition/{key}",
            "version": __version__, "name": _name(key), "title": title, "status": "draft",
            "publisher": "twitch-cds", "description": title, "kind": "ServiceRequest",
            "code": {**_order_code(knowledge, suggestion), "text": text}, "intent": "proposal",
        }
        if suggestion.priority is not None:
            resource["priority"] = suggestion.priority
        out.append(resource)
    return out


def _order_code(knowledge: Knowledge, suggestion: SuggestionTexts) -> dict[str, Any]:
    """The standard code (LOINC or SNOMED CT, from orders.yaml) of what the suggestion orders,
    when it orders one thing; pooled tests (several orders) are described by text alone."""
    orders = knowledge.orders
    if suggestion.procedure is not None:
        chosen = [orders.procedures[suggestion.procedure]]
    else:
        chosen = list(orders.plan([*suggestion.tests, *suggestion.also]))
    return {"coding": [chosen[0].coding.model_dump()]} if len(chosen) == 1 else {}


def _name(identifier: str) -> str:
    """A computer-friendly name (``red-flag-weakness`` -> ``RedFlagWeakness``)."""
    return "".join(part[:1].upper() + part[1:] for part in identifier.replace("_", "-")
                   .split("-") if part)


def _condition_text(compiled: CompiledRule, knowledge: Knowledge) -> str:
    """The rule's logic in words (the catalogue's wording, without its links)."""
    from twitch_cds.catalogue.logic import LogicWriter, say

    writer = LogicWriter(knowledge, "en", lambda kind, name: "")
    rule = compiled.rule
    text = say("en", "logic.all").striptags() + " " + "; ".join(
        writer.pattern(bind, pattern).striptags()
        for bind, pattern in rule.knowledge.when.items()) + "."
    if rule.knowledge.unless:
        text += " " + say("en", "logic.unless").striptags() + " " + "; ".join(
            writer.pattern(None, pattern).striptags() for pattern in rule.knowledge.unless)
        text += "."
    outcome = "; ".join(line.striptags() for line in writer.outcome(rule))
    return f"{text} Then {outcome}."


def plan_definition(compiled: CompiledRule, knowledge: Knowledge, state: RuleReview,
                    suggestions: Mapping[str, str], version: FhirVersion) -> dict[str, Any]:
    """One rule as an ECA-rule PlanDefinition (``action.code`` is a list in R4, one
    CodeableConcept in R5)."""
    rule = compiled.rule
    maintenance = rule.maintenance
    relative = compiled.path.relative_to(knowledge.directory.parent).as_posix() \
        if knowledge.directory.parent in compiled.path.parents else compiled.path.name
    action: dict[str, Any] = {
        "title": rule.library.title,
        "description": rule.knowledge.message.en,
        "trigger": [{"type": "named-event", "name": hook} for hook in rule.knowledge.evoke],
        "condition": [{"kind": "applicability", "expression": {
            "description": _condition_text(compiled, knowledge),
            "language": RULE_LANGUAGE,
            "reference": relative,
        }}],
        "documentation": [],
    }
    citation = rule.library.citation
    if citation is not None:  # a rule of general clinical knowledge cites no article sentence
        action["documentation"].append({"type": "citation", "display": citation.section,
                                        "citation": f"{citation.text} — {citation.gloss}"})
    source = rule.library.knowledge_source
    if source is not None:  # the rule follows this reference, not the article
        action["documentation"].insert(0, {
            "type": "justification",
            "display": f"{source.kind.replace('-', ' ')} (not from the article), {source.date}",
            "citation": source.reference})
    conclude = rule.knowledge.conclude
    if conclude is not None and rule.knowledge.urgency is not None:
        kind = knowledge.cards.kinds[conclude.card]
        subject = conclude.subject if conclude.subject in kind.subjects else None
        action["textEquivalent"] = summary_text(kind, [subject] if subject else [], "en")
        action["priority"] = PRIORITY[rule.knowledge.urgency]
        code = {"coding": [{"system": knowledge.cards.source.topic_system,
                            "code": conclude.card, "display": kind.display("en")}]}
        action["code"] = [code] if version == "R4" else code
        action["extension"] = [{"url": f"{EXTENSIONS}/cds-hooks-indicator",
                                "valueCode": rule.knowledge.urgency}]
        wanted = [*kind.suggestions, *([conclude.suggest] if conclude.suggest else [])]
        children = [{"title": suggestion_title(knowledge.cards.suggestions[key]),
                     "definitionCanonical": suggestions[key]}
                    for key in dict.fromkeys(wanted) if key in suggestions]
        if children:
            action["action"] = children
    elif rule.knowledge.derive is not None:
        action["textEquivalent"] = f"Derives the fact {rule.knowledge.derive.name} for other rules"
    resource: dict[str, Any] = {
        "resourceType": "PlanDefinition", "id": rule.id,
        "extension": [_review_extension(state),
                      {"url": f"{EXTENSIONS}/content-hash", "valueString": rule_hash(rule)}],
        "url": f"{CANONICAL}/PlanDefinition/{rule.id}",
        "version": maintenance.version, "name": _name(rule.id), "title": rule.library.title,
        "type": {"coding": [{"system": PLAN_TYPE, "code": "eca-rule"}]},
        **_review_fields(compiled, state),
        "experimental": maintenance.validation != "production",
        "date": maintenance.date.isoformat(), "publisher": maintenance.institution,
        "description": rule.library.explanation, "purpose": rule.library.purpose,
        "topic": [{"text": keyword} for keyword in rule.library.keywords],
        "author": [{"name": maintenance.author}],
        "relatedArtifact": [{"type": "depends-on", "display": link.label, "resource": link.url}
                            for link in rule.library.links],
        "library": [f"{CANONICAL}/Library/twitch-cds-ruleset"],
        "action": [action],
    }
    if not resource["relatedArtifact"]:
        del resource["relatedArtifact"]
    return resource


def _ruleset_hash(knowledge: Knowledge) -> str:
    digest = hashlib.sha256()
    for compiled in knowledge.rules:
        digest.update(rule_hash(compiled.rule).encode())
    return "sha256:" + digest.hexdigest()


def library(knowledge: Knowledge, artifacts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ruleset as a Library: version, content hash, and every artifact it is made of."""
    reviewed = sum(1 for c in knowledge.rules
                   if knowledge.reviews.of(c.rule).state == "reviewed")
    return {
        "resourceType": "Library", "id": "twitch-cds-ruleset",
        "extension": [{"url": f"{EXTENSIONS}/content-hash",
                       "valueString": _ruleset_hash(knowledge)}],
        "url": f"{CANONICAL}/Library/twitch-cds-ruleset",
        "identifier": [{"system": f"{CANONICAL}/ruleset-digest", "value": knowledge.version}],
        "version": knowledge.version, "name": "TwitchCdsRuleset",
        "title": "twitch-cds ruleset: leg-muscle twitching after walking",
        "status": "active" if reviewed == len(knowledge.rules) else "draft",
        "experimental": reviewed != len(knowledge.rules),
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "logic-library"}]},
        "publisher": "twitch-cds",
        "description": (f"{len(knowledge.rules)} rules ({reviewed} with an approving clinical "
                        "review of their current content). The logic is in the twitch-cds "
                        "rule files, run by twitch-cds (durable-rules); it is not CQL, and "
                        "the PlanDefinitions describe their conditions in text only."),
        "relatedArtifact": [{"type": "composed-of", "resource": str(a["url"])}
                            for a in artifacts],
        "content": [{"contentType": "application/yaml",
                     "title": "rulesets/rules/**/*.yaml (twitch-cds rule files)"}],
    }


@dataclass(frozen=True)
class FhirPackage:
    directory: Path
    """``OUT/package``."""
    tarball: Path
    resources: dict[str, int]
    """Resources written, by type."""


def _terminology(knowledge: Knowledge) -> list[dict[str, Any]]:
    """The CodeSystem and ValueSet resources of ``rulesets/terminology/`` (other JSON there,
    such as the RxNorm product table, is not a FHIR resource)."""
    folder = knowledge.directory / "terminology"
    found = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]
    return [_expanded(resource) for resource in found
            if resource.get("resourceType") in ("CodeSystem", "ValueSet")]


def _expanded(resource: dict[str, Any]) -> dict[str, Any]:
    """A ValueSet whose expansion lists every code its compose enumerates: the shipped
    expansion (which also lists codes of its is-a classes), plus any enumerated code it
    leaves out (the medication names of ``diuretic`` and ``estrogen``)."""
    if resource.get("resourceType") != "ValueSet":
        return resource
    expansion = dict(resource.get("expansion") or {})
    contains = list(expansion.get("contains", []))
    listed = {(c.get("system"), c.get("code")) for c in contains}
    for include in resource.get("compose", {}).get("include", []):
        for concept in include.get("concept", []):
            key = (include.get("system"), concept.get("code"))
            if key not in listed:
                listed.add(key)
                entry = {"system": key[0], "code": key[1]}
                if concept.get("display"):
                    entry["display"] = concept["display"]
                contains.append(entry)
    expansion.setdefault("timestamp", f"{resource.get('date', '2026-01-01')}T00:00:00Z")
    expansion["contains"] = contains
    return {**resource, "expansion": expansion}


def build_resources(knowledge: Knowledge, version: FhirVersion) -> list[dict[str, Any]]:
    """Every resource of the package, in one list (terminology first, the Library last)."""
    activities = activity_definitions(knowledge)
    canonical = {a["id"]: a["url"] for a in activities}
    plans = [plan_definition(c, knowledge, knowledge.reviews.of(c.rule), canonical, version)
             for c in knowledge.rules]
    terminology = _terminology(knowledge)
    artifacts = [*terminology, *activities, *plans]
    return [*artifacts, library(knowledge, artifacts)]


def write_fhir_package(out: Path, knowledge: Knowledge, version: FhirVersion = "R4") -> FhirPackage:
    """Validate every resource, then write ``OUT/package/`` and ``OUT/<name>-<ver>.tgz``."""
    resources = build_resources(knowledge, version)
    for resource in resources:
        validate(resource, version)
    name = f"twitch-cds.knowledge.{version.lower()}"
    manifest = {
        "name": name, "version": __version__,
        "description": "twitch-cds clinical knowledge (leg-muscle twitching after walking) "
                       "as CPG-on-FHIR resources: CodeSystem, ValueSets, PlanDefinitions, "
                       "ActivityDefinitions and a Library. Conditions are text, not CQL.",
        "canonical": CANONICAL, "fhirVersions": [FHIR_VERSIONS[version]],
        "dependencies": {CORE_PACKAGES[version]: FHIR_VERSIONS[version]},
        "author": "twitch-cds", "license": "Apache-2.0", "type": "fhir.ig",
    }
    files: dict[str, bytes] = {"package.json": _json(manifest)}
    index = []
    counts: dict[str, int] = {}
    for resource in resources:
        kind = str(resource["resourceType"])
        filename = f"{kind}-{resource['id']}.json"
        files[filename] = _json(resource)
        counts[kind] = counts.get(kind, 0) + 1
        index.append({"filename": filename, "resourceType": kind, "id": resource["id"],
                      "url": resource.get("url"), "version": resource.get("version")})
    files[".index.json"] = _json({"index-version": 1, "files": index})
    package = out / "package"
    if package.exists():
        for old in package.glob("*.json"):
            old.unlink()
        for old in package.glob(".index.json"):
            old.unlink()
    package.mkdir(parents=True, exist_ok=True)
    for filename, data in files.items():
        (package / filename).write_bytes(data)
    tarball = out / f"{name}-{__version__}.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for filename, data in sorted(files.items()):
            info = tarfile.TarInfo(f"package/{filename}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return FhirPackage(package, tarball, counts)


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
