"""The worker's one engine thread: ``evaluate()`` never runs on the event loop.

The durable-rules extension holds the GIL while it runs, so a second engine thread would
only queue; one dedicated thread per worker process keeps evaluations one at a time while
the event loop stays free for ``/healthz``, discovery, JWT checks and FHIR fetches. An
evaluation still queued when its request's time budget passes is cancelled before it
starts; one already running finishes in the thread (the engine cannot be interrupted) and
its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import twitch_cds
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.result import EvaluationResult


class EngineThread:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twitch-cds-engine")

    async def evaluate(self, data: dict[str, Any], *, lang: Lang, knowledge: Knowledge,
                       timeout_s: float) -> EvaluationResult:
        """``twitch_cds.evaluate`` in the engine thread; ``TimeoutError`` past ``timeout_s``."""
        call = functools.partial(twitch_cds.evaluate, data, lang=lang, knowledge=knowledge)
        running = asyncio.get_running_loop().run_in_executor(self._executor, call)
        return await asyncio.wait_for(running, timeout=max(timeout_s, 0.0))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
