"""Where does a cold ``evaluate()`` spend its time beyond the parse floor? Per stage, per chart.

    python benchmarks/stages.py [--sizes 20 100] [--samples 400]

Runs the steps ``evaluate()`` runs (``twitch_cds/evaluate.py``), one after another, timing
each, sample by sample interleaved with the parse floor (fhir.resources R4B validation of the
same resources alone, as ``benchmarks/evaluate.py`` measures it), pinned to one core, with the
validation cache off (cold). Stages: reading the input (JSON, Bundle entries), screening and
validating (the floor's own work, plus choosing what the rules read), normalising (facts and
their evidence lines), grouping (facts the rules cannot tell apart, asserted once), the engine
session (asserting, firing, derivations), card building, and the rest of the call (issues,
the result model). Medians in ms and as multiples of the floor; the stages beyond the floor
are what a "× floor" target is about.

``--hot`` runs each stage once more just before timing it, on the same inputs: what the stage
costs with its code and data in the processor's caches (the lower bound of the stage, as
against what it costs after validation has evicted them, which a call pays).
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import fhir.resources.R4B as fhir_r4b

sys.path.insert(0, str(Path(__file__).parent))

import charts  # noqa: E402
import twitch_cds  # noqa: E402
from twitch_cds.aggregate import Aggregated, aggregate  # noqa: E402
from twitch_cds.card_builder import CardBuilder  # noqa: E402
from twitch_cds.fhir_in.normalise import Normaliser  # noqa: E402
from twitch_cds.fhir_in.reader import read_input  # noqa: E402
from twitch_cds.fhir_in.screen import screen  # noqa: E402
from twitch_cds.knowledge.bundle import default_knowledge  # noqa: E402
from twitch_cds.provenance import Provenance  # noqa: E402

STAGES = ("read", "screen+validate", "normalise", "group", "engine", "cards")
evaluate_module = importlib.import_module("twitch_cds.evaluate")
T = TypeVar("T")


def sample(resources: list[dict[str, Any]], bundle: dict[str, Any],
           hot: bool = False) -> dict[str, float]:
    """One sample: the floor, each stage of one call, and a whole ``evaluate()`` call; with
    ``hot``, each stage after screening is run once, untimed, right before it is timed."""
    knowledge = default_knowledge()
    out: dict[str, float] = {}

    def timed(name: str, stage: Callable[[], T], warm_up: Callable[[], object] | None = None) -> T:
        if hot and warm_up is not None:
            warm_up()
        start = time.perf_counter()
        result = stage()
        out[name] = time.perf_counter() - start
        return result

    def floor() -> None:
        for resource in resources:
            fhir_r4b.get_fhir_model_class(resource["resourceType"]).model_validate(resource)

    timed("floor", floor)
    clock = evaluate_module._now(charts.NOW)
    values = knowledge.parameters.resolve({}, None)
    read = timed("read", lambda: read_input(bundle))
    warm_normalise = None
    if hot:  # a normaliser holds a call's state: the warm-up reads with one of its own
        spare = Normaliser(knowledge, values, clock, "en")
        spare_validated = screen(read.resources, spare, None).validated
        warm_normalise = functools.partial(spare.run, spare_validated, None)
    normaliser = Normaliser(knowledge, values, clock, "en")
    screened = timed("screen+validate", lambda: screen(read.resources, normaliser, None))
    normalised = timed("normalise", lambda: normaliser.run(screened.validated, None),
                       warm_normalise)

    def group() -> Aggregated:
        return aggregate((f.to_engine() for f in normalised.facts), knowledge.reads)

    grouped = timed("group", group, group)
    engine = evaluate_module.engine_for(knowledge)  # a run leaves its session empty
    session = timed("engine", lambda: engine.run(grouped.facts, values),
                    lambda: engine.run(grouped.facts, values))
    basis = {d["id"]: d["basis"] for d in session.derived}
    provenance = Provenance(grouped.members, basis, session.merged)

    def cards() -> object:
        return CardBuilder(knowledge, "en", None, "R4B").build(
            session.conclusions, normalised.evidence, provenance, normalised.patient)

    timed("cards", cards, cards)
    timed("evaluate", lambda: twitch_cds.evaluate(bundle, now=charts.NOW))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[20, 100])
    parser.add_argument("--samples", type=int, default=400, help="at 20 resources (fewer above)")
    parser.add_argument("--hot", action="store_true",
                        help="run each stage once more right before timing it")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    twitch_cds.configure_validation_cache(0)
    for size in args.sizes:
        resources = charts.relevant(size)
        bundle = charts.bundle(resources)
        runs = max(20, args.samples * 20 // size)
        samples = []
        for i in range(runs + 20):
            if i == 20:  # the first twenty warm the interpreter up
                gc.collect()
            if i >= 20:
                samples.append(sample(resources, bundle, args.hot))
            else:
                sample(resources, bundle, args.hot)
        report(size, samples, args.hot)


def report(size: int, samples: list[dict[str, float]], hot: bool = False) -> None:
    """Medians in ms; ratios and shares taken sample by sample (load drifts, ratios less)."""
    medians = {k: statistics.median(s[k] for s in samples) for k in samples[0]}

    def ratio(name: str) -> float:
        return statistics.median(
            (sum(s[k] for k in STAGES) if name == "stages" else s[name]) / s["floor"]
            for s in samples)

    def share(name: str) -> float:  # of the time the stages take beyond the floor
        return statistics.median(
            (s[name] - (s["floor"] if name == "screen+validate" else 0.0))
            / (sum(s[k] for k in STAGES) - s["floor"]) for s in samples)

    hot_note = ", each stage hot" if hot else ""
    print(f"all relevant, {size} resources ({len(samples)} samples{hot_note}): floor "
          f"{medians['floor'] * 1000:.3f} ms; evaluate() {medians['evaluate'] * 1000:.3f} ms, "
          f"{ratio('evaluate'):.2f} x floor; the stages one by one {ratio('stages'):.2f} x floor")
    print(f"  {'stage':18} {'ms':>8} {'x floor':>8} {'share beyond the floor':>24}")
    for name in STAGES:
        print(f"  {name:18} {medians[name] * 1000:8.3f} {ratio(name):8.3f} {share(name):23.0%}")

if __name__ == "__main__":
    main()
