"""Metrics across worker processes: prometheus-client's multiprocess mode for ``serve``.

Each worker of ``twitch-cds serve --workers N`` is its own process with its own counters;
a scrape reaches one of them. With ``PROMETHEUS_MULTIPROC_DIR`` set before the workers
start, each writes its values to files there and a scrape of any worker adds them all up.
This module must not import prometheus-client: it reads the variable when first imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_metrics(enabled: bool) -> Iterator[str | None]:
    """A fresh, private directory in ``PROMETHEUS_MULTIPROC_DIR`` for the workers' lifetime,
    removed afterwards (yields it). An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used
    as it is (empty it between runs, as prometheus-client asks)."""
    if not enabled or os.environ.get(DIRECTORY):
        yield os.environ.get(DIRECTORY) if enabled else None
        return
    directory = tempfile.mkdtemp(prefix="twitch-cds-metrics-")
    os.environ[DIRECTORY] = directory
    try:
        yield directory
    finally:
        os.environ.pop(DIRECTORY, None)
        shutil.rmtree(directory, ignore_errors=True)
