"""Population screening throughput and memory: patients/s, resources/s, peak RSS per process.

    python benchmarks/screen.py [--sizes 10000 100000 1000000] [--workers 1 2] [--keep DIR]

Generates each export with ``population.py`` (about ten resources a patient, 10 % twitching),
then screens it end to end (reading, grouping, evaluating, writing) once per worker count,
each run in a fresh interpreter so its peak RSS (``ru_maxrss``) is its own: the parent's, and
the largest worker's. The machine may be shared: each run is repeated ``--repeat`` times and
the fastest kept; CPU seconds (user + system, parent and workers) and patients per CPU
second are given too, with the load average before the run, because they say what a core
does when other processes take turns on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from population import generate  # noqa: E402

RUN = """
import json, multiprocessing, os, resource, sys, time
from twitch_cds.screening import job, screen
if os.environ.get("SCREEN_BENCH_ALWAYS_POOL"):
    job.SERIAL_BELOW_BYTES = 0
def cpu():
    return sum(getattr(resource.getrusage(who), f) for f in ("ru_utime", "ru_stime")
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
started, cpu_started = time.monotonic(), cpu()
load = os.getloadavg()[0]
dask = sys.argv[4] if len(sys.argv) > 4 else None
s = screen(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), now="2026-11-24T09:00:00Z",
           progress=False, dask=dask)
wall = time.monotonic() - started
for child in multiprocessing.active_children():  # reaped, so their rusage counts
    child.join()
print(json.dumps({"wall": wall, "patients": s.patients_read,
                  "resources": s.resources_read, "flagged": s.patients_flagged,
                  "evaluated": s.patients_evaluated, "load": load, "engine": s.engine,
                  "phases": s.seconds_by_phase,
                  "cpu": cpu() - cpu_started,
                  "rss_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="resources (about ten a patient)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--dask", type=int, nargs="*", default=[],
                        help="also run on a Dask local cluster of these many workers")
    parser.add_argument("--always-pool", action="store_true",
                        help="use the worker processes even for a small export")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest kept")
    parser.add_argument("--keep", type=Path, help="keep exports here (default: a temp dir)")
    args = parser.parse_args()
    env = {**os.environ, **({"SCREEN_BENCH_ALWAYS_POOL": "1"} if args.always_pool else {})}
    root = args.keep or Path(tempfile.mkdtemp(prefix="twitch-cds-bench-"))
    print("| resources | patients | engine | wall s | patients/s | resources/s | flagged |"
          " peak RSS main MiB | peak RSS worker MiB | CPU s | patients/CPU s | load | phases s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        export = root / f"export-{size}"
        if not (export / "manifest.json").exists():
            started = time.monotonic()
            generate(export, size // 10, seed=1, split=2)
            print(f"<!-- generated {size} resources in {time.monotonic() - started:.1f} s -->")
        runs: list[tuple[int, list[str]]] = [(w, []) for w in args.workers]
        runs += [(w, ["local"]) for w in args.dask]
        for workers, dask in runs:
            out = root / f"out-{size}-{workers}{'-dask' if dask else ''}"
            best = None
            for _ in range(args.repeat):
                done = subprocess.run([sys.executable, "-c", RUN, str(export), str(out),
                                       str(workers), *dask], check=True, capture_output=True,
                                      text=True, env=env)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                best = r if best is None or r["wall"] < best["wall"] else best
            assert best is not None
            r = best
            worker_rss = f"{r['rss_worker']:.0f}" if r["rss_worker"] else "-"
            engine = (f"Dask local, {workers} workers" if dask else
                      f"{workers} processes" if r["engine"] == "processes" else
                      "serial" if workers == 1 else f"serial (asked {workers}: small export)")
            phases = " / ".join(f"{v:.2f}" for v in r["phases"].values())
            print(f"| {r['resources']:,} | {r['patients']:,} | {engine} | {r['wall']:.2f} | "
                  f"{r['patients'] / r['wall']:,.0f} | {r['resources'] / r['wall']:,.0f} | "
                  f"{r['flagged']:,} | {r['rss_main']:.0f} | {worker_rss} | {r['cpu']:.1f} | "
                  f"{r['patients'] / r['cpu']:,.0f} | {r['load']:.1f} | {phases} |", flush=True)

if __name__ == "__main__":
    main()
