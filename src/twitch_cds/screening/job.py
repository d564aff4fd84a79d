"""``screen()``: a Bulk Data export in, a worklist, CDS Hooks responses and a summary out.

Partition the export into patient buckets (flat memory), run the buckets serially or in a
pool of worker processes (one durable-rules engine per process, never threads), write the
outputs. Partial output of an interrupted run is never left looking complete: the summary,
written last, is what marks a finished run; rerun an interrupted one.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pydantic import BaseModel

from twitch_cds.evaluate import _now
from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.screening.output import Outputs, WorklistFormat
from twitch_cds.screening.partition import Partitioned, bucket_count, partition
from twitch_cds.screening.progress import Progress, log
from twitch_cds.screening.sources import export_files
from twitch_cds.screening.worker import BucketOutcome, Settings, run_bucket


class ScreenSummary(BaseModel):
    """What ``summary.json`` holds."""

    files: int
    lines_read: int
    resources_read: int
    patients_read: int
    patients_evaluated: int
    patients_flagged: int
    patients_by_card_kind: dict[str, int]
    patients_by_indicator: dict[str, int]
    lines_rejected: int
    patients_failed: int
    workers: int
    engine: str
    now: str
    seconds: float
    patients_per_second: float
    resources_per_second: float
    outputs: dict[str, str]


def _warm() -> None:
    """Load the ruleset, compile the engine and build the gate in a fresh worker."""
    from twitch_cds.evaluate import engine_for
    from twitch_cds.screening.evaluate_many import gate_for

    knowledge = default_knowledge()
    engine_for(knowledge)
    gate_for(knowledge)


def _buckets(parts: Iterator[Partitioned], settings: Settings, workers: int,
             dask: str | None) -> Iterator[BucketOutcome]:
    """Outcomes in bucket order. ``parts`` yields the partitioned export once: with a pool,
    the workers start (and load the ruleset) while the export is being partitioned."""
    if dask is not None:
        from twitch_cds.screening.dask_adapter import dask_buckets

        done = next(parts)
        yield from dask_buckets(done.buckets, done.files, settings, dask, workers)
        return
    if workers <= 1:
        done = next(parts)
        for bucket in done.buckets:
            yield run_bucket(bucket, done.files, settings)
        return
    context = multiprocessing.get_context("spawn")  # a fresh engine per process, no fork state
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        warming = [pool.submit(_warm) for _ in range(workers)]
        done = next(parts)
        for future in warming:
            future.result()
        yield from pool.map(run_bucket, done.buckets, [done.files] * len(done.buckets),
                            [settings] * len(done.buckets))


def screen(
    export: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    workers: int = 1,
    fmt: WorklistFormat = "csv",
    now: dt.datetime | str | None = None,
    lang: Lang = "en",
    parameters: Mapping[str, float] | None = None,
    progress: bool = True,
    dask: str | None = None,
) -> ScreenSummary:
    """Screen every patient of a Bulk Data export (manifest, directory of ``.ndjson`` /
    ``.ndjson.gz`` files, or a list of files) and write ``worklist.csv`` (or ``.ndjson``),
    ``responses.ndjson``, ``rejected.ndjson``, ``failed.ndjson``, ``group.json`` (a FHIR
    Group of the flagged patients) and ``summary.json`` (written last) to
    ``out``. ``workers`` > 1 runs that many processes; ``dask`` (a scheduler address, or
    ``"local"`` for a local cluster of ``workers`` processes) runs the buckets on Dask."""
    started = time.monotonic()
    clock = _now(now)
    default_knowledge().parameters.resolve(parameters)  # a bad parameter fails before work
    files = export_files(export)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    summary_path = target / "summary.json"
    if not summary_path.exists() and (target / "responses.ndjson").exists():
        log.warning("%s holds an unfinished run (no summary.json): it is screened again from "
                    "the start and its files replaced", target)
    summary_path.unlink(missing_ok=True)  # present only once this run has finished
    settings = Settings(now=clock, lang=lang, parameters=dict(parameters or {}))
    totals = Counter[str]()
    with tempfile.TemporaryDirectory(prefix="twitch-cds-screen-") as scratch:
        outputs = Outputs(target, Path(scratch), fmt)
        made: list[Partitioned] = []

        def partitioned() -> Iterator[Partitioned]:
            made.append(partition(files, Path(scratch), bucket_count(files), outputs.reject))
            yield made[0]

        bar: Progress | None = None
        for outcome in _buckets(partitioned(), settings, workers, dask):
            bar = bar or Progress(len(made[0].buckets), enabled=progress)
            totals.update(patients=outcome.patients, resources=outcome.resources,
                          evaluated=outcome.evaluated)
            outputs.add(outcome)
            bar.update(outcome.patients)
        if bar is not None:
            bar.close()
        parts = made[0]
        written = outputs.finish()
    seconds = time.monotonic() - started
    summary = ScreenSummary(
        files=len(files), lines_read=parts.lines, resources_read=totals["resources"],
        patients_read=totals["patients"], patients_evaluated=totals["evaluated"],
        patients_flagged=sum(outputs.flagged.values()),
        patients_by_card_kind=dict(sorted(outputs.kinds.items())),
        patients_by_indicator=dict(outputs.flagged),
        lines_rejected=outputs.rejected, patients_failed=outputs.failed, workers=workers,
        engine=f"dask {dask}" if dask else ("processes" if workers > 1 else "serial"),
        now=clock.isoformat(), seconds=round(seconds, 3),
        patients_per_second=round(totals["patients"] / seconds, 1),
        resources_per_second=round(totals["resources"] / seconds, 1),
        outputs={name: str(target / name) for name in [*written, "summary.json"]})
    summary_path.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return summary
