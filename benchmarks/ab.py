"""Is a change slower? ``evaluate()`` over the parse floor, this tree against another checkout.

    python benchmarks/ab.py --base /path/to/other/checkout [--alternations 4]
    python benchmarks/ab.py --base ... --only relevant-20 --samples 1500 --alternations 8

Each measurement runs in its own process, pinned to one core, alternating base and this tree
(so load from other jobs falls on both alike). In a process, every sample times the parse
floor (fhir.resources R4B validation of the chart, alone) and then ``evaluate()`` of the same
chart, cold (no validation cache): the ratio is taken sample by sample, and the median of a
process's samples is its figure. Charts: ``benchmarks/charts.py`` (all relevant at 20, 100,
300 and 1,000 resources; mostly irrelevant at 500). The load averages before and after are
printed: on a shared machine they say how much the figures can be trusted.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = (("relevant", 20, 300), ("relevant", 100, 80), ("relevant", 300, 30),
         ("relevant", 1000, 10), ("irrelevant", 500, 30))


def measure(cases: tuple[tuple[str, int, int], ...]) -> None:
    """One process's figures, printed as ``case=ratio`` pairs."""
    sys.path.insert(0, str(HERE))
    import fhir.resources.R4B as fhir_r4b

    import charts
    import twitch_cds

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    twitch_cds.configure_validation_cache(0)
    figures = []
    for kind, size, samples in cases:
        resources = charts.relevant(size) if kind == "relevant" else charts.mostly_irrelevant(size)
        bundle = charts.bundle(resources)
        ratios = []
        for i in range(samples + 10):
            gc.collect() if i == 10 else None
            start = time.perf_counter()
            for resource in resources:
                fhir_r4b.get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            middle = time.perf_counter()
            twitch_cds.evaluate(bundle, now=charts.NOW)
            if i >= 10:  # the first ten warm the interpreter up
                ratios.append((time.perf_counter() - middle) / (middle - start))
        figures.append(f"{kind}-{size}={statistics.median(ratios):.3f}")
    print(" ".join(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the other checkout")
    parser.add_argument("--alternations", type=int, default=4)
    parser.add_argument("--only", choices=[f"{k}-{n}" for k, n, _ in CASES],
                        help="one chart (a small difference there needs many samples)")
    parser.add_argument("--samples", type=int, help="samples a process (default: per chart)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = tuple((kind, size, args.samples or samples) for kind, size, samples in CASES
                  if args.only in (None, f"{kind}-{size}"))
    if args.measure:
        measure(cases)
        return
    passed = [*(["--only", args.only] if args.only else []),
              *(["--samples", str(args.samples)] if args.samples else [])]
    trees = {"base": args.base.resolve(), "this": HERE.parent}
    runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for _ in range(args.alternations):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree / "src")}
            out = subprocess.run([sys.executable, str(HERE / "ab.py"), "--measure", "--base",
                                  str(args.base), *passed], cwd=tree, env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            runs[name].append({k: float(v) for k, v in (pair.split("=") for pair in out)})
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{'chart':16} {'base x floor':>24} {'this x floor':>24}")
    for kind, size, _ in cases:
        key = f"{kind}-{size}"
        cells = []
        for name in ("base", "this"):
            values = [r[key] for r in runs[name]]
            cells.append(f"{statistics.median(values):.3f} [{min(values):.2f}-{max(values):.2f}]")
        print(f"{key:16} {cells[0]:>24} {cells[1]:>24}")


if __name__ == "__main__":
    main()
