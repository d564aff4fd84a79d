"""The worker's engine thread (``evaluate_in: thread``): ``evaluate()`` off the event loop,
in the HTTP process.

The default is a child process (``engine_process.py``): the durable-rules extension and
fhir.resources' validation hold the GIL for long stretches, and in a thread they hold it
from the event loop too, delaying sheds and deadline answers under load. This thread is for
embedding the app with knowledge of one's own, and for tests that replace ``evaluate``.
One dedicated thread keeps evaluations one at a time (a second would only queue). An
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

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.service.evaluated import Evaluated, evaluated
from twitch_cds.service.hook_body import parsed


class NotStarted(TimeoutError):
    """The evaluation's turn came too late for it to finish by the deadline."""


class EngineThread:
    restarts = 0
    """Never restarted (a thread cannot be stopped); for ``/healthz``, like the process's."""
    pid: int | None = None

    def __init__(self, *, lang: Lang, knowledge: Knowledge) -> None:
        self._lang = lang
        self._knowledge = knowledge
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twitch-cds-engine")

    async def evaluate(self, payload: bytes, *, deadline: float, expected_s: float = 0.0,
                       learn: Callable[[float], None] | None = None) -> Evaluated:
        """``twitch_cds.evaluate`` of a hook request (its JSON ``payload``) in
        the engine thread, due by ``deadline`` (a ``time.perf_counter()`` instant).
        ``TimeoutError`` once it passes; ``NotStarted`` (a ``TimeoutError``) when the turn
        comes later than ``deadline - expected_s``. ``learn`` gets the seconds each
        evaluation took (in the engine thread, parsing included)."""
        budget = deadline - time.perf_counter()

        def job() -> Evaluated:
            begun = time.perf_counter()
            # an expected cost over the whole budget is still tried: that is how it is relearnt
            if begun >= deadline or (expected_s < budget and begun + expected_s > deadline):
                raise NotStarted
            result = twitch_cds.evaluate(parsed(payload), lang=self._lang,
                                         knowledge=self._knowledge)
            seconds = time.perf_counter() - begun
            if learn is not None:
                learn(seconds)
            return evaluated(result, seconds)

        running = asyncio.get_running_loop().run_in_executor(self._executor, job)
        return await asyncio.wait_for(running, timeout=max(budget, 0.0))

    async def warm_up(self) -> None:
        """One throw-away evaluation in the engine thread (see ``warmup.py``)."""
        from twitch_cds.service.warmup import warm_up

        await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(warm_up, self._knowledge, self._lang))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
