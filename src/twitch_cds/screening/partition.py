"""Out of core grouping by patient: every line goes to one of K bucket files by a hash of its
patient id, so each bucket (all of some patients' resources) fits in memory.

A line's patient comes from a regular expression on the raw bytes (``"subject"`` or
``"patient"`` reference to ``Patient/<id>``, or a Patient's own id), falling back to a full
parse when it misses; the worker checks it against the parsed resource. Bucket lines are
``file-index TAB line-number TAB patient-id TAB json``.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twitch_cds.fhir_in.coding import is_fhir_id, reference

_REF = re.compile(
    rb'"(?:subject|patient)"\s*:\s*\{[^{}]*?"reference"\s*:\s*"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})"')
_PATIENT = re.compile(rb'"resourceType"\s*:\s*"Patient"')

BUCKET_BYTES = 8 * 1024 * 1024
"""Target raw size of a bucket (technical: its parsed resources stay well under 200 MB)."""
MAX_BUCKETS = 1024
MIN_BUCKETS = 16
"""Enough buckets to keep a few workers busy. The count never depends on the number of
workers, so the output's order (bucket by bucket) is the same however the run is done."""


@dataclass(frozen=True)
class Rejected:
    """A line that was not screened, with where it is and why."""

    file: str
    line: int
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "problem": self.problem}


@dataclass
class Partitioned:
    directory: Path
    buckets: list[Path]
    files: list[str]
    lines: int = 0
    rejected: int = 0


def bucket_count(files: list[Path]) -> int:
    """From the export's size (a gzip counted as eight times its size)."""
    size = sum(p.stat().st_size * (8 if p.suffix == ".gz" else 1) for p in files)
    return min(MAX_BUCKETS, max(MIN_BUCKETS, size // BUCKET_BYTES + 1))


def patient_of(resource: Any) -> str | None:
    """The patient a parsed resource belongs to (a Patient's own id, else its subject or
    patient reference), or None."""
    if not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if is_fhir_id(rid) else None
    for key in ("subject", "patient"):
        ref = reference(resource.get(key))
        if ref and ref.startswith("Patient/") and is_fhir_id(ref[8:]):
            return ref[8:]
    return None


def _patient_bytes(line: bytes) -> tuple[str | None, str | None]:
    """(patient id, problem) for one raw line."""
    if not _PATIENT.search(line):
        found = _REF.search(line)
        if found:
            return found.group(1).decode("ascii"), None
    try:
        resource = json.loads(line)
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    pid = patient_of(resource)
    if pid is None:
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        return None, f"{kind if isinstance(kind, str) else 'resource'} without a patient"
    return pid, None


def _lines(path: Path) -> Iterator[bytes]:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as packed:
            yield from packed
    else:
        with open(path, "rb") as plain:
            yield from plain


def partition(files: list[Path], directory: Path, k: int,
              reject: Callable[[Rejected], None]) -> Partitioned:
    """Split every line of ``files`` into ``k`` bucket files under ``directory``; each line
    that cannot be placed goes to ``reject``."""
    buckets = [directory / f"bucket-{i:04d}.tsv" for i in range(k)]
    out = Partitioned(directory, buckets, [str(p) for p in files])
    handles = [open(b, "wb", buffering=256 * 1024) for b in buckets]  # noqa: SIM115
    try:
        for index, path in enumerate(files):
            number = 0
            try:
                for number, line in enumerate(_lines(path), start=1):  # noqa: B007
                    stripped = line.strip()
                    if not stripped:
                        continue
                    out.lines += 1
                    pid, problem = _patient_bytes(stripped)
                    if pid is None:
                        out.rejected += 1
                        reject(Rejected(str(path), number, problem or "unreadable"))
                        continue
                    handles[zlib.crc32(pid.encode()) % k].write(
                        b"%d\t%d\t%s\t%s\n" % (index, number, pid.encode(), stripped))
            except (EOFError, OSError, zlib.error) as exc:
                out.rejected += 1
                reject(Rejected(
                    str(path), number + 1,
                    f"file unreadable from here ({type(exc).__name__}: {exc}); rest skipped"))
    finally:
        for handle in handles:
            handle.close()
    return out
