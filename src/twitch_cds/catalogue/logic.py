"""A rule's logic in plain words, generated from its ``knowledge`` section.

The words come from the locale catalogue (``locale/catalogue.yaml``) in the page's language;
field names, bind names and values stay as the rule file writes them (in ``<code>``), and
value sets, parameters and derived facts link to their pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from markupsafe import Markup, escape

from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.knowledge.rules import CONCEPT_FIELDS, RuleFile
from twitch_cds.locale import catalogue

Link = Callable[[str, str], str]
"""``link(kind, name)``: the relative URL of a value set, parameter or rule page."""


def say(lang: Lang, key: str, **params: Any) -> Markup:
    """A catalogue text with its placeholders filled; strings are escaped, ``Markup`` kept."""
    template = catalogue("catalogue")[key][lang]
    return Markup(str(escape(template)).format_map(
        {k: v if isinstance(v, Markup) else escape(str(v)) for k, v in params.items()}))


def code(text: Any) -> Markup:
    return Markup("<code>{}</code>").format(text)


def anchor(url: str, text: Any) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url, text)


def number(value: float, lang: Lang) -> str:
    text = f"{value:g}"
    return text.replace(".", ",") if lang == "id" else text


class LogicWriter:
    """Writes one language's plain words for the rules of one knowledge."""

    def __init__(self, knowledge: Knowledge, lang: Lang, link: Link):
        self.k = knowledge
        self.lang: Lang = lang
        self.link = link

    def _valueset(self, name: str) -> Markup:
        return anchor(self.link("valueset", name), code(name))

    def _operand(self, value: Any) -> Markup:
        if isinstance(value, Mapping):
            if set(value) == {"param"}:
                name = str(value["param"])
                parameter = self.k.parameters.parameters[name]
                shown = f"{number(parameter.default, self.lang)} {parameter.unit}"
                return say(self.lang, "operand.param",
                           name=anchor(self.link("parameter", name), code(name)), value=shown)
            if set(value) == {"field"}:
                return say(self.lang, "operand.field", field=code(value["field"]))
            if set(value) == {"fact", "field"}:
                return code(f"{value['fact']}.{value['field']}")
        if isinstance(value, bool):
            return code(str(value).lower())
        if isinstance(value, int | float):
            return code(number(float(value), self.lang))
        return code(value)

    def condition(self, fact_type: str, field_name: str, spec: Any) -> Markup:
        """One field condition of a pattern, in words."""
        field = code(field_name)
        if CONCEPT_FIELDS.get(field_name) == fact_type:
            names = spec if isinstance(spec, list) else [spec]
            if len(names) == 1:
                return say(self.lang, "op.valueset", field=field,
                           valueset=self._valueset(str(names[0])))
            return say(self.lang, "op.valuesets", field=field, valuesets=Markup(", ").join(
                self._valueset(str(n)) for n in names))
        if isinstance(spec, list):
            return say(self.lang, "op.any", field=field,
                       values=Markup(", ").join(self._operand(v) for v in spec))
        if isinstance(spec, Mapping) and not set(spec) & {"param", "field", "fact"}:
            parts = []
            for op, operand in spec.items():
                if op == "exists":
                    parts.append(say(self.lang, "op.exists" if operand else "op.absent",
                                     field=field))
                else:
                    parts.append(say(self.lang, f"op.{op}", field=field,
                                     value=self._operand(operand)))
            return Markup("; ").join(parts)
        return say(self.lang, "op.eq", field=field, value=self._operand(spec))

    def pattern(self, bind: str | None, pattern: Mapping[str, Any]) -> Markup:
        """A fact pattern: what fact, then each condition on it."""
        fact_type = str(pattern.get("type"))
        if fact_type == "derived":
            name = str(pattern.get("name"))
            head = say(self.lang, "fact.derived", bind=code(name))
            if bind:
                head = Markup("{} ({})").format(head, code(bind))
            skip = {"type", "name"}
        else:
            key = f"fact.{fact_type}" if bind else "fact.unless"
            head = say(self.lang, key, bind=code(bind or fact_type))
            skip = {"type"}
        conditions = [self.condition(fact_type, f, s) for f, s in pattern.items()
                      if f not in skip]
        return head + (Markup(": ") + Markup("; ").join(conditions) if conditions
                       else Markup(""))

    def outcome(self, rule: RuleFile) -> list[Markup]:
        """What the rule derives and concludes."""
        knowledge = rule.knowledge
        out = []
        if knowledge.derive is not None:
            derive = knowledge.derive
            fields = [Markup("{} = {}").format(code(k), code(v))
                      for k, v in {**derive.copy_fields, **derive.set_fields}.items()]
            name = code(derive.name)
            out.append(say(self.lang, "logic.derives-with", name=name,
                           fields=Markup(", ").join(fields)) if fields
                       else say(self.lang, "logic.derives", name=name))
        if knowledge.conclude is not None:
            conclude = knowledge.conclude
            kind = self.k.cards.kinds[conclude.card]
            subject_text = kind.subjects.get(conclude.subject)
            subject = (subject_text(self.lang) if subject_text is not None
                       else code(conclude.subject))
            line = say(self.lang, "logic.concludes", kind=kind.display(self.lang),
                       urgency=say(self.lang, f"urgency.{knowledge.urgency}"), subject=subject)
            if conclude.suggest:
                wanted = self.k.cards.suggestions[conclude.suggest]
                label: Any = (wanted.label(self.lang) if wanted.label is not None
                              else code(", ".join([*wanted.tests, *wanted.also])))
                line += Markup(" ") + say(self.lang, "logic.suggests", suggestion=label)
            out.append(line)
        return out
