"""Admission control: how much hook work a worker takes on, and whether it can still be done
in time.

A worker evaluates one chart at a time (``engine_thread.py``), so every request admitted
waits for those ahead of it. Past a bounded number admitted at once (``max_queue``), or when
the evaluations already admitted would by themselves use up the time budget, a request is
not taken on at all: it is answered at once (the ``check-incomplete`` card, reason
``overload``) without its body being read, so neither its bytes nor its parsed prefetch are
held. The cost of a call (parsing its body, then evaluating it) is learnt as it runs: a
moving average per body size (powers of two of the ``Content-Length``), since a chart's cost
grows with its size.

Everything here runs on the worker's event loop except ``observe``, which the engine thread
(or the evaluation process's driver thread, with the cost measured in that process) calls
after each evaluation (a float stored in a dict: no lock needed under the GIL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TYPICAL_EVALUATION_MS = 25
"""The heavy benchmark chart's evaluation in a worker (validation cache warm) on the 2-core
development machine: ``max_queue`` defaults to ``time_budget_ms`` divided by this."""
SMOOTHING = 0.3
"""Weight of the newest evaluation in the moving average of its size class."""


def default_max_queue(time_budget_ms: int) -> int:
    """As many typical evaluations as fit in the budget, and at least two (one evaluating,
    one ready to start)."""
    return max(2, time_budget_ms // TYPICAL_EVALUATION_MS)


def size_class(size: int | None) -> int | None:
    """The power of two a body's size falls in (``None``: unknown, chunked upload)."""
    return None if size is None else size.bit_length()


@dataclass
class Ticket:
    """One admitted request: what it is expected to cost, released when it is answered."""

    expected_s: float
    size: int | None


@dataclass
class Admission:
    limit: int
    budget_s: float
    active: int = 0
    pending_s: float = 0.0
    """The expected evaluation time of every request admitted and not yet answered."""
    _costs: dict[int | None, float] = field(default_factory=dict)

    def expected_s(self, size: int | None) -> float:
        """The moving average of evaluations of this size class; unknown: the dearest one
        seen for an unknown size, else 0 (nothing learnt yet: admit and learn)."""
        found = self._costs.get(size_class(size))
        if found is not None:
            return found
        return max(self._costs.values(), default=0.0) if size is None else 0.0

    def admit(self, size: int | None) -> Ticket | None:
        """A ticket, or None when the worker is full: ``limit`` requests admitted, or the
        work already admitted plus this one's would overrun the budget. A worker with
        nothing admitted always takes the request (its evaluation is how cost is learnt)."""
        expected = self.expected_s(size)
        if self.active >= self.limit or (
                self.active and self.pending_s + expected > self.budget_s):
            return None
        self.active += 1
        self.pending_s += expected
        return Ticket(expected, size)

    def release(self, ticket: Ticket) -> None:
        self.active -= 1
        self.pending_s = max(0.0, self.pending_s - ticket.expected_s)

    def observe(self, size: int | None, seconds: float) -> None:
        """Learn from one evaluation (called from the engine or driver thread)."""
        key = size_class(size)
        before = self._costs.get(key)
        self._costs[key] = seconds if before is None else (
            SMOOTHING * seconds + (1 - SMOOTHING) * before)
