"""The rule graph as an SVG image: input facts (by value set, or fact type), derived facts
and card kinds, joined by one line per rule. Laid out in three columns in Python (no
graphviz, no network): the ruleset is small and layered by construction (a derived fact
feeds conclusions, never the other way)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable

from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.knowledge.rules import CONCEPT_FIELDS

ROW = 24
COLUMN_X = (10, 380, 700)
NODE_WIDTH = (250, 230, 230)
TOP = 40

Node = tuple[int, str]
"""(column, name): column 0 input facts, 1 derived facts, 2 card kinds."""


def _inputs(pattern: dict[str, object]) -> list[str]:
    fact_type = str(pattern.get("type"))
    names = [value for field, spec in pattern.items() if CONCEPT_FIELDS.get(field) == fact_type
             for value in (spec if isinstance(spec, list) else [spec]) if isinstance(value, str)]
    return names or [fact_type]


def edges(knowledge: Knowledge) -> list[tuple[Node, Node, str]]:
    """(from, to, rule id): each fact a rule reads to what it derives or concludes."""
    out: list[tuple[Node, Node, str]] = []
    for compiled in knowledge.rules:
        rule = compiled.rule
        sources: list[Node] = []
        for pattern in rule.knowledge.when.values():
            if pattern.get("type") == "derived":
                sources.append((1, str(pattern.get("name"))))
            elif pattern.get("type") != "parameters":
                sources += [(0, name) for name in _inputs(pattern)]
        targets: list[Node] = []
        if rule.knowledge.derive is not None:
            targets.append((1, rule.knowledge.derive.name))
        if rule.knowledge.conclude is not None:
            targets.append((2, rule.knowledge.conclude.card))
        out += [(s, t, rule.id) for s in dict.fromkeys(sources) for t in targets if s != t]
    return out


def _column(nodes: Iterable[Node], column: int) -> list[str]:
    return sorted({name for c, name in nodes if c == column})


def rule_graph_svg(knowledge: Knowledge, lang: Lang, headings: tuple[str, str, str],
                   title: str, link: Callable[[Node], str | None]) -> str:
    """The graph as SVG text; ``link`` gives each node's page (or None)."""
    joined = edges(knowledge)
    nodes = [n for edge in joined for n in edge[:2]]
    columns = [_column(nodes, c) for c in range(3)]
    # derived facts that feed others go above the rest of their column: fewer crossings
    place: dict[Node, float] = {}
    for c, names in enumerate(columns):
        gap = (max(len(x) for x in columns) - len(names)) * ROW / 2 if names else 0
        for i, name in enumerate(names):
            place[(c, name)] = TOP + gap + i * ROW
    height = TOP + max(len(x) for x in columns) * ROW + 10
    width = COLUMN_X[2] + NODE_WIDTH[2] + 10
    svg = ET.Element("svg", xmlns="http://www.w3.org/2000/svg", width=str(width),
                     height=str(height), viewBox=f"0 0 {width} {height}", role="img")
    svg.set("aria-label", title)
    ET.SubElement(svg, "title").text = title
    for c, heading in enumerate(headings):
        text = ET.SubElement(svg, "text", x=str(COLUMN_X[c]), y="20", attrib={"class": "head"})
        text.text = heading
    lines = ET.SubElement(svg, "g", attrib={"class": "edges"})
    for (source, target, rule_id) in joined:
        x1 = COLUMN_X[source[0]] + NODE_WIDTH[source[0]]
        x2 = COLUMN_X[target[0]]
        y1, y2 = place[source] + 8, place[target] + 8
        if source[0] == target[0]:  # derived from derived: a bow to the right
            x1 = x2 = COLUMN_X[1] + NODE_WIDTH[1]
            bend = f"C {x1 + 60} {y1}, {x2 + 60} {y2}, {x2} {y2}"
        else:
            middle = (x1 + x2) / 2
            bend = f"C {middle} {y1}, {middle} {y2}, {x2} {y2}"
        path = ET.SubElement(lines, "path", d=f"M {x1} {y1} {bend}")
        ET.SubElement(path, "title").text = rule_id
    for (c, name), y in place.items():
        target_url = link((c, name))
        parent = ET.SubElement(svg, "a", href=target_url) if target_url else svg
        group = ET.SubElement(parent, "g", attrib={"class": f"node c{c}"})
        ET.SubElement(group, "rect", x=str(COLUMN_X[c]), y=str(y - 4),
                      width=str(NODE_WIDTH[c]), height=str(ROW - 6), rx="4")
        label = ET.SubElement(group, "text", x=str(COLUMN_X[c] + 6), y=str(y + 12))
        label.text = name
    style = ET.SubElement(svg, "style")
    style.text = (".head{font:bold 14px sans-serif}"
                  "text{font:12px sans-serif;fill:#111}"
                  ".edges path{fill:none;stroke:#7a869a;stroke-width:1;opacity:.6}"
                  ".edges path:hover{stroke:#c00;stroke-width:2;opacity:1}"
                  "rect{fill:#eef3fb;stroke:#5b7db1}.c1 rect{fill:#fff4e0;stroke:#c08a2b}"
                  ".c2 rect{fill:#fdecec;stroke:#b94a48}")
    return ET.tostring(svg, encoding="unicode")
