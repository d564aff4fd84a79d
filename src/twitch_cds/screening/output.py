"""The run's files, assembled from the finished shares and parts in a fixed order (share by
share, bucket by bucket), so they are the same bytes however the run was done, and whether
or not it was interrupted and resumed. Records are streamed (memory stays flat): CDS Hooks
responses, rejected lines, failed patients, and the worklist, critical first (rows are
spooled per indicator, then joined), with a FHIR Group of the flagged patients."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from twitch_cds.screening.partition import share_dir
from twitch_cds.screening.parts import part_path, read_part_header, records
from twitch_cds.screening.worker import INDICATOR_ORDER

WorklistFormat = Literal["csv", "ndjson"]
COLUMNS = ("patient", "indicator", "kinds", "summaries", "references")


@dataclass
class Assembled:
    flagged: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    failed: int = 0
    names: list[str] = field(default_factory=list)


def _share_rejects(work: Path, offsets: list[int]) -> Iterator[str]:
    """Lines rejected while partitioning, numbered in their file (shares count from 1)."""
    for share, offset in enumerate(offsets):
        with open(share_dir(work, share) / "rejected.ndjson", encoding="utf-8") as handle:
            for line in handle:
                if offset:
                    item = json.loads(line)
                    item["line"] += offset
                    line = json.dumps(item, ensure_ascii=False) + "\n"
                yield line


def assemble(target: Path, work: Path, offsets: list[int], buckets: int,
             fmt: WorklistFormat) -> Assembled:
    """Write every output file of the run into ``target`` from its work directory."""
    out = Assembled()
    with ExitStack() as stack:
        def create(path: Path, mode: str = "w") -> IO[str]:
            return stack.enter_context(open(path, mode, encoding="utf-8", newline=""))

        responses = create(target / "responses.ndjson")
        failed = create(target / "failed.ndjson")
        rejected = create(target / "rejected.ndjson")
        spool = {level: create(work / f"rows-{level}.ndjson", "w+") for level in INDICATOR_ORDER}
        for line in _share_rejects(work, offsets):
            out.rejected += 1
            rejected.write(line)
        for bucket in range(buckets):
            path = part_path(work, bucket)
            header = read_part_header(path)
            if header is None:
                raise RuntimeError(f"{path}: bucket {bucket} has not finished")
            out.kinds.update(header["kinds"])
            for tag, text in records(path):
                if tag == "R":
                    responses.write(text + "\n")
                elif tag == "X":
                    out.rejected += 1
                    rejected.write(text + "\n")
                elif tag == "F":
                    out.failed += 1
                    failed.write(text + "\n")
                elif tag == "W":
                    indicator = json.loads(text)["indicator"]
                    out.flagged[indicator] += 1
                    spool[indicator].write(text + "\n")
        out.names = _worklist(target, spool, fmt, sum(out.flagged.values()))
    return out


def _rows(spool: dict[str, IO[str]]) -> Iterator[dict[str, Any]]:
    for level in INDICATOR_ORDER:  # critical, warning, info; bucket order within each
        handle = spool[level]
        handle.seek(0)
        for line in handle:
            yield json.loads(line)


def _worklist(target: Path, spool: dict[str, IO[str]], fmt: WorklistFormat,
              count: int) -> list[str]:
    name = f"worklist.{fmt}"
    with (open(target / name, "w", encoding="utf-8", newline="") as worklist,
          open(target / "group.json", "w", encoding="utf-8") as group):
        writer = csv.writer(worklist) if fmt == "csv" else None
        if writer:
            writer.writerow(COLUMNS)
        head = json.dumps({"resourceType": "Group", "type": "person", "actual": True,
                           "name": "twitch-cds worklist", "quantity": count})
        group.write(head[:-1] + (', "member": [' if count else ""))  # FHIR: no empty []
        for i, row in enumerate(_rows(spool)):
            if writer:
                writer.writerow([row["patient"], row["indicator"], "; ".join(row["kinds"]),
                                 " | ".join(row["summaries"]), " ".join(row["references"])])
            else:
                worklist.write(json.dumps(row, ensure_ascii=False) + "\n")
            member = {"entity": {"reference": f"Patient/{row['patient']}"}}
            group.write(("," if i else "") + "\n  " + json.dumps(member))
        group.write("\n]}\n" if count else "}\n")
    return [name, "responses.ndjson", "rejected.ndjson", "failed.ndjson", "group.json"]
