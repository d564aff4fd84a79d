"""Out of core grouping by patient, in parallel: the export is cut into shares (a byte range
of a plain file, or a whole gzip), and each share's lines go to one of K bucket files by a
hash of their patient id, so each bucket (all of some patients' resources) fits in memory.

Shares and K depend only on the export's files and sizes, never on the number of workers,
so the order of every output (share by share, bucket by bucket) is the same however the
run is done. A share owns the lines that *start* in its byte range; it numbers them from 1,
and its line count (``done.json``) turns those into line numbers in the file once every
share has finished.

A line's patient comes from a regular expression on the raw bytes (``"subject"`` or
``"patient"`` reference to ``Patient/<id>``, or a Patient's own id), falling back to a full
parse when it misses; the worker checks it against the parsed resource. Bucket lines are
``file-index TAB line-number-in-share TAB patient-id TAB json``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twitch_cds.fhir_in.coding import is_fhir_id, reference

_REF = re.compile(
    rb'"(?:subject|patient)"\s*:\s*\{[^{}]*?"reference"\s*:\s*"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})"')
_PATIENT = re.compile(rb'"resourceType"\s*:\s*"Patient"')

BUCKET_BYTES = 2 * 1024 * 1024
"""Target raw size of a bucket (technical): a bucket's raw lines are held while it is
grouped, so this bounds a worker's memory whatever the export's size."""
MAX_BUCKETS = 4096
MIN_BUCKETS = 16
"""Enough buckets to keep a few workers busy. The count never depends on the number of
workers, so the output's order (bucket by bucket) is the same however the run is done."""
SHARE_BYTES = 32 * 1024 * 1024
"""Byte range of a plain file that one partitioning task reads (a gzip is one share)."""
WRITE_BUFFERS = 4 * 1024 * 1024
"""Lines a partitioning task holds before appending them to its bucket files (technical)."""


class WorkError(RuntimeError):
    """The run's work directory cannot be written (the run stops; it can be resumed)."""


@dataclass(frozen=True)
class Rejected:
    """A line that was not screened, with where it is and why."""

    file: str
    line: int
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "problem": self.problem}


@dataclass(frozen=True)
class Share:
    """Lines of ``files[file]`` starting in bytes [start, end) (end None: to the end)."""

    index: int
    file: int
    start: int
    end: int | None


@dataclass(frozen=True)
class ShareDone:
    """What a finished share reports (also in its ``done.json``)."""

    lines: int
    """Lines starting in the share's range, blank ones included (for line numbers)."""
    read: int
    """Non-blank lines."""
    rejected: int


def _is_gzip(path: Path) -> bool:
    return path.suffix == ".gz"


def bucket_count(files: list[Path]) -> int:
    """From the export's size (a gzip counted as eight times its size)."""
    size = sum(p.stat().st_size * (8 if _is_gzip(p) else 1) for p in files)
    return int(min(MAX_BUCKETS, max(MIN_BUCKETS, size // BUCKET_BYTES + 1)))


def plan_shares(files: list[Path]) -> list[Share]:
    """The shares of an export, in file order."""
    shares: list[Share] = []
    for index, path in enumerate(files):
        size = path.stat().st_size
        if _is_gzip(path) or size <= SHARE_BYTES:
            shares.append(Share(len(shares), index, 0, None))
            continue
        for start in range(0, size, SHARE_BYTES):
            end = start + SHARE_BYTES
            shares.append(Share(len(shares), index, start, end if end < size else None))
    return shares


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
    if b'"Patient"' not in line or not _PATIENT.search(line):  # a substring scan first
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


def _share_lines(path: Path, share: Share) -> Iterator[bytes]:
    """The lines starting in the share's byte range, blank ones included."""
    if _is_gzip(path):
        with gzip.open(path, "rb") as packed:
            yield from packed
        return
    with open(path, "rb") as plain:
        position = share.start
        if position > 0:
            plain.seek(position - 1)
            position += len(plain.readline()) - 1  # the line under way is the previous share's
        for line in plain:
            if share.end is not None and position >= share.end:
                return
            position += len(line)
            yield line


def share_dir(work: Path, index: int) -> Path:
    return work / "shares" / f"{index:05d}"


def bucket_name(bucket: int) -> str:
    return f"bucket-{bucket:04d}.tsv"


def read_done(directory: Path) -> ShareDone | None:
    """A finished share's report, or None when the share has not finished."""
    try:
        data = json.loads((directory / "done.json").read_text(encoding="utf-8"))
        return ShareDone(int(data["lines"]), int(data["read"]), int(data["rejected"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def partition_share(share: Share, files: list[str], work: Path, k: int) -> ShareDone:
    """Split the share's lines into ``k`` bucket files (``bucket-NNNN.tsv``, made when first
    needed) and its unplaceable lines into ``rejected.ndjson`` (line numbers within the
    share), in a directory that appears, renamed from a temporary one, only when complete."""
    final = share_dir(work, share.index)
    done = read_done(final)
    if done is not None:
        return done
    temp = final.with_name(final.name + ".tmp")
    for stale in (final, temp):  # an unreadable report counts as unfinished: redone
        shutil.rmtree(stale, ignore_errors=True)
    temp.mkdir(parents=True)
    path = Path(files[share.file])
    pending: dict[int, bytearray] = {}
    held = 0

    def flush() -> None:
        """Append what is held to the bucket files: at most one file is open at a time,
        whatever K (no limit on open files to meet), and memory stays within the budget."""
        nonlocal held
        try:
            for bucket, chunk in sorted(pending.items()):
                with open(temp / bucket_name(bucket), "ab") as handle:
                    handle.write(chunk)
        except OSError as exc:  # not the export's fault (a full disk): stop, resumable
            raise WorkError(f"cannot write the work directory {temp}: {exc}") from exc
        pending.clear()
        held = 0

    lines = read = rejected = 0
    prefix = b"%d\t" % share.file
    with open(temp / "rejected.ndjson", "w", encoding="utf-8") as rejects:
        def reject(number: int, problem: str) -> None:
            nonlocal rejected
            rejected += 1
            rejects.write(json.dumps(Rejected(str(path), number, problem).to_json(),
                                     ensure_ascii=False) + "\n")

        try:
            for line in _share_lines(path, share):
                lines += 1
                stripped = line.strip()
                if not stripped:
                    continue
                read += 1
                pid, problem = _patient_bytes(stripped)
                if pid is None:
                    reject(lines, problem or "unreadable")
                    continue
                encoded = pid.encode()
                record = b"%s%d\t%s\t%s\n" % (prefix, lines, encoded, stripped)
                pending.setdefault(zlib.crc32(encoded) % k, bytearray()).extend(record)
                held += len(record)
                if held >= WRITE_BUFFERS:
                    flush()
        except (EOFError, OSError, zlib.error) as exc:
            reject(lines + 1,
                   f"file unreadable from here ({type(exc).__name__}: {exc}); rest skipped")
        flush()
    result = ShareDone(lines, read, rejected)
    (temp / "done.json").write_text(json.dumps(result.__dict__), encoding="utf-8")
    os.replace(temp, final)
    return result


def line_offsets(shares: list[Share], done: list[ShareDone]) -> list[int]:
    """For each share, the lines of its file before it (share numbers + offset = file line)."""
    offsets: list[int] = []
    before: dict[int, int] = {}
    for share, report in zip(shares, done, strict=True):
        offsets.append(before.get(share.file, 0))
        before[share.file] = offsets[-1] + report.lines
    return offsets
