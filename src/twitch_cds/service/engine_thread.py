"""The worker's one engine thread: ``evaluate()`` never runs on the event loop.

The durable-rules extension holds the GIL while it runs, so a second engine thread would
only queue; one dedicated thread per worker process keeps evaluations one at a time while
the event loop stays free for ``/healthz``, discovery, JWT checks and FHIR fetches. An
evaluation whose turn comes too late to finish by its request's deadline (the deadline has
passed, or is nearer than the evaluation is expected to take) is not started; one already
running finishes in the thread (the engine cannot be interrupted) and its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.result import EvaluationResult


class NotStarted(TimeoutError):
    """The evaluation's turn came too late for it to finish by the deadline."""


class EngineThread:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twitch-cds-engine")

    async def evaluate(self, data: dict[str, Any], *, lang: Lang, knowledge: Knowledge,
                       deadline: float, expected_s: float = 0.0,
                       learn: Callable[[float], None] | None = None) -> EvaluationResult:
        """``twitch_cds.evaluate`` in the engine thread, due by ``deadline`` (a
        ``time.perf_counter()`` instant). ``TimeoutError`` once it passes; ``NotStarted``
        (a ``TimeoutError``) when the turn comes later than ``deadline - expected_s``.
        ``learn`` gets the seconds each evaluation took (in the engine thread)."""
        budget = deadline - time.perf_counter()

        def job() -> EvaluationResult:
            begun = time.perf_counter()
            # an expected cost over the whole budget is still tried: that is how it is relearnt
            if begun >= deadline or (expected_s < budget and begun + expected_s > deadline):
                raise NotStarted
            result = twitch_cds.evaluate(data, lang=lang, knowledge=knowledge)
            if learn is not None:
                learn(time.perf_counter() - begun)
            return result

        running = asyncio.get_running_loop().run_in_executor(self._executor, job)
        return await asyncio.wait_for(running, timeout=max(budget, 0.0))

    async def warm_up(self, knowledge: Knowledge, lang: Lang) -> None:
        """One throw-away evaluation in the engine thread (see ``warmup.py``)."""
        from twitch_cds.service.warmup import warm_up

        await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(warm_up, knowledge, lang))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
