"""How fast and how lean is ``evaluate()``? Medians against baselines measured in the same run.

    python benchmarks/evaluate.py            # full run (3 rounds, 100,000 memory calls)
    python benchmarks/evaluate.py --quick    # a smoke run

Cases (``benchmarks/charts.py``): patients whose every resource is read by the rules
(twitching at every visit, weakness Observations and Conditions, low and normal potassium and
sodium, a diuretic, a corticosteroid) at 20, 100, 300 and 1,000 resources; a mostly
irrelevant chart (vitals, with labs, drugs and conditions that vary); and 5,000 relevant
resources, which must return cards.

Baseline: the parse floor, validating every resource of the same chart with fhir.resources
R4B alone (what any FHIR-reading CDS pays before reasoning at all). Floor and evaluate are
interleaved sample by sample (each sample: the floor, then the call), so load from other jobs
falls on both alike; the ratio is taken per sample, its median per round, and reported as
median [min-max] over the rounds.
"Cold" runs with the validation cache off (every chart as if never seen); "warm" has it on
and calls with the same chart again (patient-view firing again on an open chart). The process
is pinned to one core, as the targets are per core.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fhir.resources.R4B as fhir_r4b

sys.path.insert(0, str(Path(__file__).parent))

import charts  # noqa: E402
import twitch_cds  # noqa: E402


def floor_of(resources: list[dict[str, Any]]) -> Callable[[], None]:
    def parse_floor() -> None:
        for resource in resources:
            fhir_r4b.get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return parse_floor


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} [{min(values):.2f}-{max(values):.2f}]"


def paired(floor_fn: Callable[[], None], call: Callable[[], None],
           runs: int) -> tuple[list[float], list[float]]:
    """``runs`` samples, each the floor and then the call: their seconds, in two lists."""
    floors, calls = [], []
    for _ in range(runs):
        start = time.perf_counter()
        floor_fn()
        middle = time.perf_counter()
        call()
        floors.append(middle - start)
        calls.append(time.perf_counter() - middle)
    return floors, calls


def run_case(label: str, resources: list[dict[str, Any]], runs: int, rounds: int) -> None:
    bundle = charts.bundle(resources)
    result = twitch_cds.evaluate(bundle, now=charts.NOW)
    floor_fn = floor_of(resources)

    def call() -> None:
        twitch_cds.evaluate(bundle, now=charts.NOW)

    floors: list[float] = []
    colds: list[float] = []
    warms: list[float] = []
    cold_p99: list[float] = []
    cold_ratio: list[float] = []
    warm_ratio: list[float] = []
    for _ in range(rounds):
        gc.collect()
        for _ in range(min(20, runs)):  # warm up the interpreter, not the cache
            floor_fn()
            call()
        twitch_cds.configure_validation_cache(0)  # cold: no cache at all, not even its key
        floor_s, cold_s = paired(floor_fn, call, runs)
        twitch_cds.configure_validation_cache(50_000)
        call()
        warm_floor_s, warm_s = paired(floor_fn, call, runs)
        floors.append(statistics.median(floor_s + warm_floor_s))
        colds.append(statistics.median(cold_s))
        warms.append(statistics.median(warm_s))
        cold_p99.append(sorted(cold_s)[max(0, int(len(cold_s) * 0.99) - 1)])
        # sample by sample: load from other jobs falls on the floor and the call alike
        cold_ratio.append(statistics.median(c / f for c, f in zip(cold_s, floor_s, strict=True)))
        warm_ratio.append(statistics.median(w / f for w, f in zip(warm_s, warm_floor_s,
                                                                   strict=True)))
    floor = statistics.median(floors)
    kinds = sorted({c.kind or "" for c in result.cards})
    print(f"{label:30} {len(resources):6} {len(result.trace.fired):7} {result.trace.asserted:8} "
          f"{floor * 1000:9.2f} {statistics.median(colds) * 1000:9.2f} "
          f"{statistics.median(cold_p99) * 1000:9.2f} {spread(cold_ratio):>19} "
          f"{statistics.median(warms) * 1000:9.2f} {spread(warm_ratio):>19}  {','.join(kinds)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs, 5,000 memory calls")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    twitch_cds.configure_validation_cache(50_000)  # as the service runs; "cold" empties it
    rounds = args.rounds or (1 if args.quick else 3)
    scale = 0.1 if args.quick else 1.0
    print(f"twitch-cds {twitch_cds.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, one core, {rounds} round(s), load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{'case':30} {'size':>6} {'firings':>7} {'asserted':>8} {'floor ms':>9} "
          f"{'cold ms':>9} {'cold p99':>9} {'cold x floor':>19} {'warm ms':>9} "
          f"{'warm x floor':>19}  cards")
    cases = [("all relevant", 20, 2000), ("all relevant", 100, 400), ("all relevant", 300, 150),
             ("all relevant", 1000, 40)]
    for label, size, runs in cases:
        run_case(label, charts.relevant(size), max(5, int(runs * scale)), rounds)
    run_case("mostly irrelevant (vitals)", charts.mostly_irrelevant(500),
             max(5, int(200 * scale)), rounds)
    big = charts.bundle(charts.relevant(5000))
    twitch_cds.configure_validation_cache(0)  # from here on: the library's default, no cache
    start = time.perf_counter()
    result = twitch_cds.evaluate(big, now=charts.NOW)
    elapsed = (time.perf_counter() - start) * 1000
    print(f"all relevant, 5,000 resources, one cold call: {elapsed:.0f} ms, "
          f"{len(result.trace.fired)} firings, cards: "
          f"{', '.join(sorted({c.kind or '' for c in result.cards}))}")
    calls = 5_000 if args.quick else 100_000
    typical = charts.bundle(charts.relevant(20))
    start_rss = rss_mb()
    checkpoints = {calls // 10, calls // 2, calls}
    print(f"memory over {calls:,} calls of the 20-resource chart (RSS MB): start {start_rss:.1f}",
          end="")
    for call in range(1, calls + 1):
        twitch_cds.evaluate(typical, now=charts.NOW)
        if call in checkpoints:
            print(f", after {call:,} {rss_mb():.1f}", end="", flush=True)
    print()


if __name__ == "__main__":
    main()
