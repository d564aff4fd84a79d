"""One-off migration of tests/scenarios/*.yaml to contract 3.0 (kept for the record): each
expected card of an old kind becomes an expected card of the new card that gathers it, the
old kinds kept as ``parts`` (the conclusion kinds the card must carry), so that a scenario
still proves what it proved; ``absent`` kinds become ``absent_parts``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from twitch_cds.knowledge import load_knowledge


def migrate(expect: dict[str, Any], card_of: dict[str, str],
            order: dict[str, int]) -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {}
    for want in expect.get("cards", []):
        old = want["kind"]
        new = card_of.get(old, old)
        card = merged.setdefault(new, {"kind": new, "parts": []})
        if old not in card["parts"]:
            card["parts"].append(old)
        for key, value in want.items():
            if key == "kind":
                continue
            if key in ("references", "summary_has", "detail_has", "detail_lacks", "services"):
                known = card.setdefault(key, [])
                known += [v for v in value if key == "services" or v not in known]
            elif key == "count":
                card["count"] = 1
            elif key == "references_exact":
                card[key] = card.get(key, True) and value
            elif key == "indicator":
                card.setdefault("_indicators", []).append(value)
            else:
                card[key] = value
    rank = {"info": 0, "warning": 1, "critical": 2}
    for card in merged.values():
        card["parts"].sort(key=lambda k: order.get(k, 99))
        indicators = card.pop("_indicators", None)
        if indicators:
            card["indicator"] = max(indicators, key=rank.__getitem__)
        if not expect.get("exact", True):
            card["parts_exact"] = False
    out: dict[str, Any] = {}
    for key, value in expect.items():
        if key == "cards":
            out["cards"] = list(merged.values())
        elif key == "absent":
            cards = [k for k in value if k in card_of.values()]
            if cards:
                out["absent"] = cards
            out["absent_parts"] = list(value)
        else:
            out[key] = value
    return out


def main(paths: list[str]) -> None:
    cards = load_knowledge().cards
    card_of = {kind: texts.card for kind, texts in cards.kinds.items()}
    order = {k: i for plan in cards.cards.values() for i, k in enumerate(plan.kinds)}
    for name in paths:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        expect = migrate(data["expect"], card_of, order)
        lines = text.splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line.startswith("expect:"))
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i][:1] not in (" ", "\n", "#", "")), len(lines))
        body = yaml.safe_dump({"expect": expect}, sort_keys=False, allow_unicode=True,
                              default_flow_style=None, width=10_000)
        path.write_text("".join(lines[:start]) + body + "".join(lines[end:]), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
