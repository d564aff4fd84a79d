"""Evaluate one bundled example and print its cards and input issues.

    python examples/evaluate_example.py [examples/05-twitching-at-rest.json] [--lang id]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import twitch_cds

HERE = Path(__file__).parent


def main(argv: list[str]) -> None:
    lang = "id" if "--lang" in argv and argv[-1] == "id" else "en"
    files = [a for a in argv if a.endswith(".json")]
    path = Path(files[0]) if files else HERE / "02-hot-weather-low-potassium.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    result = twitch_cds.evaluate(data, now="2026-11-24T09:00:00Z", lang=lang)
    print(f"{path.name}: {len(result.cards)} cards for {result.patient}")
    for card in result.cards:
        print(f"  [{card.indicator:8}] {card.kind:28} {card.summary}")
    for issue in result.issues:
        print(f"  issue: {issue}")


if __name__ == "__main__":
    main(sys.argv[1:])
