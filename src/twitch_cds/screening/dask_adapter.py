"""Run the shares and buckets on Dask: a local cluster, or a scheduler at an address (the
``screen`` extra). Each worker runs one thread, because durable-rules is not thread-safe; a
cluster whose workers run more is refused. The tasks read and write the output directory's
work directory (``OUT/.work``), so a remote cluster's workers must see the same file system.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class DaskError(RuntimeError):
    """Dask is missing, or its cluster would run the engine from several threads."""


def _distributed() -> Any:
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise DaskError("the Dask adapter needs: pip install 'twitch-cds[screen]'") from exc


class DaskRunner:
    """``map(fn, items, **kwargs)``: results in item order, computed on the cluster."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def map(self, fn: Callable[..., Any], items: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        futures = self.client.map(fn, items, pure=False, **kwargs)
        for future in futures:
            yield future.result()
            future.release()


@contextmanager
def dask_runner(address: str, workers: int) -> Iterator[DaskRunner]:
    """A runner on a scheduler at ``address``, or ``local``: a local cluster of ``workers``
    processes with one thread each."""
    distributed = _distributed()
    cluster = None
    if address == "local":
        cluster = distributed.LocalCluster(n_workers=max(1, workers), threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    else:
        client = distributed.Client(address)
    try:
        threads = client.nthreads()
        crowded = {w: n for w, n in threads.items() if n != 1}
        if crowded:
            raise DaskError(f"Dask workers with more than one thread: {crowded}; durable-rules "
                            "is not thread-safe (start workers with --nthreads 1)")
        yield DaskRunner(client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
