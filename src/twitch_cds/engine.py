"""The durable-rules session wrapper: one session per engine, emptied after every run, made safe.

durable-rules 2.0.28 has sharp edges (``../shared/reference/durable-rules.md``); each is
handled here, and ``tests/test_engine.py`` has a test for each:

1. The default host's timer threads race with foreground calls and crash the process:
   ``QuietHost`` never starts them.
2. ``delete_state`` segfaults on a session where no action ran: every session ends with a
   ``go`` fact that an always-firing rule matches, before it is deleted.
3. A fact no rule matches cancels its whole batch: a sink rule matches every fact and
   never fires.
4. Negation depends on fact order: rules with ``unless`` join the ``go`` fact, which is
   asserted only after every input and derived fact is in.
5. Strings compare as strings: facts carry real floats (the fact models enforce it).
6. Action exceptions are swallowed into the state: checked after each call; raises.
7. Duplicate facts raise: every fact and derived fact has a unique id.
8. 1,024 live sessions at most: one session, used by one run at a time (a lock).
9. ~510 rules hang the process: the loader refuses more than 450.
10. Conditions on session state re-fire forever: rules never read ``s``.
11. An action over 10 s is dropped silently: a run that long is discarded with an error.

A new session costs more than it seems: durable-rules allocates and zeroes index arrays for
every rule node (over 1 MB for this ruleset), which also evicts what the call had in the
processor's caches. So a run retracts every fact it asserted (the ``go`` fact first, so no
rule can complete a match) and the next run reuses the session; a run that fails, or asserted
more than ``REUSE_LIMIT`` facts, deletes its session instead, and the next gets a new one.

Actions run through a lean driver over the engine's C calls (``_drive``) instead of
durable's ``Closure``/promise machinery, which costs a JSON round trip of the session state
and an ``update_state`` per firing. This relies on durable-rules 2.0.28 internals (the
version is pinned; ``tests/test_engine.py`` checks the reliance).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

from twitch_cds.aggregate import distinguished
from twitch_cds.errors import EngineError
from twitch_cds.knowledge.bundle import CompiledRule, Knowledge
from twitch_cds.knowledge.rules import SUGGEST_PLACEHOLDER

REINSTALL_ENGINE = (
    "CPPFLAGS=\"$CPPFLAGS -DPyEval_CallObject=PyObject_CallObject\" "
    "pip install --no-cache-dir --force-reinstall --no-deps durable-rules==2.0.28")
"""The command that rebuilds the engine's C module so that it imports on Python 3.13."""

try:
    import durable_rules_engine
    from durable import engine as durable_engine
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"durable-rules' C module (the rule engine) cannot be imported: {exc}. Its only "
        "release (2.0.28) is source only; on Python 3.13 it must be compiled with "
        "PyEval_CallObject defined as PyObject_CallObject, and a wheel pip cached from an "
        f"earlier build must not be reused. Fix it with:\n    {REINSTALL_ENGINE}"
    ) from exc

ACTION_TIME_LIMIT_S = 10.0
"""durable-rules drops an action that runs longer than this, without a word."""
REUSE_LIMIT = 2_000
"""A run that asserted more facts than this gets its session deleted rather than cleared:
durable-rules keeps a session's pools at their largest, and one big chart should not keep
its memory for good."""
GO_RULE = "twitch-cds-go"
SINK_RULE = "twitch-cds-sink"
_ruleset_names = itertools.count(1)
_encode = json.JSONEncoder(ensure_ascii=False).encode
"""``json.dumps(value, ensure_ascii=False)``, without making an encoder per call."""
_STRING_OR_BARE_EXPONENT = re.compile(r'("(?:[^"\\]|\\.)*")|(?<![\d.])(-?\d+)(e[+-]\d+)')
"""A JSON string (kept whole) or a number with an exponent and no point (``1e-05``)."""
_EXPONENT = re.compile(r"e[+-](?<=\de[+-])")
"""A digit and an exponent: the text may hold a bare exponent (ids such as
``muscle-weakness`` hold an ``e-`` too). Written to start with the letter, which Python's
regular expressions look for quickly: ``\\de[+-]`` tries every position and took 7 times as
long on a chart's batch."""


def _to_json(value: Any) -> str:
    """``value`` as JSON that durable-rules' parser reads: it refuses a number with an exponent
    but no decimal point (``1e+20``, as Python and pydantic-core write such floats; error
    204), so those get one (``1.0e+20``), and strings are left as they are. pydantic-core
    writes it (three times as fast as the standard library's encoder; the same values, floats
    to the last bit); what it refuses (a lone surrogate), the standard library writes."""
    try:
        text = to_json(value).decode()
    except PydanticSerializationError:
        text = _encode(value)
    if _EXPONENT.search(text) is None:
        return text
    return _STRING_OR_BARE_EXPONENT.sub(
        lambda m: m[1] or f"{m[2]}.0{m[3]}", text)


class QuietHost(durable_engine.Host):  # type: ignore[misc]
    """A durable-rules host without the background dispatcher threads (pitfall 1)."""

    def _run(self) -> None:
        """No timer threads: every action runs inside the caller's assert."""

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        return _never_called


def _never_called(c: Any) -> None:  # pragma: no cover - the lean driver runs actions
    raise AssertionError("durable's own action dispatch is not used")


@dataclass(frozen=True)
class Firing:
    """One rule that fired, and the ids of the facts it fired on (bind -> fact id)."""

    rule_id: str
    facts: dict[str, str]


@dataclass(frozen=True)
class Conclusion:
    """What a concluding rule says: a card kind, its subject, and the facts behind it."""

    rule_id: str
    card: str
    subject: str
    suggest: str | None
    facts: dict[str, dict[str, Any]]


@dataclass
class SessionResult:
    sid: str
    """The durable-rules session the facts and derivations belong to."""
    conclusions: list[Conclusion] = field(default_factory=list)
    derived: list[dict[str, Any]] = field(default_factory=list)
    """Every derivation, with its values and ``basis`` (the ids of the facts it came from)."""
    merged: dict[str, list[str]] = field(default_factory=dict)
    """Asserted derived fact id -> ids of later derivations the rules cannot tell apart from
    it, which were not asserted again (they stay evidence behind it)."""
    firings: list[Firing] = field(default_factory=list)
    _derived_keys: dict[tuple[Any, ...], str] = field(default_factory=dict, repr=False)


Action = Callable[[dict[str, Any], SessionResult], None]


class RuleEngine:
    """The compiled ruleset in one durable-rules host; ``run`` is safe from any thread."""

    def __init__(self, knowledge: Knowledge, clock: Callable[[], float] = time.monotonic):
        self._knowledge = knowledge
        self._reads = knowledge.reads
        self._clock = clock
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._sid: str | None = None
        """The session runs reuse (cleared after each), or None when the next needs a new one."""
        self.name = f"twitch_cds_{next(_ruleset_names)}"
        self._actions: dict[str, Action] = {GO_RULE: _nothing, SINK_RULE: _nothing}
        definition: dict[str, Any] = {}
        for compiled in knowledge.rules:
            self._actions[compiled.rule.id] = self._action(compiled)
            definition[compiled.rule.id] = {**compiled.definition, "run": compiled.rule.id}
        definition[GO_RULE] = {"all": [{"go": {"type": "go"}}], "run": GO_RULE}
        definition[SINK_RULE] = {
            "all": [{"m": {"$ex": {"type": 1}}}, {"never": {"twitch_cds_never": 1}}],
            "run": SINK_RULE,
        }
        self._host = QuietHost()
        self._host.set_rulesets({self.name: definition})
        self._handle: int = self._host.get_ruleset(self.name)._handle

    def _action(self, compiled: CompiledRule) -> Action:
        """The rule's action, with everything that does not depend on the facts it fires on
        (its id, what it derives, its conclusion's parts) worked out once, at load."""
        rule = compiled.rule
        rule_id = rule.id
        derive = rule.knowledge.derive
        conclude = rule.knowledge.conclude
        binds = tuple(b for b in compiled.binds if b not in ("params", "go"))
        all_binds = compiled.binds
        card = conclude.card if conclude is not None else ""
        subject_bind, dot, subject_field = (conclude.subject.partition(".")
                                            if conclude is not None else ("", "", ""))
        suggest_template = conclude.suggest if conclude is not None else None
        per_fact_suggest = suggest_template is not None and "{" in suggest_template

        def run(matched: dict[str, Any], session: SessionResult) -> None:
            facts = {bind: matched[bind] for bind in all_binds}
            fact_ids = {bind: str(facts[bind]["id"]) for bind in binds}
            session.firings.append(Firing(rule_id, fact_ids))
            if derive is not None:  # a rule may derive and conclude both
                self._derive(rule_id, derive, facts, fact_ids, session)
            if conclude is not None:
                subject = str(facts[subject_bind][subject_field]) if dot else subject_bind
                suggest = suggest_template
                if per_fact_suggest and suggest_template:  # one suggestion per analyte
                    suggest = SUGGEST_PLACEHOLDER.sub(
                        lambda m: str(facts[m[1]].get(m[2])), suggest_template)
                session.conclusions.append(Conclusion(rule_id, card, subject, suggest, facts))

        return run

    def _derive(self, rule_id: str, derive: Any, facts: dict[str, Any],
                fact_ids: dict[str, str], session: SessionResult) -> None:
        """Record a derived fact; assert it unless an equal one (on every field the rules
        read) is already in the session, in which case it joins that one's evidence."""
        derived: dict[str, Any] = {
            "id": f"{rule_id}({'+'.join(fact_ids.values())})",  # unique
            "type": "derived",
            "name": derive.name,
            "basis": list(fact_ids.values()),
        }
        derived.update(derive.set_fields)
        for target, source in derive.copy_fields.items():
            bind, _, source_field = source.partition(".")
            if source_field in facts[bind]:
                derived[target] = facts[bind][source_field]
        session.derived.append(derived)
        key, engine_fact = distinguished(derived, self._reads)
        asserted = session._derived_keys.get(key)
        if asserted is not None:
            session.merged.setdefault(asserted, []).append(derived["id"])
            return
        session._derived_keys[key] = derived["id"]
        engine_fact["sid"] = session.sid
        self._assert_one(engine_fact)

    def run(self, facts: Sequence[dict[str, Any]], parameters: dict[str, float]) -> SessionResult:
        """Evaluate one patient's facts in a clean session, and leave it clean again."""
        with self._lock:
            sid = self._sid or str(next(self._sids))
            session = SessionResult(sid)
            started = self._clock()
            went = cleared = False
            try:
                batch: list[dict[str, Any]] = [{
                    "sid": sid, "id": "parameters", "type": "parameters",
                    **{name: parameters[name] for name in self._reads.parameters}}]
                batch.extend({**fact, "sid": sid} for fact in facts)
                self._assert_batch(batch, session)
                went = True
                self._assert_batch([{"sid": sid, "id": "go", "type": "go"}], session)
                if self._clock() - started >= ACTION_TIME_LIMIT_S:
                    raise EngineError(
                        f"the rule engine took over {ACTION_TIME_LIMIT_S:.0f} s; durable-rules "
                        "drops actions that slow, so the result is discarded"
                    )
                cleared = self._clear(sid, batch, session)
                return session
            finally:
                if not cleared:
                    if not went:
                        self._end_safely(sid, session)
                    durable_rules_engine.delete_state(self._handle, sid)
                self._sid = sid if cleared else None

    def _clear(self, sid: str, batch: list[dict[str, Any]], session: SessionResult) -> bool:
        """Retract every fact of the run (the ``go`` fact first, so no rule can fire), so the
        session's per-rule memory is reused by the next run rather than freed and allocated
        again. False when the session should be deleted instead (a large run, or the engine
        did not answer as expected)."""
        if len(batch) + len(session._derived_keys) > REUSE_LIMIT:
            return False
        retract = [{"sid": sid, "id": "go"}]
        retract.extend({"sid": sid, "id": fact["id"]} for fact in batch)
        retract.extend({"sid": sid, "id": fact_id} for fact_id in session._derived_keys.values())
        try:
            code, state = durable_rules_engine.retract_facts(self._handle, _to_json(retract))
            if code != 0:
                return False
            # retracting cannot complete a match (the go fact went first); should an action
            # be pending all the same, it is abandoned and the session deleted, not trusted
            if durable_rules_engine.start_action_for_state(self._handle, state):
                durable_rules_engine.abandon_action(self._handle, state)
                return False
        except durable_rules_engine.error:  # the run's result stands; the session goes
            return False
        return True

    # -- the lean driver over durable-rules' C calls -----------------------------------------
    def _assert_batch(self, batch: list[dict[str, Any]], session: SessionResult) -> None:
        state = self._checked(durable_rules_engine.assert_facts(
            self._handle, _to_json(batch)), batch)
        if state is not None:
            self._drive(state, session)

    def _assert_one(self, fact: dict[str, Any]) -> None:
        """A derived fact, asserted from inside an action: its firings queue behind it."""
        self._checked(durable_rules_engine.assert_fact(
            self._handle, _to_json(fact)), fact)

    def _checked(self, result: Any, sent: Any) -> int | None:
        """The state handle of an assert, or None when no action is pending; raises when the
        engine refused the facts."""
        code = result[0]
        if code == 1:
            raise EngineError(f"the rule engine refused the facts: no rule handles {_ids(sent)}")
        if code == 2:
            raise EngineError(f"the rule engine refused the facts: {_ids(sent)} already seen")
        return None if code == 3 else int(result[1])

    def _drive(self, state: int, session: SessionResult) -> None:
        """Run every pending action of the session, one after another, until none is left."""
        started = durable_rules_engine.start_action_for_state(self._handle, state)
        if not started:
            return
        message: dict[str, Any] = _message(started[1])
        while True:
            ((rule_id, matched),) = message.items()
            try:
                self._actions[rule_id](matched, session)
            except EngineError:
                durable_rules_engine.abandon_action(self._handle, state)
                raise
            except Exception as exc:
                durable_rules_engine.abandon_action(self._handle, state)
                raise EngineError(f"a rule action failed ({rule_id}): "
                                  f"{type(exc).__name__}: {exc}") from exc
            following = durable_rules_engine.complete_and_start_action(self._handle, state)
            if not following:
                return
            message = _message(following)

    def _end_safely(self, sid: str, session: SessionResult) -> None:
        """Make sure an action ran in the session, so deleting it cannot crash (pitfall 2)."""
        with contextlib.suppress(Exception):  # the original error is already propagating
            self._assert_batch([{"sid": sid, "id": "go", "type": "go"}], session)


def _message(text: str) -> dict[str, Any]:
    """An action's message from the engine (its JSON text): read by pydantic-core's parser,
    about twice as fast as the standard library's on these messages (the same values: the
    same text, read to the same floats); anything it refuses, the standard library reads."""
    try:
        message: dict[str, Any] = from_json(text)
    except ValueError:
        message = json.loads(text)
    return message


def _nothing(matched: dict[str, Any], session: SessionResult) -> None:
    """The go rule (guarantees an action ran before ``delete_state``) and the sink rule."""


def _ids(sent: Any) -> str:
    items = sent if isinstance(sent, list) else [sent]
    return ", ".join(str(item.get("id")) for item in items[:5] if isinstance(item, dict))
