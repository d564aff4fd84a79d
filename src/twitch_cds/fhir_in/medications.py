"""Medications: current exposures (and draft orders) to the drug classes the article names."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Literal

from twitch_cds.facts import Evidence, Medication
from twitch_cds.fhir_in.coding import codings, concept_text, first_code, preview, reference
from twitch_cds.fhir_in.context import ReaderContext, date_text
from twitch_cds.fhir_in.dates import days_between
from twitch_cds.fhir_in.reader import DRAFT_ORDERS
from twitch_cds.fhir_in.validate import Validated
from twitch_cds.issues import InputIssue, msg
from twitch_cds.knowledge.terminology import ATC, Match, Terminology


class MedicationReader(ReaderContext):
    """Drug classes by ingredient code, ATC class, or name; statuses and recency checked."""

    # -- medications ---------------------------------------------------------------------
    def _medication_statement(self, v: Validated) -> None:
        self._medication(v, self.k.trust.medication_statement, "MedicationStatement",
                         ("effectivePeriod.end", "effectiveDateTime", "dateAsserted"))

    def _medication_dispense(self, v: Validated) -> None:
        """A dispense (SATUSEHAT sends them from pharmacies): the drug was handed over."""
        self._medication(v, self.k.trust.medication_dispense, "MedicationDispense",
                         ("whenHandedOver", "whenPrepared"))

    def _medication_request(self, v: Validated) -> None:
        if v.data.get("doNotPerform") is True:
            return
        self._medication(v, self.k.trust.medication_request, "MedicationRequest",
                         ("dispenseRequest.validityPeriod.end", "authoredOn"))

    def _medication_concepts(self, v: Validated) -> tuple[list[Any], list[Any]]:
        """The drug's CodeableConcepts, inline or from the referenced Medication resource, and
        that Medication's dose form (R4 ``form``, R5 ``doseForm``: tells how it is taken)."""
        data = v.data
        forms: list[Any] = []
        r5: dict[str, Any] = data["medication"] if isinstance(
            data.get("medication"), dict) else {}
        concepts = [data.get("medicationCodeableConcept"), r5.get("concept")]
        ref = reference(data.get("medicationReference")) or reference(r5.get("reference"))
        if ref:
            medication = None
            if ref.startswith("#"):
                medication = next((c for c in data.get("contained") or ()
                                   if isinstance(c, dict) and c.get("id") == ref[1:]), None)
            else:
                medication = self._by_ref.get(ref)
            if medication is None:
                self.issue("warning", v.raw.label, "medication.reference",
                           msg("medication-unresolved", reference=preview(ref)),
                           "value-not-used", "reference-unresolved")
            else:
                concepts.append(medication.get("code"))
                forms += [medication.get("form"), medication.get("doseForm")]
                for ingredient in medication.get("ingredient") or ():
                    if isinstance(ingredient, dict):
                        item = ingredient.get("item")
                        concepts.append(ingredient.get("itemCodeableConcept"))
                        if isinstance(item, dict):
                            concepts.append(item.get("concept"))
        return ([c for c in concepts if isinstance(c, dict)],
                [f for f in forms if isinstance(f, dict)])

    def _medication(self, v: Validated, trust: Any, source: Any,
                    end_paths: tuple[str, ...]) -> None:
        concepts, forms = self._medication_concepts(v)
        classes: dict[str, Match] = {}
        for concept in concepts:
            for vs, match in self._classify(concept).items():
                if vs in self.k.concepts.drug_classes:
                    classes.setdefault(vs, match)
        text = " | ".join(t for c in concepts if (t := concept_text(c)))
        if not classes:
            for match in self.k.terminology.lookup_name(text, self.k.concepts.drug_classes):
                classes.setdefault(match.valueset, match)
        if not classes:
            self._unplaced(v, concepts, text, source)
            return
        products = " | ".join(dict.fromkeys(
            n for c in concepts for system, code, _ in codings(c)
            if (n := self.k.terminology.products.name(system, code))))
        status = v.data.get("status")
        ended = self._when(v, *end_paths)
        proposed = v.raw.origin.startswith(DRAFT_ORDERS) and status in trust.proposed
        if proposed:
            pass  # the order being written now (CDS Hooks order-select / order-sign)
        elif status in trust.not_current or (status not in trust.current
                                             and status not in trust.recent):
            if status is None:
                self.supersede(v, "status")
            self.issue("information" if status in trust.not_current else "warning",
                       v.raw.label, "status", msg("medication-status-missing") if status is None
                       else msg("medication-status", status=preview(status)),
                       "ignored", "status-unusable")
            return
        taken = v.data.get("adherence")
        adherence = first_code(taken.get("code")) if isinstance(taken, dict) else None
        if adherence in trust.adherence_not_taking:
            self.issue("information", v.raw.label, "adherence.code",
                       msg("adherence", adherence=preview(adherence)), "ignored",
                       "status-unusable")
            return
        period_end = self._when(v, end_paths[0])
        recent_only = not proposed and (
            status in trust.recent or (period_end is not None and period_end < self.now))
        if recent_only:
            if ended is None:
                self.issue("information", v.raw.label, "effective[x]",
                           msg("medication-date-missing", status=str(status)), "ignored",
                           "date-missing")
                return
            if days_between(ended, self.now) > self.p["medication_recent_days"]:
                self.issue("information", v.raw.label, "effective[x]",
                           msg("medication-stale", date=str(date_text(ended)),
                               days=self.p["medication_recent_days"]), "ignored", "stale")
                return
        dosages = [d for d in v.data.get("dosage") or v.data.get("dosageInstruction") or ()
                   if isinstance(d, dict)]
        read: list[tuple[str, str, set[str]]] = []

        def route_words() -> tuple[str, str, set[str]]:  # read once, when a class asks
            if not read:
                read.append(_route_words(forms, dosages))
            return read[0]

        name = text.split(" | ")[0] if text else products.split(" | ")[0] if products else (
            classes[next(iter(classes))].matched)
        for drug_class, match in classes.items():
            route = self._route_known(v, drug_class, [*concepts, *forms],
                                      f"{text} | {products}", route_words)
            if route is None:
                continue
            detail = f"{name} ({status}"
            if recent_only and ended:
                when = "handed_over" if source == "MedicationDispense" else "ended"
                detail += f", {self.word(when)} {date_text(ended)}"
            detail += ")"
            fact = Medication(id=f"{v.raw.label}#{drug_class}", drug_class=drug_class,
                              source=source, status=str(status), proposed=proposed,
                              match=match.method,  # type: ignore[arg-type]
                              route_known=route)
            self.add(fact, Evidence(reference=v.raw.label, text=detail, match=match.method,
                                    date=date_text(ended)))

    def _unplaced(self, v: Validated, concepts: list[Any], text: str, source: str) -> None:
        """Report a current drug the terminology cannot place at all: never a silent drop.

        Placed means in a drug class (handled by the caller) or known to be of none (a
        product or ingredient name in rxnorm-products.json ``not_relevant``)."""
        trust = self._trust_of(source)
        status = v.data.get("status")
        current = status in trust.current or (
            v.raw.origin.startswith(DRAFT_ORDERS) and status in trust.proposed)
        if not current or (not concepts and any(  # its drug is in a Medication not sent
                i.code == "reference-unresolved" and i.resource == v.raw.label
                for i in self.out.issues)):
            return
        unplaced = unplaced_codings(self.k.terminology, concepts, text)
        if unplaced is not None:
            self.out.issues.append(unclassified_medication(v.raw.label, unplaced, text))

    def _trust_of(self, source: str) -> Any:
        return {"MedicationStatement": self.k.trust.medication_statement,
                "MedicationRequest": self.k.trust.medication_request,
                "MedicationDispense": self.k.trust.medication_dispense}[source]

    def _route_known(self, v: Validated, drug_class: str, concepts: list[Any], named: str,
                     route_words: Callable[[], tuple[str, str, set[str]]],
                     ) -> Literal["systemic", "unknown"] | None:
        """Whether the exposure is systemic, of unknown route, or (None) not systemic at all.

        Only classes listed in rulesets/trust.yaml ``non_systemic`` are asked: every other
        class's value set holds drugs for systemic use only. An ATC code of the class itself
        (H02) is systemic by definition, and so is an ingredient with no local-use form
        (prednisone) or a dose form taken by mouth or injected (trust.yaml
        ``systemic_valueset``, codes of the product, ingredient or Medication.form, or the
        ingredient's name); an ATC code in the local-use value set (D07, S01BA,
        R03BA, ...) is not, whatever the text says; then a coded dosage route (SATUSEHAT's
        ATC/DDD route codes, SNOMED CT routes: trust.yaml); then words in the product text
        (the RxNorm product name too, for a code sent alone), its form or its route decide;
        with none, the route is unknown and the exposure is kept. The free-text dosage
        instructions (``sig``) may only say systemic ("1 tablet by mouth"): a free-text
        aside never drops a possible cause.

        ``named`` is the drug's text and RxNorm product names; ``route_words`` gives the
        route's words (forms and dosage routes), the dosage instructions and the coded
        routes, read only when a class asks how the drug is taken.
        """
        rule = self.k.trust.non_systemic.get(drug_class)
        if rule is None or _atc_in(self, concepts, drug_class) or _systemic_code(
                self, concepts, rule.systemic_valueset):
            return "systemic"
        routes, sig, coded = route_words()
        text = f"{named} | {routes}"
        if rule.systemic_valueset is not None and self.k.terminology.lookup_name(
                text, (rule.systemic_valueset,)):
            return "systemic"  # the ingredient's name (prednisone)
        local = _atc_in(self, concepts, rule.valueset) if rule.valueset else None
        local_route = None if local else next(iter(sorted(coded & rule.local_routes)), None)
        if local_route:
            self.issue("information", v.raw.label, "dosage.route",
                       msg("not-systemic-route", drug_class=drug_class, code=local_route),
                       "ignored", "not-systemic")
            return None
        if coded & rule.systemic_routes:
            return "systemic"
        found = None if local else _words_pattern(tuple(rule.words)).search(text)
        if local or found:
            self.issue("information", v.raw.label, "medication",
                       msg("not-systemic-atc", drug_class=drug_class, code=local) if local
                       else msg("not-systemic", drug_class=drug_class,
                                word=found.group(1) if found else ""),
                       "ignored", "not-systemic")
            return None
        if _words_pattern(tuple(rule.systemic_words)).search(f"{text} | {sig}"):
            return "systemic"
        return "unknown"


def _route_words(forms: list[Any], dosages: list[dict[str, Any]]) -> tuple[str, str, set[str]]:
    """How the drug is taken, as the record says it: the dose forms' and dosage routes'
    words, the free-text instructions, and the coded routes (``system|code``)."""
    routes = " | ".join([*(concept_text(f) for f in forms),
                         *(concept_text(d.get("route")) for d in dosages)])
    sig = " | ".join(t for d in dosages for t in (d.get("text"), d.get("patientInstruction"))
                     if isinstance(t, str))
    route_codes = {f"{system}|{code}" for d in dosages
                   for system, code, _ in codings(d.get("route")) if system and code}
    return routes, sig, route_codes


MAX_UNPLACED_SHOWN = 3
"""Codings named in one unclassified-medication issue (the rest are counted)."""


def unplaced_codings(terminology: Terminology, concepts: list[Any],
                     text: str) -> list[str] | None:
    """``None`` when the drug is placed (a class, or known to be of none); else the codings
    (``system|code``) it could not place, empty when it had only words."""
    products = terminology.products
    unplaced = []
    for concept in concepts:
        for system, code, _ in codings(concept):
            if products.is_not_relevant(system, code) or terminology.lookup(system, code):
                return None
            if code:
                unplaced.append(f"{system or '?'}|{code}")
    names = " | ".join([text, *(n for c in concepts for s, k, _ in codings(c)
                                if (n := products.name(s, k)))])
    return None if products.names_not_relevant(names) else unplaced


def unclassified_medication(resource: str, unplaced: list[str], text: str) -> InputIssue:
    shown = ", ".join(unplaced[:MAX_UNPLACED_SHOWN]) + (
        f" (+{len(unplaced) - MAX_UNPLACED_SHOWN})" if len(unplaced) > MAX_UNPLACED_SHOWN else "")
    words = (msg("unclassified-medication", codings=shown, text=preview(text or "")) if unplaced
             else msg("unclassified-medication.text", text=preview(text or "")))
    return InputIssue(severity="warning", resource=resource, path="medication",
                      action="ignored", code="unclassified-medication", **words)


def _atc_in(reader: ReaderContext, concepts: list[Any], valueset: str) -> str | None:
    """The first ATC code among the drug's codings that falls in this value set."""
    for concept in concepts:
        for system, code, _ in codings(concept):
            if system == ATC and any(m.valueset == valueset
                                     for m in reader.k.terminology.lookup(system, code)):
                return code
    return None


@functools.lru_cache(maxsize=64)
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of the words, whole (or plural in -s), in any case (compiled once per word list):
    "gel" is not "gelatin", "ear" is not "early"."""
    if not words:
        return re.compile(r"(?!)")  # matches nothing
    body = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words)
    return re.compile(rf"\b({body})s?\b", re.I)


def _systemic_code(reader: ReaderContext, concepts: list[Any], valueset: str | None) -> bool:
    """Whether a code of the product, its ingredient or its dose form is in the value set of
    corticosteroids that are systemic whatever the record says of the route (trust.yaml
    ``systemic_valueset``: prednisone has no local-use form; a tablet is taken by mouth);
    the ingredient's name is asked next, by the caller."""
    if valueset is None:
        return False
    terminology = reader.k.terminology
    return any(m.valueset == valueset for concept in concepts
               for system, code, _ in codings(concept) for m in terminology.lookup(system, code))
