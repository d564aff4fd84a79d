"""The worker's evaluation process: ``evaluate()`` runs outside the HTTP process's GIL.

durable-rules' C calls and fhir.resources' validation hold the GIL for long stretches, so
an engine *thread* in the HTTP process delays everything its event loop does: shedding a
call, answering one whose deadline has passed, writing an answer. Each worker therefore owns
one child process (``multiprocessing``, ``spawn`` context: nothing of the event loop, its
sockets or its threads is inherited) that holds the knowledge, the validation cache and the
engine, and evaluates one chart at a time. The HTTP process sends it the request body as
bytes and gets the cards back as plain data (``evaluated.py``); it keeps accepting, shedding,
reading bodies and answering deadlines while the child computes.

One driver thread in the HTTP process feeds the child: a call whose turn comes too late to
finish by its deadline is not sent at all; the HTTP side answers ``check-incomplete`` at the
deadline whatever the child is doing, and a late result is dropped. A child still busy
``kill_after_s`` past a call's deadline (stuck, or a chart far beyond the budget) is killed
and a new one started, as is one that died, so no worker is left without an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from twitch_cds.errors import InputError
from twitch_cds.knowledge.cardtexts import Lang
from twitch_cds.service.engine_thread import NotStarted
from twitch_cds.service.evaluated import Evaluated, evaluated
from twitch_cds.service.hook_body import parsed

log = logging.getLogger("twitch_cds.service")
START_TIMEOUT_S = 120.0
"""Longest wait for a new evaluation process to import, compile the ruleset and warm up."""
_READY = b"ready"
NICENESS = 5
"""The evaluation process runs at this lower CPU priority (``os.nice``): when the cores are
contended, the HTTP process (shedding, answering deadlines, writing answers) gets them
first and the evaluations wait, which the deadline already covers. On an idle core it
makes no difference."""


class EngineFailed(RuntimeError):
    """The evaluation process failed on a chart, or ended while evaluating it."""


def serve_evaluations(connection: Connection, lang: Lang, validation_cache_entries: int) -> None:
    """The evaluation process: warm up, then evaluate each body received, one at a time,
    until the HTTP process closes the pipe."""
    import twitch_cds
    from twitch_cds.knowledge.bundle import default_knowledge
    from twitch_cds.service.logs import JsonFormatter
    from twitch_cds.service.warmup import warm_up

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    handler = logging.StreamHandler(sys.stderr)  # a new interpreter: the worker's JSON lines
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    knowledge = default_knowledge()
    twitch_cds.configure_validation_cache(validation_cache_entries)
    warm_up(knowledge, lang)
    connection.send_bytes(_READY)
    while True:
        try:
            payload = connection.recv_bytes()
        except (EOFError, OSError):
            return
        begun = time.perf_counter()
        reply: Any
        try:
            result = twitch_cds.evaluate(parsed(payload), lang=lang, knowledge=knowledge)
            reply = evaluated(result, time.perf_counter() - begun)
        except InputError as exc:
            reply = ("input", str(exc), exc.message_id, exc.params)
        except Exception as exc:  # reported by type only: no chart content leaves in a message
            reply = ("failure", type(exc).__name__)
        del payload
        connection.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


@dataclass(eq=False)
class _Job:
    payload: bytes
    deadline: float
    """A ``time.perf_counter()`` instant (CLOCK_MONOTONIC on Linux)."""
    budget_s: float
    expected_s: float
    learn: Callable[[float], None] | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Evaluated]

    def settle(self, result: Evaluated | None = None,
               exception: BaseException | None = None) -> None:
        """Hand the outcome to the event loop (dropped if the call was answered already)."""
        def set_outcome() -> None:
            if self.future.done():
                return
            if exception is not None:
                self.future.set_exception(exception)
            else:
                self.future.set_result(result)  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the loop closed: the service is stopping
            self.loop.call_soon_threadsafe(set_outcome)


class EngineProcess:
    """One evaluation child process per worker, fed by one driver thread."""

    def __init__(self, *, lang: Lang, validation_cache_entries: int, kill_after_s: float,
                 on_restart: Callable[[], None] | None = None) -> None:
        self._lang = lang
        self._cache_entries = validation_cache_entries
        self.kill_after_s = kill_after_s
        self._on_restart = on_restart
        self._context = multiprocessing.get_context("spawn")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._process: Any = None
        self._connection: Connection | None = None
        self._closing = False
        self.restarts = 0
        self._driver = threading.Thread(target=self._drive, name="twitch-cds-engine-driver",
                                        daemon=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def warm_up(self) -> None:
        """Start the evaluation process (it compiles the ruleset and warms up) and its
        driver; the worker takes calls once this returns."""
        await asyncio.to_thread(self._start)
        self._driver.start()

    async def evaluate(self, payload: bytes, *, deadline: float, expected_s: float = 0.0,
                       learn: Callable[[float], None] | None = None) -> Evaluated:
        """The cards for a hook request (its JSON ``payload``), due by ``deadline`` (a
        ``time.perf_counter()`` instant): ``TimeoutError`` once it passes (``NotStarted``
        when its turn comes too late), ``InputError`` for a body the engine cannot read,
        ``EngineFailed`` otherwise."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Evaluated] = loop.create_future()
        budget = deadline - time.perf_counter()
        job = _Job(payload, deadline, budget, expected_s, learn, loop, future)
        del payload
        self._jobs.put(job)
        try:
            return await asyncio.wait_for(future, timeout=max(budget, 0.0))
        finally:  # answered: a job still queued (a restart under way) holds no body
            job.payload = b""

    def shutdown(self) -> None:
        """Stop the driver and the evaluation process (graceful shutdown of the worker)."""
        self._closing = True
        self._jobs.put(None)
        process = self._process
        if self._connection is not None:
            self._connection.close()
        if process is not None:
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join(timeout=2)

    # --- the driver thread --------------------------------------------------------------

    def _start(self) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve_evaluations, args=(theirs, self._lang, self._cache_entries),
            name="twitch-cds-engine", daemon=True)
        process.start()
        theirs.close()
        try:
            ready = ours.poll(START_TIMEOUT_S) and ours.recv_bytes() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready or self._closing:
            process.kill()
            process.join(timeout=5)
            ours.close()
            raise EngineFailed("the evaluation process did not start")
        self._process, self._connection = process, ours
        log.info("evaluation process %d ready", process.pid,
                 extra={"fields": {"enginePid": process.pid}})

    def _restart(self, why: str) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if process is not None:
            process.kill()
            process.join(timeout=5)
        if connection is not None:
            connection.close()
        if self._closing:
            return
        self.restarts += 1
        log.warning("evaluation process %s: %s; starting a new one",
                    process.pid if process is not None else "-", why,
                    extra={"fields": {"reason": why}})
        if self._on_restart is not None:
            self._on_restart()
        try:
            self._start()
        except EngineFailed as exc:  # tried again at the next call
            log.error("%s", exc)

    def _drive(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._run(job)
            except Exception as exc:  # the driver must outlive any one call
                job.settle(exception=EngineFailed(type(exc).__name__))
                if self._closing:
                    return

    def _run(self, job: _Job) -> None:
        now = time.perf_counter()
        # an expected cost over the whole budget is still tried: that is how it is relearnt
        if job.future.done() or now >= job.deadline or (
                job.expected_s < job.budget_s and now + job.expected_s > job.deadline):
            job.settle(exception=NotStarted())
            return
        if self._connection is None:  # a restart failed: try once more
            self._restart("not running")
        connection = self._connection
        if connection is None:
            job.settle(exception=EngineFailed("no evaluation process"))
            return
        payload = job.payload
        if not payload:  # answered at its deadline a moment ago
            job.settle(exception=NotStarted())
            return
        begun = time.perf_counter()
        try:
            connection.send_bytes(payload)
            del payload
            if not connection.poll(max(job.deadline + self.kill_after_s - begun, 0.0)):
                if job.learn is not None:  # it costs at least this much: admit fewer
                    job.learn(time.perf_counter() - begun)
                job.settle(exception=TimeoutError())
                self._restart(f"still evaluating {self.kill_after_s:.1f} s after the deadline")
                return
            reply = pickle.loads(connection.recv_bytes())
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            if self._closing:
                job.settle(exception=EngineFailed("the service is stopping"))
                return
            job.settle(exception=EngineFailed("the evaluation process ended"))
            self._restart(f"ended ({type(exc).__name__})")
            return
        if isinstance(reply, Evaluated):
            if job.learn is not None:
                job.learn(reply.seconds)
            job.settle(reply)
        elif reply[0] == "input":
            error = InputError(reply[1])
            error.message_id, error.params = reply[2], reply[3]
            job.settle(exception=error)
        else:
            job.settle(exception=EngineFailed(reply[1]))
