"""The durable-rules wrapper: one test per sharp edge in ../shared/reference/durable-rules.md."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import durable_rules_engine
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import twitch_cds
from twitch_cds import engine as engine_module
from twitch_cds.engine import RuleEngine
from twitch_cds.errors import EngineError, RulesetError
from twitch_cds.knowledge.bundle import Knowledge, load_knowledge

from .builders import NOW, RXNORM, SCT, condition, fired, kinds, lab, med_statement, obs, twitching


def _patient(seed: int) -> tuple[list[dict[str, Any]], str]:
    """A random patient and its id: twitching or not, with a random mix of causes."""
    rng = random.Random(seed)
    pid = f"p{seed}"
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": pid}]
    if rng.random() < 0.8:
        resources.append(twitching(f"tw{seed}", patient=pid))
    if rng.random() < 0.4:
        resources.append(obs(f"wk{seed}", SCT, "26544005", patient=pid))
    if rng.random() < 0.4:
        resources.append(med_statement(f"ms{seed}", [{"system": RXNORM, "code": "4603"}],
                                       patient=pid))
    if rng.random() < 0.5:
        resource = lab(f"k{seed}", "2823-3", rng.choice([2.9, 4.2]), "mmol/L")
        resource["subject"] = {"reference": f"Patient/{pid}"}
        resources.append(resource)
    if rng.random() < 0.3:
        resources.append(condition(f"c{seed}", SCT, "86044005", patient=pid))
    return resources, pid


_TWITCHING = {"id": "f", "type": "finding", "concept": "twitching", "source": "Observation",
              "severe": False}
"""One twitching finding, as the engine sees it."""


def _raise(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("boom")


def _signature(result: twitch_cds.EvaluationResult) -> list[tuple[str, str, str]]:
    return [(c.kind or "", c.summary, c.uuid or "") for c in result.cards]


def test_no_timer_threads_are_started(knowledge: Knowledge) -> None:
    before = threading.active_count()
    RuleEngine(knowledge)
    twitch_cds.evaluate([twitching()], now=NOW)
    assert threading.active_count() == before


def test_sessions_where_nothing_fires_are_deleted_without_crashing() -> None:
    """delete_state on a session with no action segfaults; run it in a child process."""
    code = (
        "import twitch_cds\n"
        "for i in range(300):\n"
        "    r = twitch_cds.evaluate({'resourceType': 'Patient', 'id': f'p{i}'},"
        " now='2026-11-24T00:00:00Z')\n"
        "    assert r.cards == []\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_fact_no_rule_reads_does_not_cancel_the_batch() -> None:
    # The Patient fact and a caffeine-free twitching patient: the patient fact matches no
    # rule, yet the twitching in the same batch still yields its cards.
    result = twitch_cds.evaluate([{"resourceType": "Patient", "id": "p1"}, twitching()], now=NOW)
    assert "self-care" in kinds(result)


@pytest.mark.parametrize("seed", range(20))
def test_negation_does_not_depend_on_fact_order(seed: int) -> None:
    resources = [
        twitching(),
        med_statement("furo", [{"system": RXNORM, "code": "4603"}]),
        lab("k", "2823-3", 4.1, "mmol/L"),
    ]
    random.Random(seed).shuffle(resources)
    result = twitch_cds.evaluate(resources, now=NOW)
    assert "electrolyte-panel-on-diuretic-potassium" not in fired(result)
    assert "electrolyte-panel-on-diuretic-sodium" in fired(result)
    without_lab = [r for r in resources if r["id"] != "k"]
    assert "electrolyte-panel-on-diuretic-potassium" in fired(
        twitch_cds.evaluate(without_lab, now=NOW))


def test_facts_reach_the_engine_as_numbers() -> None:
    from twitch_cds.facts import Lab

    fact = Lab(id="x", analyte="potassium", value=3, unit="mmol/L", default_low=3.5,
               default_high=5.2, age_days=1)
    engine_fact = fact.to_engine()
    assert isinstance(engine_fact["value"], float) and isinstance(engine_fact["age_days"], float)


def test_a_numeric_string_value_is_not_compared_as_a_string() -> None:
    bad = lab("k", "2823-3", 0, "mmol/L")
    bad["valueQuantity"]["value"] = "10"  # "10" < "3.5" as strings
    result = twitch_cds.evaluate([twitching(), bad], now=NOW)
    assert "electrolyte-depletion" not in kinds(result)
    assert any(i.resource == "Observation/k" and i.action == "value-not-used"
               for i in result.issues)


def test_an_exception_inside_an_action_fails_the_call(knowledge: Knowledge,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    engine = RuleEngine(knowledge)
    monkeypatch.setattr(engine_module, "Conclusion", _raise)
    facts = [_TWITCHING]
    with pytest.raises(EngineError, match="boom"):
        engine.run(facts, knowledge.parameters.resolve())
    monkeypatch.undo()
    assert engine.run(facts, knowledge.parameters.resolve()).conclusions  # still usable


def test_the_same_resource_twice_is_one_fact() -> None:
    result = twitch_cds.evaluate([twitching(), twitching(), obs("w", SCT, "26544005"),
                                  obs("w", SCT, "26544005")], now=NOW)
    assert kinds(result).count("red-flag") == 1


def test_sessions_never_pile_up(knowledge: Knowledge) -> None:
    """More evaluations than the engine's 1,024 live sessions."""
    engine = RuleEngine(knowledge)
    facts = [_TWITCHING]
    for _ in range(1500):
        assert engine.run(facts, knowledge.parameters.resolve()).conclusions


def test_a_run_leaves_its_session_empty_for_the_next(knowledge: Knowledge) -> None:
    """The session is cleared (every fact retracted) and reused, not deleted and made anew."""
    engine = RuleEngine(knowledge)
    facts = [_TWITCHING]
    first = engine.run(facts, knowledge.parameters.resolve())
    assert json.loads(durable_rules_engine.get_facts(engine._handle, first.sid)) == []
    second = engine.run(facts, knowledge.parameters.resolve())
    assert second.sid == first.sid
    assert [f.rule_id for f in second.firings] == [f.rule_id for f in first.firings]


def test_a_failed_run_deletes_its_session(knowledge: Knowledge,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    engine = RuleEngine(knowledge)
    facts = [_TWITCHING]
    kept = engine.run(facts, knowledge.parameters.resolve()).sid
    monkeypatch.setattr(engine_module, "Conclusion", _raise)
    with pytest.raises(EngineError):
        engine.run(facts, knowledge.parameters.resolve())
    monkeypatch.undo()
    with pytest.raises(durable_rules_engine.error, match="309"):  # no such session
        durable_rules_engine.get_facts(engine._handle, kept)
    again = engine.run(facts, knowledge.parameters.resolve())
    assert again.sid != kept and again.conclusions


def test_a_large_run_deletes_its_session(knowledge: Knowledge,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """durable-rules keeps a session's pools at their largest: a big chart's are freed."""
    monkeypatch.setattr(engine_module, "REUSE_LIMIT", 2)
    engine = RuleEngine(knowledge)
    facts = [{"id": f"f{i}", "type": "finding", "concept": "twitching",
              "source": "Observation", "severe": False} for i in range(3)]
    first = engine.run(facts, knowledge.parameters.resolve())
    with pytest.raises(durable_rules_engine.error, match="309"):
        durable_rules_engine.get_facts(engine._handle, first.sid)
    assert engine.run(facts, knowledge.parameters.resolve()).sid != first.sid


def test_a_session_that_cannot_be_cleared_is_deleted_and_the_result_stands(
        knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = RuleEngine(knowledge)
    facts = [_TWITCHING]
    expected = engine.run(facts, knowledge.parameters.resolve())

    def refused(handle: int, text: str) -> None:
        raise durable_rules_engine.error("refused")

    monkeypatch.setattr(durable_rules_engine, "retract_facts", refused)
    result = engine.run(facts, knowledge.parameters.resolve())
    assert result.firings == expected.firings
    with pytest.raises(durable_rules_engine.error, match="309"):
        durable_rules_engine.get_facts(engine._handle, result.sid)
    monkeypatch.undo()
    assert engine.run(facts, knowledge.parameters.resolve()).sid != result.sid


_EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.json"))


def _outcome(data: Any) -> str:
    try:
        return twitch_cds.evaluate(data, now=NOW).model_dump_json()
    except twitch_cds.InputError as exc:
        return f"raised {exc}"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 60), st.sampled_from(_EXAMPLES)), min_size=2,
                max_size=12))
def test_a_reused_session_answers_as_a_fresh_one(order: list[int | Path]) -> None:
    """Any sequence of charts through the engine's one session gives each chart the result
    a fresh session gives it (negation, derived facts and merges included)."""
    def chart(item: int | Path) -> Any:
        if isinstance(item, Path):
            return json.loads(item.read_text(encoding="utf-8"))
        return _patient(item)[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "REUSE_LIMIT", -1)  # every run in a new session
        fresh = {str(item): _outcome(chart(item)) for item in set(order)}
    for item in order:
        assert _outcome(chart(item)) == fresh[str(item)], item


def test_the_loader_refuses_a_ruleset_near_the_engine_wall(tmp_path: Path,
                                                           knowledge: Knowledge) -> None:
    copy = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, copy)
    template = (copy / "rules" / "self-care" / "40-self-care-massage.yaml").read_text()
    for index in range(460):
        text = template.replace("id: self-care-massage", f"id: self-care-massage-{index}")
        (copy / "rules" / f"extra-{index}.yaml").write_text(text)
    with pytest.raises(RulesetError, match="rules; the engine allows"):
        load_knowledge(copy)


def test_no_rule_conditions_on_session_state(knowledge: Knowledge) -> None:
    for compiled in knowledge.rules:
        assert '"$s"' not in json.dumps(compiled.definition), compiled.rule.id


def test_a_run_longer_than_the_action_limit_is_discarded(knowledge: Knowledge) -> None:
    ticks = iter([0.0, 11.0])
    engine = RuleEngine(knowledge, clock=lambda: next(ticks))
    facts = [_TWITCHING]
    with pytest.raises(EngineError, match="discarded"):
        engine.run(facts, knowledge.parameters.resolve())


def test_threads_get_the_same_answers_as_one_thread() -> None:
    patients = [_patient(seed) for seed in range(2000)]
    expected = [_signature(twitch_cds.evaluate(p, now=NOW)) for p, _ in patients]

    def run(index: int) -> tuple[int, list[tuple[str, str, str]], str | None]:
        result = twitch_cds.evaluate(patients[index][0], now=NOW)
        return index, _signature(result), result.patient

    with ThreadPoolExecutor(max_workers=8) as pool:
        for index, signature, patient in pool.map(run, range(len(patients))):
            assert signature == expected[index]
            assert patient == f"Patient/{patients[index][1]}"


def test_an_engine_that_cannot_be_imported_says_how_to_fix_it() -> None:
    code = ("import sys\n"
            "sys.modules['durable_rules_engine'] = None  # as a build without the 3.13 define\n"
            "import twitch_cds\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0
    assert "cannot be imported" in done.stderr
    assert ("-DPyEval_CallObject=PyObject_CallObject" in done.stderr
            and "--no-cache-dir --force-reinstall" in done.stderr)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _JSON, min_size=1, max_size=3))
def test_action_messages_read_as_the_standard_library_reads_them(value: dict[str, Any]) -> None:
    """The engine's action messages are read by pydantic-core's JSON parser (the faster one):
    every value, floats to the last bit, NaN and infinities included, reads as ``json.loads``
    reads it, and a text it refuses falls back to ``json.loads``."""
    text = json.dumps(value, ensure_ascii=False)
    assert repr(engine_module._message(text)) == repr(json.loads(text))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _JSON, min_size=1, max_size=3),
       st.sampled_from([1e-05, 1e+20, -3e-07, 2e+16]))
def test_facts_are_written_as_the_rule_engine_reads_them(value: dict[str, Any],
                                                         bare: float) -> None:
    """durable-rules' parser refuses a number with an exponent and no point (``1e-05``, as
    Python writes some floats): the engine's JSON gives it a point and reads back the same
    values, strings (which may spell such a number) untouched."""
    value = {**value, "bare-exponent": bare, "text": f"{bare!r}"}
    text = engine_module._to_json(value)
    assert repr(json.loads(text)) == repr(value)
    outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    assert not re.search(r"(?<![\d.])-?\d+e[+-]", outside_strings)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789e+-.\"x", max_size=30))
def test_the_quick_exponent_look_finds_what_the_plain_one_finds(text: str) -> None:
    assert bool(engine_module._EXPONENT.search(text)) == bool(re.search(r"\de[+-]", text))


def test_a_text_pydantic_core_will_not_write_is_written_as_the_standard_library_writes_it(
        ) -> None:
    value = {"id": "x\ud800", "value": 1e-07}
    assert engine_module._to_json(value) == '{"id": "x\ud800", "value": 1.0e-07}'


@pytest.mark.parametrize("bare", [1e-05, 1e+20])
def test_the_engine_accepts_a_float_python_writes_without_a_point(knowledge: Knowledge,
                                                                 bare: float) -> None:
    """A fact holding such a float reaches the rules instead of failing the call (the
    engine's error 204)."""
    facts = [{**_TWITCHING, "age_days": bare}]
    assert RuleEngine(knowledge).run(facts, knowledge.parameters.resolve()).conclusions
