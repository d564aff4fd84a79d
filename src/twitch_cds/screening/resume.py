"""The working directory of a run (``OUT/.work``) and what makes two runs the same.

``run.json`` holds the run's fingerprint: each input file's path, size and modification
time, the bucket count, the clock, the language, the effective parameters and a digest of
every file of the ruleset. A run on a directory whose unfinished run has the same
fingerprint resumes it (finished shares and buckets are kept); one with another fingerprint
is refused rather than mixing results (``restart`` discards the old work). The directory
is removed once ``summary.json`` is written.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twitch_cds.knowledge.bundle import Knowledge

WORK = ".work"


class ResumeError(ValueError):
    """The output directory holds an unfinished run of other inputs or settings."""


@functools.cache
def ruleset_digest(directory: Path) -> str:
    """A digest of every file under the ruleset directory (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def fingerprint(files: list[Path], buckets: int, now: dt.datetime, lang: str,
                parameters: Mapping[str, float], knowledge: Knowledge) -> dict[str, Any]:
    stats = [(str(p.resolve()), p.stat()) for p in files]
    return {
        "files": [{"path": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
                  for name, st in stats],
        "buckets": buckets,
        "now": now.isoformat(),
        "lang": lang,
        "parameters": dict(sorted(knowledge.parameters.resolve(parameters).items())),
        "ruleset": ruleset_digest(knowledge.directory),
    }


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def previous_now(target: Path) -> str | None:
    """The clock of an unfinished run in ``target`` (a resumed run keeps its clock)."""
    try:
        data = json.loads((target / WORK / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    now = data.get("now") if isinstance(data, dict) else None
    return now if isinstance(now, str) else None


def prepare(target: Path, run: dict[str, Any], restart: bool) -> tuple[Path, bool]:
    """The work directory for this run and whether it resumes an unfinished one. Raises
    ResumeError when an unfinished run of another fingerprint is in the way."""
    work = target / WORK
    manifest = work / "run.json"
    if work.exists() and not restart:
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None  # killed before its manifest was written: nothing finished
        if isinstance(old, dict) and old:
            changed = _differences(old, run)
            if changed:
                raise ResumeError(
                    f"{target} holds an unfinished run of other inputs or settings "
                    f"({', '.join(changed)} differ); rerun with restart (--restart) to "
                    "discard it, or choose another output directory")
            return work, True
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    temp = manifest.with_name("run.json.tmp")
    temp.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temp, manifest)
    return work, False


def finished(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
