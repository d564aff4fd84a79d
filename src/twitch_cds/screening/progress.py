"""Progress of a long run: a tqdm bar (patients/s, estimate) on a terminal when tqdm is
installed (the ``screen`` extra), plain periodic log lines otherwise."""

from __future__ import annotations

import importlib
import logging
import shutil
import sys
import time
from typing import Any

log = logging.getLogger("twitch_cds.screen")
LOG_EVERY_SECONDS = 10.0


class Progress:
    def __init__(self, total_buckets: int, enabled: bool = True,
                 started: float | None = None) -> None:
        """``started``: the run's start (``time.monotonic()``), so that patients/s is the
        run's end-to-end rate, partitioning included."""
        self.total = total_buckets
        self.done = 0
        self.patients = 0
        self.started = time.monotonic() if started is None else started
        self._last_log = self.started
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            try:
                tqdm = importlib.import_module("tqdm").tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                # the size given, not left to tqdm: a terminal that reports 0 rows (a fresh
                # pseudo-terminal, some CI runners) would hide the bar
                size = shutil.get_terminal_size((100, 20))
                self._bar = tqdm(total=total_buckets, unit="bucket", file=sys.stderr,
                                 desc="screening", ncols=size.columns, nrows=size.lines)
        self.enabled = enabled

    def update(self, patients: int) -> None:
        self.done += 1
        self.patients += patients
        rate = self.patients / max(time.monotonic() - self.started, 1e-9)
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.patients} patients, {rate:,.0f} patients/s")
            self._bar.update(1)
        elif self.enabled and (time.monotonic() - self._last_log >= LOG_EVERY_SECONDS
                               or self.done == self.total):
            self._last_log = time.monotonic()
            log.info("screened %d/%d buckets, %d patients, %s patients/s", self.done,
                     self.total, self.patients, f"{rate:,.0f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
