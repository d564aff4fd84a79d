"""``screen()``: a Bulk Data export in, a worklist, CDS Hooks responses and a summary out.

Two phases, each a list of independent tasks run serially, in a pool of worker processes
(one durable-rules engine per process, never threads) or on Dask: partition the export's
shares into patient buckets (flat memory), then screen each bucket into a part file. The
outputs are then assembled from the parts. Every task's result is a file that appears only
when complete, in ``OUT/.work``, so an interrupted run of the same inputs resumes where it
stopped; the summary, written last, is what marks a finished run.
"""

from __future__ import annotations

import datetime as dt
import functools
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from twitch_cds.evaluate import _now
from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.screening import worker
from twitch_cds.screening.evaluate_many import gate_for
from twitch_cds.screening.output import WorklistFormat, assemble
from twitch_cds.screening.partition import (
    bucket_count,
    line_offsets,
    partition_share,
    plan_shares,
)
from twitch_cds.screening.progress import Progress, log
from twitch_cds.screening.resume import fingerprint, finished, prepare, previous_now
from twitch_cds.screening.sources import export_files
from twitch_cds.screening.worker import BucketTask, Settings

SERIAL_BELOW_BYTES = 12 * 1024 * 1024
"""When workers must be spawned (no ``fork``, or the caller runs other threads), an export
smaller than this (about 30k resources) is screened in the calling process even when
workers are asked for: a spawned worker imports and loads the ruleset again (about 0.6 s),
which costs more than it saves. Forked workers start at once and pay off even at 10k
resources (technical, measured)."""


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
    buckets: int
    buckets_resumed: int
    seconds: float
    seconds_by_phase: dict[str, float]
    """start (inputs, ruleset, workers), partition, evaluate (the buckets), assemble."""
    patients_per_second: float
    resources_per_second: float
    outputs: dict[str, str]


class Runner(Protocol):
    def map(self, fn: Callable[..., Any], items: Sequence[Any],
            **kwargs: Any) -> Iterator[Any]: ...


class SerialRunner:
    def map(self, fn: Callable[..., Any], items: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        return (fn(item, **kwargs) for item in items)


class PoolRunner:
    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool

    def map(self, fn: Callable[..., Any], items: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        return self.pool.map(functools.partial(fn, **kwargs), items)


def start_method() -> str:
    """``fork`` where there is one and this process runs no other thread: the workers start
    at once with the ruleset already loaded (a spawned worker imports and loads it again,
    about 0.6 s). Otherwise ``spawn``, because forking a threaded process is unsafe. Either
    way each worker compiles its own engine on its first bucket."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


@contextmanager
def _pool(workers: int) -> Iterator[Runner]:
    method = start_method()
    if method == "fork":
        gate_for(default_knowledge())  # loaded once here, inherited by every worker
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
    try:
        yield PoolRunner(pool)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # results are in; don't wait on exits


@contextmanager
def _serial() -> Iterator[Runner]:
    yield SerialRunner()


def _runner(engine: str, workers: int, dask: str | None) -> AbstractContextManager[Runner]:
    if dask is not None:
        from twitch_cds.screening.dask_adapter import dask_runner

        return dask_runner(dask, workers)
    return _pool(workers) if engine == "processes" else _serial()


def _run_bucket(task: BucketTask, settings: Settings) -> worker.BucketCounts:
    return worker.run_bucket(task, settings)  # looked up at call time (tests replace it)


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
    restart: bool = False,
) -> ScreenSummary:
    """Screen every patient of a Bulk Data export (manifest, directory of ``.ndjson`` /
    ``.ndjson.gz`` files, or a list of files) and write ``worklist.csv`` (or ``.ndjson``),
    ``responses.ndjson``, ``rejected.ndjson``, ``failed.ndjson``, ``group.json`` (a FHIR
    Group of the flagged patients) and ``summary.json`` (written last) to ``out``.
    ``workers`` > 1 runs that many processes; ``dask`` (a scheduler address, or ``"local"``
    for a local cluster of ``workers`` processes) runs the tasks on Dask. An unfinished run
    in ``out`` of the same inputs and settings is resumed; one of others raises
    ``ResumeError`` unless ``restart`` discards it."""
    started = time.monotonic()
    knowledge = default_knowledge()
    knowledge.parameters.resolve(parameters)  # a bad parameter fails before any work
    files = export_files(export)
    target = Path(out).resolve()
    target.mkdir(parents=True, exist_ok=True)
    summary_path = target / "summary.json"
    earlier = None if (now is not None or restart) else previous_now(target)
    clock = _now(now if earlier is None else earlier)  # a resumed run keeps its clock
    buckets = bucket_count(files)
    run = fingerprint(files, buckets, clock, lang, parameters or {}, knowledge)
    work, resumed = prepare(target, run, restart)
    if resumed:
        log.info("%s: resuming the unfinished run of the same inputs", target)
    elif not summary_path.exists() and (target / "responses.ndjson").exists():
        log.warning("%s holds an unfinished run without resumable work: it is screened "
                    "again from the start and its files replaced", target)
    summary_path.unlink(missing_ok=True)  # present only once this run has finished
    size = sum(p.stat().st_size for p in files)
    pool_pays = start_method() == "fork" or size >= SERIAL_BELOW_BYTES
    engine = ("dask" if dask is not None else
              "processes" if workers > 1 and pool_pays else "serial")
    if engine == "serial" and workers > 1:
        log.info("a small export (%d bytes): screened in this process", size)
    settings = Settings(now=clock, lang=lang, parameters=dict(parameters or {}))
    shares = plan_shares(files)
    names = [str(p.resolve()) for p in files]
    totals: Counter[str] = Counter()
    phases: dict[str, float] = {}
    mark = started

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = round(time.monotonic() - mark, 3)
        mark = time.monotonic()

    with _runner(engine, workers, dask) as runner:
        phase("start")
        done = list(runner.map(partition_share, shares, files=names, work=work, k=buckets))
        phase("partition")
        if progress:
            log.info("partitioned %d lines into %d buckets in %.1f s", sum(d.lines for d in done),
                     buckets, phases["partition"])
        offsets = line_offsets(shares, done)
        tasks = [BucketTask(b, work, names, offsets) for b in range(buckets)]
        bar = Progress(buckets, enabled=progress, started=started)
        try:
            for counts in runner.map(_run_bucket, tasks, settings=settings):
                totals.update(patients=counts.patients, resources=counts.resources,
                              evaluated=counts.evaluated, resumed=int(counts.resumed))
                bar.update(counts.patients)
        finally:
            bar.close()
        phase("evaluate")
    written = assemble(target, work, offsets, buckets, fmt)
    phase("assemble")
    seconds = time.monotonic() - started
    summary = ScreenSummary(
        files=len(files), lines_read=sum(d.read for d in done),
        resources_read=totals["resources"],
        patients_read=totals["patients"], patients_evaluated=totals["evaluated"],
        patients_flagged=sum(written.flagged.values()),
        patients_by_card_kind=dict(sorted(written.kinds.items())),
        patients_by_indicator=dict(written.flagged),
        lines_rejected=written.rejected, patients_failed=written.failed, workers=workers,
        engine=(f"dask {dask}" if dask else engine),
        now=clock.isoformat(), buckets=buckets, buckets_resumed=totals["resumed"],
        seconds=round(seconds, 3), seconds_by_phase=phases,
        patients_per_second=round(totals["patients"] / seconds, 1),
        resources_per_second=round(totals["resources"] / seconds, 1),
        outputs={name: str(target / name) for name in [*written.names, "summary.json"]})
    temp = summary_path.with_name("summary.json.tmp")
    temp.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(temp, summary_path)
    finished(work)
    return summary
