"""The worklist (CSV or NDJSON), sorted critical first, and the run's summary."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from twitch_cds.screening.worker import INDICATOR_ORDER

WorklistFormat = Literal["csv", "ndjson"]


def sort_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (INDICATOR_ORDER[r["indicator"]], -len(r["kinds"]),
                                       r["patient"]))


def write_worklist(rows: list[dict[str, Any]], out: Path, fmt: WorklistFormat) -> Path:
    if fmt == "ndjson":
        path = out / "worklist.ndjson"
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
    path = out / "worklist.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient", "indicator", "kinds", "summaries", "references"])
        for row in rows:
            writer.writerow([row["patient"], row["indicator"], "; ".join(row["kinds"]),
                             " | ".join(row["summaries"]), " ".join(row["references"])])
    return path
