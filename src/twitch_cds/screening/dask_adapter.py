"""Run the buckets on Dask: a local cluster, or a scheduler at an address (the ``screen``
extra). Each worker runs one thread, because durable-rules is not thread-safe; a cluster
whose workers run more is refused. The bucket files are written by the caller, so a remote
cluster's workers must see the same file system (the scratch directory: ``TMPDIR``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twitch_cds.screening.worker import BucketOutcome, Settings, run_bucket


class DaskError(RuntimeError):
    """Dask is missing, or its cluster would run the engine from several threads."""


def _distributed() -> Any:
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise DaskError("the Dask adapter needs: pip install 'twitch-cds[screen]'") from exc


def dask_buckets(buckets: list[Path], files: list[str], settings: Settings, address: str,
                 workers: int) -> Iterator[BucketOutcome]:
    """Each bucket's outcome, in bucket order. ``address`` is a scheduler address, or
    ``local`` for a local cluster of ``workers`` processes with one thread each."""
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
        futures = client.map(run_bucket, buckets, files=files, settings=settings, pure=False)
        for future in futures:
            yield future.result()
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
