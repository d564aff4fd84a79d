"""Value-set membership from the FHIR ValueSets in ``rulesets/terminology/``.

Look-ups are by ``(system, code)`` in a dict (O(1)); ``is-a`` filters on ICD-10-CM, WHO
ICD-10, ICD-11 MMS and ATC are code-prefix matches; a member marked as a broader code (WHO
ICD-10 has no code as narrow as the concept) matches as ``broader``, which cards report;
medication names (display and designations) are the last resort and are reported as such.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twitch_cds.errors import RulesetError
from twitch_cds.knowledge.products import PRODUCTS_FILE, ProductTable, load_products

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10WHO = "http://hl7.org/fhir/sid/icd-10"
"""WHO ICD-10, as FHIR names it (SATUSEHAT and most countries code diagnoses in it)."""
ICD11MMS = "http://id.who.int/icd/release/11/mms"
ATC = "http://www.whocc.no/atc"
ICD10_SYSTEMS = frozenset({ICD10CM, ICD10WHO})
"""ICD-10 and its clinical modification: a letter, two digits, then the subdivision after a
dot that senders often leave out (``R253`` is ``R25.3``)."""
PREFIX_SYSTEMS = frozenset({ICD10CM, ICD10WHO, ICD11MMS, ATC})
"""Code systems whose ``is-a`` hierarchy is spelled by the code's prefix."""
BROADER_CODE = "https://twitch-cds.github.io/fhir/StructureDefinition/broader-code"
"""Extension on a value-set member: a code broader than the concept that still counts for
it, with the reason (``valueString``); it matches as ``broader`` and cards say so."""
_ICD10_MARKS = "\u2020*+!"
"""WHO ICD-10's dagger, asterisk and their ASCII stand-ins, which some senders append."""
VALUESET_URL = "https://twitch-cds.github.io/fhir/ValueSet/"
MEDICATION_NAME_SYSTEM = "https://twitch-cds.github.io/fhir/CodeSystem/medication-name"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DRUG_SYSTEMS = frozenset({RXNORM, ATC, MEDICATION_NAME_SYSTEM})
"""Systems whose concept displays are drug names, matched in free text as a last resort."""
MAX_CODE_LENGTH = 100
"""Longer than any code of any code system twitch-cds reads (technical bound, not clinical):
a longer "code" matches nothing, so a giant code costs no more than a short one."""
MAX_TEXT_LENGTH = 2000
"""Characters of free text searched for names (a name further in is not looked for)."""


def _normalise_code(system: str, code: str) -> str:
    code = code.strip()
    if system in ICD10_SYSTEMS:
        code = code.rstrip(_ICD10_MARKS).upper() if system == ICD10WHO else code.upper()
        if len(code) > 3 and "." not in code:
            code = f"{code[:3]}.{code[3:]}"
    elif system == ICD11MMS:  # a postcoordinated cluster is read by its first stem code
        code = re.split(r"[&/]", code, maxsplit=1)[0].upper()
    elif system == ATC:
        code = code.upper()
    return code


@dataclass(frozen=True)
class Match:
    """A value-set hit: which set, and how (``code``, ``class`` prefix, ``broader`` code, or
    ``name`` text)."""

    valueset: str
    method: str
    matched: str


LOOKUP_MEMORY = 100_000
"""Codings whose look-up is remembered (then forgotten all at once): a technical bound."""


@dataclass
class Terminology:
    """Every value set, indexed for the per-resource hot path."""

    titles: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    """Each value set's canonical URL, by id: what rule files link to."""
    displays: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    """Our CodeSystem's displays per language (``designation`` for ``id``): evidence lines
    show our own codes in the card's language."""
    _own_words: dict[str, dict[tuple[str, str], tuple[str, str]]] = field(default_factory=dict)
    _exact: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    _prefix: dict[str, dict[str, list[str]]] = field(default_factory=lambda: defaultdict(dict))
    _names: dict[str, re.Pattern[str]] = field(default_factory=dict)
    _words: dict[str, re.Pattern[str]] = field(default_factory=dict)
    _systems_by_code: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _broader: set[tuple[str, str, str]] = field(default_factory=set)
    """``(system, code, value set)`` of the members marked as broader codes."""
    _broader_names: dict[tuple[str, str], str] = field(default_factory=dict)
    _looked_up: dict[tuple[str, str], tuple[Match, ...]] = field(default_factory=dict)
    _worded: dict[tuple[str, frozenset[str]], tuple[Match, ...]] = field(default_factory=dict)
    products: ProductTable = field(default_factory=lambda: ProductTable())
    _known_systems: frozenset[str] | None = None
    """RxNorm products and packs (rxnorm-products.json): names, and those of no class."""

    def add_displays(self, codesystem: dict[str, Any]) -> None:
        """Each concept's display (English) and its designations by language."""
        system = codesystem["url"]
        pending = list(codesystem.get("concept") or ())
        while pending:
            concept = pending.pop()
            pending += concept.get("concept") or ()
            key = (system, concept["code"])
            self.displays.setdefault("en", {})[key] = concept["display"]
            for designation in concept.get("designation") or ():
                self.displays.setdefault(designation["language"], {})[key] = designation["value"]

    def own_words(self, lang: str) -> dict[tuple[str, str], tuple[str, str]]:
        """Our codes' (English display, display in ``lang``), for codes with a ``lang``
        designation."""
        found = self._own_words.get(lang)
        if found is None:
            english = self.displays.get("en", {})
            found = self._own_words[lang] = {
                key: (english[key], local)
                for key, local in self.displays.get(lang, {}).items() if key in english}
        return found

    def lookup(self, system: str | None, code: str | None) -> tuple[Match, ...]:
        """Value sets holding this coding, by exact code or by class prefix (remembered: a
        chart repeats the same few codes hundreds of times)."""
        if not system or not code or len(code) > MAX_CODE_LENGTH:
            return ()
        key = (system, code)
        found = self._looked_up.get(key)
        if found is None:
            if len(self._looked_up) >= LOOKUP_MEMORY:
                self._looked_up.clear()  # bounded, whatever codes arrive
            found = self._looked_up[key] = tuple(self._lookup(system, code))
        return found

    def _lookup(self, system: str, code: str) -> list[Match]:
        code = _normalise_code(system, code)
        hits = [Match(vs, "broader" if (system, code, vs) in self._broader else "code",
                      f"{system}|{code}") for vs in self._exact.get((system, code), ())]
        prefixes = self._prefix.get(system)
        if prefixes:
            for end in self._prefix_lengths(system, len(code)):
                for vs in prefixes.get(code[:end], ()):
                    if all(h.valueset != vs for h in hits):
                        hits.append(Match(vs, "class", f"{system}|{code} is-a {code[:end]}"))
        return hits

    def _prefix_lengths(self, system: str, longest: int) -> list[int]:
        """The lengths of this system's is-a prefixes, longest first, up to ``longest``."""
        lengths = sorted({len(p) for p in self._prefix.get(system, ())}, reverse=True)
        return [n for n in lengths if n <= longest]

    def broader_name(self, matched: Match, text: str = "") -> str:
        """What a broader code means in its own classification (``M62.8 Other specified
        disorders of muscle``; only the code when ``text`` already says it): a card must not
        say the record holds the narrower concept."""
        system, _, code = matched.matched.partition("|")
        name = self._broader_names.get((system, code), code)
        return code if name == code or name.lower() in text.lower() else f"{code} {name}"

    def systems_for_code(self, code: str | None) -> set[str]:
        """The systems in whose value sets this code appears (for a coding with no system)."""
        if not code or len(code) > MAX_CODE_LENGTH:
            return set()
        return set(self._systems_by_code.get(code.strip(), ()))

    def lookup_words(self, text: str | None, valuesets: Iterable[str]) -> list[Match]:
        """Value sets whose concept displays occur, as whole words, in free text (to report
        a finding given only as text; never used as a finding)."""
        if not text:
            return []
        text = text[:MAX_TEXT_LENGTH]
        wanted = valuesets if isinstance(valuesets, frozenset) else frozenset(valuesets)
        key = (text, wanted)
        found = self._worded.get(key)
        if found is None:  # remembered: a chart repeats the same few texts hundreds of times
            if len(self._worded) >= LOOKUP_MEMORY:
                self._worded.clear()  # bounded, whatever texts arrive
            found = self._worded[key] = tuple(self._words_in(text, valuesets))
        return list(found)

    def _words_in(self, text: str, valuesets: Iterable[str]) -> Iterator[Match]:
        for vs in valuesets:
            pattern = self._words.get(vs)
            found = pattern.search(text) if pattern else None
            if found:
                yield Match(vs, "text", found.group(0))

    def codes(self, valuesets: Iterable[str]) -> list[tuple[str, str]]:
        """Every explicit ``(system, code)`` in these value sets (is-a classes excluded)."""
        wanted = set(valuesets)
        return sorted(pair for pair, sets in self._exact.items() if wanted.intersection(sets))

    def classes(self, valuesets: Iterable[str]) -> list[tuple[str, str]]:
        """Every is-a class ``(system, code prefix)`` in these value sets (ICD, ATC)."""
        wanted = set(valuesets)
        return sorted((system, prefix) for system, prefixes in self._prefix.items()
                      for prefix, sets in prefixes.items() if wanted.intersection(sets))

    def lookup_name(self, text: str | None, valuesets: Iterable[str] | None = None) -> list[Match]:
        """Value sets whose medication names occur, as whole words, in free text."""
        if not text:
            return []
        text = text[:MAX_TEXT_LENGTH]
        hits = []
        for vs, pattern in self._names.items():
            if valuesets is not None and vs not in valuesets:
                continue
            found = pattern.search(text)
            if found:
                hits.append(Match(vs, "name", found.group(0)))
        return hits

    def add_valueset(self, resource: dict[str, Any], origin: str) -> None:
        key = resource.get("id")
        if not key or resource.get("resourceType") != "ValueSet":
            raise RulesetError(f"{origin}: not a ValueSet with an id")
        if key in self.titles:
            raise RulesetError(f"{origin}: duplicate value set id {key!r}")
        self.titles[key] = resource.get("title") or key
        self._known_systems = None
        self.urls[key] = resource.get("url") or key
        names: list[str] = []
        words: list[str] = []
        for include in resource.get("compose", {}).get("include", []):
            system = include.get("system")
            if not system:
                raise RulesetError(f"{origin}: compose.include without a system")
            for concept in include.get("concept", []):
                synonyms = [d["value"] for d in concept.get("designation", []) if d.get("value")]
                if system != MEDICATION_NAME_SYSTEM:
                    code = _normalise_code(system, concept["code"])
                    self._exact[(system, code)].append(key)
                    if any(e.get("url") == BROADER_CODE for e in concept.get("extension", [])):
                        self._broader.add((system, code, key))
                        self._broader_names[(system, code)] = concept.get("display") or code
                    self._systems_by_code[concept["code"].strip()].add(system)
                    words.extend([concept.get("display") or "", *synonyms])
                if system in DRUG_SYSTEMS or synonyms:
                    names.extend([concept.get("display") or concept["code"], *synonyms])
            for flt in include.get("filter", []):
                if flt.get("op") != "is-a" or system not in PREFIX_SYSTEMS:
                    raise RulesetError(
                        f"{origin}: only is-a filters on ICD-10-CM, WHO ICD-10, ICD-11 or ATC "
                        "are supported, "
                        f"got {flt.get('op')!r} on {system}"
                    )
                value = _normalise_code(system, flt["value"])
                self._prefix[system].setdefault(value, []).append(key)
        for entry in resource.get("expansion", {}).get("contains", []):
            pair = (entry["system"], _normalise_code(entry["system"], entry["code"]))
            if entry["system"] != MEDICATION_NAME_SYSTEM and key not in self._exact.get(pair, ()):
                self._exact[pair].append(key)
                self._systems_by_code[entry["code"].strip()].add(entry["system"])
                if any(e.get("url") == BROADER_CODE for e in entry.get("extension", [])):
                    self._broader.add((*pair, key))
        if words:
            self._words[key] = _whole_words(words)
        if names:
            self._names[key] = _whole_words(names)


    def add_products(self, table: ProductTable) -> None:
        """Index each RxNorm product under the value sets of the classes its ingredients
        belong to, so that a product code alone is a ``code`` match (O(1), like any code)."""
        self.products = table
        self._known_systems = None
        for code, classes in table.classes.items():
            pair = (table.system, code)
            for vs in classes:
                if vs not in self._exact.get(pair, ()):
                    self._exact[pair].append(vs)
            self._systems_by_code[code].add(table.system)

    def known_systems(self) -> frozenset[str]:
        """The code systems some value set or table of ours holds codes of (worked out
        once: asked for every diagnosis the value sets do not hold)."""
        if self._known_systems is None:
            self._known_systems = frozenset(
                {system for system, _ in self._exact} | set(self._prefix)
                | {self.products.system})
        return self._known_systems


def _whole_words(phrases: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({p.strip().lower() for p in phrases if p.strip()}, key=len)
    body = "|".join(re.escape(p).replace(r"\ ", r"[\s-]+") for p in reversed(alternatives))
    return re.compile(rf"(?<![A-Za-z])(?:{body})(?![A-Za-z])", re.IGNORECASE)


def load_terminology(directory: Path) -> Terminology:
    terminology = Terminology()
    files = sorted(directory.glob("valueset-*.json"))
    if not files:
        raise RulesetError(f"{directory}: no valueset-*.json files")
    for path in files:
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RulesetError(f"{path}: cannot be read as JSON: {exc}") from exc
        terminology.add_valueset(resource, str(path))
    products = directory / PRODUCTS_FILE
    if products.exists():  # after the value sets: a product never repeats their match
        terminology.add_products(load_products(products))
    for path in sorted(directory.glob("codesystem-*.json")):
        terminology.add_displays(json.loads(path.read_text(encoding="utf-8")))
    return terminology
