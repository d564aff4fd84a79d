"""A finished bucket's results on disk: the part file.

One line per record, tagged: ``R`` a CDS Hooks response (as written to responses.ndjson),
``W`` a worklist row, ``X`` a rejected line, ``F`` a failed patient, and last ``H`` the
bucket's counts. It is written under a temporary name and renamed when complete, so a part
file that exists is a finished bucket (a run killed midway leaves at most a temporary file,
which is ignored and rewritten).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from twitch_cds.screening.partition import Rejected

_TAIL = 64 * 1024
"""Bytes read from a part's end to find its header line (counts and a few card kinds)."""


def part_path(work: Path, bucket: int) -> Path:
    return work / "parts" / f"part-{bucket:04d}.tsv"


class PartWriter:
    """Write one bucket's part; it appears under its name only if the block ends cleanly."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.temp = target.with_name(target.name + ".tmp")
        target.parent.mkdir(parents=True, exist_ok=True)
        self._out: IO[str] = open(self.temp, "w", encoding="utf-8")  # noqa: SIM115

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._out.close()
        if kind is None:
            os.replace(self.temp, self.target)
        else:
            self.temp.unlink(missing_ok=True)

    def _write(self, tag: str, text: str) -> None:
        self._out.write(f"{tag}\t{text}\n")

    def response(self, text: str) -> None:
        self._write("R", text)

    def row(self, row: dict[str, Any]) -> None:
        self._write("W", json.dumps(row, ensure_ascii=False))

    def rejected(self, item: Rejected) -> None:
        self._write("X", json.dumps(item.to_json(), ensure_ascii=False))

    def failed(self, item: dict[str, str]) -> None:
        self._write("F", json.dumps(item))

    def header(self, counts: dict[str, Any]) -> None:
        self._write("H", json.dumps(counts, sort_keys=True))


def read_part_header(path: Path) -> dict[str, Any] | None:
    """A finished part's counts, or None when there is no finished part."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL))
            last = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    except OSError:
        return None
    if not last.startswith(b"H\t"):
        return None
    try:
        header = json.loads(last[2:])
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def records(path: Path) -> Iterator[tuple[str, str]]:
    """(tag, text) for each record of a part, the header left out."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            tag, text = line.rstrip("\n").split("\t", 1)
            if tag != "H":
                yield tag, text
