"""Evaluate a bundled example; print each card (indicator, summary, kind), then the issues.

    python examples/evaluate_example.py [examples/05-twitching-at-rest.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import twitch_cds

DEFAULT = Path(__file__).parent / "02-hot-weather-low-potassium.json"


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else DEFAULT
    data = json.loads(path.read_text(encoding="utf-8"))
    result = twitch_cds.evaluate(data, now="2026-11-24T09:00:00Z")
    for card in result.cards:
        kind = card.source.topic.code if card.source.topic else "-"
        print(f"[{card.indicator}] {card.summary} ({kind})")
    for issue in result.issues:
        print(f"issue: {issue}")


if __name__ == "__main__":
    main(sys.argv[1:])
