"""``benchmarks/stages.py`` keeps timing the steps ``evaluate()`` runs, hot or not.

Its figures are the issue-16 cost analysis (README, Performance); a stage it stopped timing,
or a warm-up that changed what the next call answers, would make them wrong silently.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import twitch_cds

_BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))  # stages.py imports its charts module from there
_spec = importlib.util.spec_from_file_location("stages", _BENCHMARKS / "stages.py")
assert _spec and _spec.loader
stages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stages)
charts = sys.modules["charts"]


@pytest.mark.parametrize("hot", [False, True])
def test_a_sample_times_the_floor_every_stage_and_the_whole_call(hot: bool) -> None:
    resources = charts.relevant(20)
    bundle = charts.bundle(resources)
    before = twitch_cds.evaluate(bundle, now=charts.NOW)
    sample = stages.sample(resources, bundle, hot)
    assert set(sample) == {"floor", "evaluate", *stages.STAGES}
    assert all(seconds > 0 for seconds in sample.values())
    # the warm-up runs (a second normaliser, the engine session twice) leave nothing behind
    after = twitch_cds.evaluate(bundle, now=charts.NOW)
    assert [c.model_dump() for c in after.cards] == [c.model_dump() for c in before.cards]
    assert [f.rule_id for f in after.trace.fired] == [f.rule_id for f in before.trace.fired]
