"""Does a speed change keep the answers? Every output of ``evaluate()``, this tree against another.

    python benchmarks/identity.py --base /path/to/other/checkout

Runs every example (``examples/*.json``), every scenario (``tests/scenarios/*.yaml``, with its
clock and parameters) and every benchmark chart (``benchmarks/charts.py``) in English and in
Indonesian, in one process per tree, and compares the whole result — cards, evidence, issues,
patient and the trace (firings, the facts behind them, derivations) — as JSON. Prints the
inputs whose results differ, and exits 1 if any does. ``--dump FILE`` writes this tree's
results instead (the comparison's other half). ``--fuzz N`` adds N charts corrupted by the
property tests' strategy (``tests/test_properties.py``: fields dropped, retyped, odd numbers,
dates and text), drawn the same in both trees (derandomized), for the inputs no example has.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def fuzzed(count: int) -> dict[str, tuple[Any, str, None]]:
    """``count`` corrupted charts, the same on every run (this tree's strategy and corpus)."""
    from hypothesis import HealthCheck, given, settings

    sys.path.insert(0, str(HERE.parent))
    import tests.test_properties as properties

    found: dict[str, tuple[Any, str, None]] = {}

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(properties._corrupted(properties.CHARTS, False))
    def collect(case: tuple[Any, Any]) -> None:
        chart, data = case
        found[f"fuzz/{len(found)}-{chart.name}"] = (data, chart.now, None)

    collect()
    return found


def results(repo: Path, fuzz: int = 0) -> dict[str, Any]:
    """Every input's result, keyed by ``input@lang``, as JSON-ready dicts."""
    sys.path.insert(0, str(HERE))
    import charts
    import twitch_cds
    from twitch_cds.knowledge.scenarios import load_scenario, scenario_input

    inputs: dict[str, tuple[Any, str, dict[str, float] | None]] = {}
    for path in sorted((repo / "examples").glob("*.json")):
        inputs[f"examples/{path.name}"] = (json.loads(path.read_text(encoding="utf-8")),
                                           charts.NOW, None)
    for path in sorted((repo / "tests" / "scenarios").glob("*.yaml")):
        scenario = load_scenario(path)
        inputs[f"scenarios/{path.name}"] = (scenario_input(scenario, repo), scenario["now"],
                                            scenario.get("parameters"))
    for size in (20, 100, 300, 1000):
        inputs[f"charts/relevant-{size}"] = (charts.bundle(charts.relevant(size)), charts.NOW,
                                             None)
    inputs["charts/irrelevant-500"] = (charts.bundle(charts.mostly_irrelevant(500)), charts.NOW,
                                       None)
    if fuzz:
        inputs.update(fuzzed(fuzz))
    out: dict[str, Any] = {}
    for name, (data, now, parameters) in inputs.items():
        for lang in ("en", "id"):
            try:
                result = twitch_cds.evaluate(data, now=now, lang=lang, parameters=parameters)
                out[f"{name}@{lang}"] = result.model_dump(mode="json")
            except Exception as exc:  # an input that raises must raise alike
                out[f"{name}@{lang}"] = {"raised": type(exc).__name__, "message": str(exc)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="the other checkout")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fuzz", type=int, default=0, metavar="N",
                        help="also N charts corrupted by the property tests' strategy")
    args = parser.parse_args()
    if args.dump:
        args.dump.write_text(json.dumps(results(HERE.parent, args.fuzz), sort_keys=True,
                                        default=repr), encoding="utf-8")
        return
    if args.base is None:
        parser.error("--base is required")
    dumps: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, tree in (("base", args.base.resolve()), ("this", HERE.parent)):
            target = Path(tmp) / f"{name}.json"
            # one hash seed for both: the fuzz strategy's draws depend on set order
            env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONHASHSEED": "0"}
            # the inputs are this tree's, so both versions read the same data
            subprocess.run([sys.executable, str(HERE / "identity.py"), "--dump", str(target),
                            "--fuzz", str(args.fuzz)], cwd=tree, env=env, check=True)
            dumps[name] = json.loads(target.read_text(encoding="utf-8"))
    differ = sorted(k for k in dumps["base"].keys() | dumps["this"].keys()
                    if dumps["base"].get(k) != dumps["this"].get(k))
    for key in differ:
        print(f"differs: {key}")
    print(f"{len(dumps['this'])} results compared, {len(differ)} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
