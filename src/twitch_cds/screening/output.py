"""The run's files, written as results arrive (memory stays flat): CDS Hooks responses,
rejected lines, failed patients, and the worklist, critical first (rows are spooled per
indicator, then joined), with a FHIR Group of the flagged patients."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import IO, Any, Literal

from twitch_cds.screening.partition import Rejected
from twitch_cds.screening.worker import INDICATOR_ORDER, BucketOutcome

WorklistFormat = Literal["csv", "ndjson"]
COLUMNS = ("patient", "indicator", "kinds", "summaries", "references")


class Outputs:
    """Open for one run; ``finish()`` writes the worklist and the Group."""

    def __init__(self, target: Path, scratch: Path, fmt: WorklistFormat) -> None:
        self.target, self.fmt = target, fmt
        self.flagged: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.rejected = 0
        self.failed = 0
        self._responses = open(target / "responses.ndjson", "w", encoding="utf-8")  # noqa: SIM115
        self._failed = open(target / "failed.ndjson", "w", encoding="utf-8")  # noqa: SIM115
        self._rejected = open(target / "rejected.ndjson", "w", encoding="utf-8")  # noqa: SIM115
        self._spool: dict[str, IO[str]] = {
            level: open(scratch / f"rows-{level}.ndjson", "w+", encoding="utf-8")  # noqa: SIM115
            for level in INDICATOR_ORDER}

    def reject(self, item: Rejected) -> None:
        self.rejected += 1
        self._rejected.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")

    def add(self, outcome: BucketOutcome) -> None:
        for item in outcome.rejected:
            self.reject(item)
        self._responses.writelines(line + "\n" for line in outcome.responses)
        self._failed.writelines(json.dumps(f) + "\n" for f in outcome.failed)
        self.failed += len(outcome.failed)
        self.kinds.update(outcome.kinds)
        for row in outcome.rows:
            self.flagged[row["indicator"]] += 1
            self._spool[row["indicator"]].write(json.dumps(row, ensure_ascii=False) + "\n")

    def _rows(self) -> Any:
        for level in INDICATOR_ORDER:  # critical, warning, info; bucket order within each
            spool = self._spool[level]
            spool.seek(0)
            for line in spool:
                yield json.loads(line)

    def finish(self) -> list[str]:
        """Close everything; the names of the files written."""
        for handle in (self._responses, self._failed, self._rejected):
            handle.close()
        name = f"worklist.{self.fmt}"
        with (open(self.target / name, "w", encoding="utf-8", newline="") as worklist,
              open(self.target / "group.json", "w", encoding="utf-8") as group):
            writer = csv.writer(worklist) if self.fmt == "csv" else None
            if writer:
                writer.writerow(COLUMNS)
            count = sum(self.flagged.values())
            head = json.dumps({"resourceType": "Group", "type": "person", "actual": True,
                               "name": "twitch-cds worklist", "quantity": count})
            group.write(head[:-1] + (', "member": [' if count else ""))  # FHIR: no empty []
            for i, row in enumerate(self._rows()):
                if writer:
                    writer.writerow([row["patient"], row["indicator"], "; ".join(row["kinds"]),
                                     " | ".join(row["summaries"]), " ".join(row["references"])])
                else:
                    worklist.write(json.dumps(row, ensure_ascii=False) + "\n")
                member = {"entity": {"reference": f"Patient/{row['patient']}"}}
                group.write(("," if i else "") + "\n  " + json.dumps(member))
            group.write("\n]}\n" if count else "}\n")
        for spool in self._spool.values():
            spool.close()
        return [name, "responses.ndjson", "rejected.ndjson", "failed.ndjson", "group.json"]
