"""The catalogue's pages, rendered with Jinja2 templates (package data) into a directory.

Layout (other parts of twitch-cds link to it, keep it stable)::

    index.html                       -> en/index.html
    static/site.css, static/site.js
    en/ and id/: index.html, graph.html, rules/<rule-id>.html,
                 valuesets/<valueset-id>.html, parameters/<parameter-name>.html
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

from twitch_cds import __version__
from twitch_cds.catalogue.graph import Node, rule_graph_svg
from twitch_cds.catalogue.logic import LogicWriter, number, say
from twitch_cds.catalogue.model import RuleView, ValueSetView
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.knowledge.reviews import REVIEW_STATES

LANGS: tuple[Lang, ...] = ("en", "id")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
"""A ``{bind.field}`` placeholder of a rule's message."""
STATIC = ("site.css", "site.js")

_MARKDOWN = MarkdownIt("commonmark", {"html": False})
"""Card detail is CommonMark (CDS Hooks); raw HTML in it is shown as text, never run."""


def page_path(kind: str, name: str) -> str:
    """A page's path under its language directory."""
    folder = {"rule": "rules", "valueset": "valuesets", "parameter": "parameters"}[kind]
    return f"{folder}/{name}.html"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("twitch_cds.catalogue", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["markdown"] = lambda text: Markup(_MARKDOWN.render(text or ""))
    return env


@dataclass(frozen=True)
class Site:
    """Everything the templates read, for both languages."""

    knowledge: Knowledge
    rules: Sequence[RuleView]
    valuesets: Mapping[str, ValueSetView]
    mutation_run: bool
    scenarios_run: int


class _Page:
    """What every template gets: the language, the way back to the site's root, words."""

    def __init__(self, site: Site, lang: Lang, path: str):
        self.site = site
        self.lang: Lang = lang
        self.path = path
        self.root = "../" * path.count("/")
        """From this page to its language directory."""
        other = "id" if lang == "en" else "en"
        self.other_lang = other
        self.other_url = f"{self.root}../{other}/{path}"
        self.static = f"{self.root}../static/"
        self.version = __version__

    def t(self, key: str, **params: Any) -> Markup:
        return say(self.lang, key, **params)

    def url(self, kind: str, name: str) -> str:
        return self.root + page_path(kind, name)

    def anchor(self, url: str, text: str) -> Markup:
        return Markup('<a href="{}">{}</a>').format(url, text)

    def code(self, text: str) -> Markup:
        return Markup("<code>{}</code>").format(text)

    def num(self, value: float) -> str:
        return number(value, self.lang)

    def kind_name(self, kind: str) -> str:
        if kind == "derived":
            return str(self.t("kind.derived"))
        return self.site.knowledge.cards.kinds[kind].display(self.lang)

    def rule_name(self, view: RuleView) -> str:
        """A rule's name in this language: its title (``title_id`` in Indonesian; a rule
        without one is named by its Indonesian card line)."""
        rule = view.compiled.rule
        if self.lang == "en" or rule.library.title_id:
            return rule.library.name(self.lang)
        return _PLACEHOLDER.sub("…", rule.knowledge.message.id)

    def message(self, view: RuleView) -> Markup:
        """The rule's card line in this language, its placeholders shown as code."""
        text = getattr(view.compiled.rule.knowledge.message, self.lang)
        parts = _PLACEHOLDER.split(text)
        found = _PLACEHOLDER.findall(text)
        out = Markup("")
        for i, part in enumerate(parts):
            out += part
            if i < len(found):
                out += Markup("<code>{}</code>").format(found[i])
        return out

    def indicator_word(self, indicator: str) -> Markup:
        return self.t(f"urgency.{indicator}")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def render_site(site: Site, out: Path) -> list[Path]:
    """Write every page and asset under ``out``; returns the pages written."""
    env = _environment()
    written: list[Path] = []
    static = resources.files("twitch_cds.catalogue").joinpath("static")
    (out / "static").mkdir(parents=True, exist_ok=True)
    for name in STATIC:
        with resources.as_file(static.joinpath(name)) as source:
            shutil.copyfile(source, out / "static" / name)
    _write(out / "index.html", env.get_template("redirect.html").render(target="en/index.html"))
    written.append(out / "index.html")
    valueset_users: dict[str, list[RuleView]] = {}
    parameter_users: dict[str, list[RuleView]] = {}
    for view in site.rules:
        for name in view.valuesets:
            valueset_users.setdefault(name, []).append(view)
        for name in view.parameters:
            parameter_users.setdefault(name, []).append(view)
    rules_by_id = {view.id: view for view in site.rules}
    for lang in LANGS:
        base = out / lang

        def render(template: str, path: str, lang: Lang = lang, base: Path = base,
                   **context: Any) -> None:
            page = _Page(site, lang, path)
            _write(base / path, env.get_template(template).render(page=page, **context))
            written.append(base / path)

        kinds = list(dict.fromkeys([*site.knowledge.cards.kinds, "derived"]))
        ordered = sorted(site.rules, key=lambda v: (kinds.index(v.kind), v.id))
        render("index.html", "index.html", rules=ordered, kinds=kinds, states=REVIEW_STATES,
               valuesets=sorted(valueset_users))
        logic = LogicWriter(site.knowledge, lang, lambda kind, name: "../" + page_path(
            kind, name))
        for view in site.rules:
            render("rule.html", page_path("rule", view.id), view=view, logic=logic,
                   rules_by_id=rules_by_id)
        for name, valueset in site.valuesets.items():
            render("valueset.html", page_path("valueset", name), valueset=valueset,
                   users=valueset_users.get(name, []))
        for name, parameter in site.knowledge.parameters.parameters.items():
            render("parameter.html", page_path("parameter", name), name=name,
                   parameter=parameter, users=parameter_users.get(name, []))

        def link(node: Node) -> str | None:
            column, name = node
            if column == 0 and name in site.valuesets:
                return page_path("valueset", name)
            return None

        headings = (str(say(lang, "graph.inputs")), str(say(lang, "graph.derived")),
                    str(say(lang, "graph.cards")))
        svg = rule_graph_svg(site.knowledge, lang, headings, str(say(lang, "graph.alt")), link)
        render("graph.html", "graph.html", svg=Markup(svg))
    return written

