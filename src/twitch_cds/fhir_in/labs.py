"""Measurements: electrolyte results and daily intakes, in each one's canonical unit."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from twitch_cds.facts import Evidence, Intake, Lab
from twitch_cds.fhir_in.coding import codings, first_code, number, preview
from twitch_cds.fhir_in.context import ReaderContext, date_text, fmt
from twitch_cds.fhir_in.dates import days_between, parse_fhir_datetime
from twitch_cds.fhir_in.validate import Validated
from twitch_cds.issues import msg
from twitch_cds.knowledge.measurements import Measurement
from twitch_cds.knowledge.terminology import Match


class Reading(NamedTuple):
    """A measured value: in the canonical unit, as the source wrote it, and the factor (a
    tuple: a lab result makes three of them)."""

    value: float
    raw: float
    unit: str
    factor: float

    @property
    def text(self) -> str:
        return f"{fmt(self.raw)} {self.unit}"


class Limits(NamedTuple):
    """A measurement's parameters for this call, looked up once (a chart has many results
    of the same analyte): plausible, default and critical limits, and its name."""

    plausible_low: float | None
    plausible_high: float | None
    default_low: float
    default_high: float
    critical_low: float | None
    critical_high: float | None
    display: str


def _lower(m: Measurement) -> dict[str, str]:
    """The analyte's name in running text, in each language (an issue placeholder)."""
    return {"en": m.display.en.lower(), "id": m.display.id.lower()}


def _years(age_range: Any, end: str) -> float | None:
    """``referenceRange.age.low`` or ``.high`` in years (FHIR Range of Age)."""
    bound = age_range.get(end) if isinstance(age_range, dict) else None
    return number(bound.get("value")) if isinstance(bound, dict) else None


class LabReader(ReaderContext):
    """Lab results and intakes: units checked and converted, ranges and flags kept."""

    # -- labs ----------------------------------------------------------------------------
    def _quantity(self, v: Validated, m: Measurement, path: str,
                  quantity: Any) -> Reading | None:
        """A Quantity read in the measurement's canonical unit, or None (reported)."""
        if not isinstance(quantity, dict):
            return None
        value = number(quantity.get("value"))
        if value is None:
            self.issue("error", v.raw.label, f"{path}.value",
                       msg("quantity-not-number", value=preview(quantity.get("value"))),
                       "value-not-used", "value-unreadable" if "value" in quantity
                       else "value-missing")
            return None
        code, unit = quantity.get("code"), quantity.get("unit")
        spelled = code or unit
        if not isinstance(spelled, str) or not spelled.strip():
            self.issue("error", v.raw.label, f"{path}.unit",
                       msg("unit-missing", value=value, unit=m.unit), "value-not-used",
                       "unit-missing")
            return None
        factor = self._factor(m, spelled)
        written = isinstance(unit, str)
        if factor is None and isinstance(unit, str):
            factor = self._factor(m, unit)
        if factor is None:
            field = "code" if code else "unit"
            self.issue("error", v.raw.label, f"{path}.{field}",
                       msg("unit-unknown", unit=preview(spelled), analyte=_lower(m),
                           accepted=", ".join(m.units)),
                       "value-not-used", "unit-unknown")
            return None
        shown = unit if written else spelled
        converted = value * factor
        low, high = self._limits(m)[:2]  # plausible
        if (low is not None and converted < low) or (high is not None and converted > high):
            self.issue("error", v.raw.label, f"{path}.value",
                       msg("lab-implausible", value=value, unit=preview(shown), analyte=_lower(m),
                           low=low or 0, high=high or 0, canonical=m.unit), "value-not-used",
                       "implausible-value")
            return None
        return Reading(converted, value, str(shown), factor)

    def _factor(self, m: Measurement, unit: str) -> float | None:
        """The factor to the measurement's canonical unit from a unit as written, or None
        when not accepted (remembered for this call: a chart repeats the same units)."""
        key = (id(m), unit)
        if key in self._factors:
            return self._factors[key]
        factor = self._factors[key] = m.factor(self.k.measurements.canonical_unit(unit), self.p)
        return factor

    def _limits(self, m: Measurement) -> Limits:
        found: Limits | None = self._measured.get(id(m))
        if found is None:
            p = self.p
            found = self._measured[id(m)] = Limits(
                p[m.plausible_low] if m.plausible_low else None,
                p[m.plausible_high] if m.plausible_high else None,
                p[m.default_low] if m.default_low else 0.0,
                p[m.default_high] if m.default_high else 0.0,
                p[m.critical_low] if m.critical_low else None,
                p[m.critical_high] if m.critical_high else None,
                m.display(self.lang))
        return found

    def _lab(self, v: Validated, analyte: str, m: Measurement, when: dt.datetime | None,
             match: Match) -> None:
        if v.data.get("valueQuantity") is None:
            reason = first_code(v.data.get("dataAbsentReason"))
            self.issue("information" if reason else "error", v.raw.label, "valueQuantity",
                       msg("lab-absent-reason", reason=preview(reason)) if reason
                       else msg("lab-no-quantity"), "value-not-used", "value-missing")
            return
        reading = self._quantity(v, m, "valueQuantity", v.data["valueQuantity"])
        if reading is None:
            self._flag_only(v, analyte, m, when, match)
            return
        if when is None:
            self.issue("error", v.raw.label, "effective[x]",
                       msg("lab-date-missing"), "value-not-used",
                       "date-missing")
            return
        age = days_between(when, self.now)
        if age > self.p["lab_stale_days"]:
            self.issue("information", v.raw.label, "effective[x]",
                       msg("lab-stale", date=str(date_text(when)), days=self.p["lab_stale_days"]),
                       "ignored", "stale")
            return
        low, high, range_text = self._reference_range(v, m)
        interpretation = self._interpretation(v)
        value = reading.value
        limits = self._limits(m)
        shown = f"{limits.display} {reading.text}"
        if reading.factor != 1:
            shown += f" (= {value:.2f} {m.unit})"
        default_low, default_high = limits.default_low, limits.default_high
        flag = f"; {self.word('flagged', code=interpretation)}" if interpretation else ""
        if range_text:  # the lab's flag stays beside its range: LL is not just "low"
            shown += f" ({self.word('lab_range')} {range_text}{flag})"
        elif interpretation:
            shown += f" ({self.word('flagged', code=interpretation)})"
        else:
            shown += f" ({self.word('default_range')} {fmt(default_low)}–{fmt(default_high)}" \
                     f" {m.unit})"
        shown += f", {date_text(when)}"
        fact = Lab(id=f"{v.raw.label}#{analyte}", analyte=analyte, value=value, unit=m.unit,
                   range_low=low, range_high=high, interpretation=interpretation,
                   default_low=default_low, default_high=default_high,
                   critical_low=limits.critical_low, critical_high=limits.critical_high,
                   age_days=age)
        self.add(fact, Evidence(reference=v.raw.label, text=shown, match=match.method,
                                date=date_text(when)))

    def _flag_only(self, v: Validated, analyte: str, m: Measurement,
                   when: dt.datetime | None, match: Match) -> None:
        """A result whose value cannot be used (unit unknown, implausible) still counts by the
        lab's own low or high flag, which the lab set knowing its unit; the fact carries no
        value at all."""
        interpretation = self._interpretation(v)
        trust = self.k.trust.interpretation
        if interpretation not in trust.low | trust.high or when is None:
            return
        age = days_between(when, self.now)
        if age > self.p["lab_stale_days"] or self._future(v, when, "effective[x]"):
            return
        default_low = self.p[m.default_low] if m.default_low else 0.0
        default_high = self.p[m.default_high] if m.default_high else 0.0
        shown = (f"{m.display(self.lang)} ({self.word('flagged', code=interpretation)}; "
                 f"{self.word('value_not_used')}), {date_text(when)}")
        fact = Lab(id=f"{v.raw.label}#{analyte}", analyte=analyte, unit=m.unit,
                   interpretation=interpretation, default_low=default_low,
                   default_high=default_high, age_days=age)
        self.add(fact, Evidence(reference=v.raw.label, text=shown, match=match.method,
                                date=date_text(when)))

    def _normal_ranges(self, v: Validated) -> list[tuple[int, dict[str, Any]]]:
        """The referenceRange entries that can be this patient's normal range: typed normal
        (or untyped), for the patient's sex and age when the lab says whom they apply to."""
        trust = self.k.trust.reference_range
        entries = v.data.get("referenceRange")
        gender, age = self._sex_and_age()
        out = []
        for index, entry in enumerate(entries if isinstance(entries, list) else ()):
            if not isinstance(entry, dict) or ("low" not in entry and "high" not in entry):
                continue
            if "type" in entry:
                types = {code for _, code, _ in codings(entry["type"])}
                if types and not types & trust.normal:
                    continue
            if "appliesTo" in entry:
                applies = {code for c in entry["appliesTo"] or () for _, code, _ in codings(c)}
                sexes = applies & trust.genders
                if sexes and isinstance(gender, str) and gender in trust.genders \
                        and gender not in sexes:
                    continue
            if "age" in entry and age is not None:
                ages = entry["age"]
                low, high = _years(ages, "low"), _years(ages, "high")
                if (low is not None and age < low) or (high is not None and age > high):
                    continue
            out.append((index, entry))
        return out

    def _sex_and_age(self) -> tuple[Any, float | None]:
        """The patient's gender and age in years, as far as the chart tells (read once)."""
        if self._patient_sex_and_age is None:
            patient = self._by_ref.get(self.out.patient or "", {})
            born = parse_fhir_datetime(patient.get("birthDate"))
            age = days_between(born, self.now) / 365.25 if born else None
            self._patient_sex_and_age = (patient.get("gender"), age)
        return self._patient_sex_and_age

    def _reference_range(self, v: Validated,
                         m: Measurement) -> tuple[float | None, float | None, str]:
        """The lab's normal range in the canonical unit, and as the lab wrote it."""
        candidates = self._normal_ranges(v)
        if len(candidates) > 1:
            self.issue("warning", v.raw.label, "referenceRange",
                       msg("range-ambiguous", count=len(candidates)),
                       "value-not-used", "range-unusable")
            return None, None, ""
        if not candidates and isinstance(v.data.get("referenceRange"), list) \
                and v.data["referenceRange"]:
            self.issue("information", v.raw.label, "referenceRange",
                       msg("range-none"),
                       "value-not-used", "range-unusable")
        for index, entry in candidates:
            bounds: list[Reading | None] = []
            for end in ("low", "high"):
                if entry.get(end) is None:
                    bounds.append(None)
                    continue
                reading = self._quantity(v, m, f"referenceRange[{index}].{end}", entry[end])
                if reading is None:
                    self.issue("warning", v.raw.label, f"referenceRange[{index}]",
                               msg("range-unreadable"), "value-not-used",
                               "range-unusable")
                    return None, None, ""  # an unreadable range is not used at all
                bounds.append(reading)
            low, high = bounds
            either = low or high
            unit = either.unit if either else m.unit
            text = (f"{fmt(low.raw) if low else '?'}–{fmt(high.raw) if high else '?'} {unit}")
            return (low.value if low else None), (high.value if high else None), text
        return None, None, ""

    def _interpretation(self, v: Validated) -> str | None:
        concepts = v.data.get("interpretation")
        if not concepts:
            return None
        trust = self.k.trust.interpretation
        known = self._interpretations
        if known is None:
            known = self._interpretations = trust.low | trust.high | trust.normal
        for concept in concepts:
            found = concept.get("coding") if isinstance(concept, dict) else None
            for coding in found if isinstance(found, list) else ():  # as codings() reads them
                code = coding.get("code") if isinstance(coding, dict) else None
                if isinstance(code, str) and code in known:
                    system = coding.get("system")
                    if system is None or not isinstance(system, str) or system == trust.system:
                        return code
        return None

    # -- intakes -------------------------------------------------------------------------
    def _intake(self, v: Validated, substance: str, m: Measurement, when: dt.datetime | None,
                match: Match) -> None:
        reading = self._quantity(v, m, "valueQuantity", v.data.get("valueQuantity"))
        if reading is None:
            if v.data.get("valueQuantity") is None:
                self.issue("warning", v.raw.label, "valueQuantity",
                           msg("intake-no-quantity"), "value-not-used", "value-missing")
            return
        if when and days_between(when, self.now) > self.p["symptom_current_days"]:
            self.issue("information", v.raw.label, "effective[x]",
                       msg("intake-stale", date=str(date_text(when))), "ignored", "stale")
            return
        value = reading.value
        shown = f"{m.display(self.lang)} {reading.text}"
        if reading.factor != 1:
            unit = f"unit_{m.unit}"  # "mg/hari" on an Indonesian card
            known = unit in self.k.cards.evidence_words
            shown += f" (≈ {value:.0f} {self.word(unit) if known else m.unit})"
        if when:
            shown += f", {date_text(when)}"
        fact = Intake(id=f"{v.raw.label}#{substance}", substance=substance, mg_per_day=value)
        self.add(fact, Evidence(reference=v.raw.label, text=shown, match=match.method,
                                date=date_text(when)))
