"""The durable-rules session wrapper: one isolated session per evaluation, made safe.

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
8. 1,024 live sessions at most: one session per call, always deleted, behind a lock.
9. ~510 rules hang the process: the loader refuses more than 450.
10. Conditions on session state re-fire forever: rules never read ``s``.
11. An action over 10 s is dropped silently: a run that long is discarded with an error.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from durable import engine as durable_engine

from twitch_cds.errors import EngineError
from twitch_cds.knowledge.bundle import CompiledRule, Knowledge

ACTION_TIME_LIMIT_S = 10.0
"""durable-rules drops an action that runs longer than this, without a word."""
GO_RULE = "twitch-cds-go"
SINK_RULE = "twitch-cds-sink"
_ruleset_names = itertools.count(1)


class QuietHost(durable_engine.Host):  # type: ignore[misc]
    """A durable-rules host without the background dispatcher threads (pitfall 1)."""

    def __init__(self, actions: dict[str, Callable[[Any], None]]) -> None:
        self._actions = actions
        super().__init__()

    def _run(self) -> None:
        """No timer threads: every action runs inside the caller's assert."""

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        return self._actions[action_name]


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
    conclusions: list[Conclusion] = field(default_factory=list)
    derived: list[dict[str, Any]] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)


class RuleEngine:
    """The compiled ruleset in one durable-rules host; ``run`` is safe from any thread."""

    def __init__(self, knowledge: Knowledge, clock: Callable[[], float] = time.monotonic):
        self._knowledge = knowledge
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionResult] = {}
        self._sids = itertools.count(1)
        self.name = f"twitch_cds_{next(_ruleset_names)}"
        actions: dict[str, Callable[[Any], None]] = {
            GO_RULE: self._go,
            SINK_RULE: self._go,
        }
        definition: dict[str, Any] = {}
        for compiled in knowledge.rules:
            actions[compiled.rule.id] = self._action(compiled)
            definition[compiled.rule.id] = {**compiled.definition, "run": compiled.rule.id}
        definition[GO_RULE] = {"all": [{"go": {"type": "go"}}], "run": GO_RULE}
        definition[SINK_RULE] = {
            "all": [{"m": {"$ex": {"type": 1}}}, {"never": {"twitch_cds_never": 1}}],
            "run": SINK_RULE,
        }
        self._host = QuietHost(actions)
        self._host.set_rulesets({self.name: definition})

    def _go(self, c: Any) -> None:
        """The always-firing rule: guarantees an action ran before ``delete_state``."""

    def _action(self, compiled: CompiledRule) -> Callable[[Any], None]:
        rule = compiled.rule
        knowledge = rule.knowledge
        binds = compiled.binds

        def run(c: Any) -> None:
            session = self._sessions[c.s.sid]
            matched = c._m  # bind name -> fact dict, as durable-rules hands it over
            facts = {bind: dict(matched[bind]) for bind in binds}
            session.firings.append(Firing(rule.id, {
                b: f["id"] for b, f in facts.items() if b not in ("params", "go")}))
            if knowledge.derive is not None:
                derived: dict[str, Any] = {
                    "id": f"{rule.id}({'+'.join(f['id'] for f in facts.values())})",  # unique
                    "type": "derived",
                    "name": knowledge.derive.name,
                    "basis": [f["id"] for b, f in facts.items() if b not in ("params", "go")],
                }
                derived.update(knowledge.derive.set_fields)
                for target, source in knowledge.derive.copy_fields.items():
                    bind, _, source_field = source.partition(".")
                    if source_field in facts[bind]:
                        derived[target] = facts[bind][source_field]
                session.derived.append(derived)
                engine_fact = {k: v for k, v in derived.items() if k != "basis"}
                c.assert_fact(engine_fact)
            elif knowledge.conclude is not None:
                subject = knowledge.conclude.subject
                bind, dot, subject_field = subject.partition(".")
                if dot:
                    subject = str(facts[bind][subject_field])
                session.conclusions.append(
                    Conclusion(rule.id, knowledge.conclude.card, subject,
                               knowledge.conclude.suggest, facts)
                )

        return run

    def run(self, facts: Sequence[dict[str, Any]], parameters: dict[str, float]) -> SessionResult:
        """Evaluate one patient's facts in a fresh session, and delete the session."""
        with self._lock:
            sid = str(next(self._sids))
            session = SessionResult()
            self._sessions[sid] = session
            went = False
            started = self._clock()
            try:
                batch = [{"sid": sid, "id": "parameters", "type": "parameters", **parameters}]
                batch.extend({**fact, "sid": sid} for fact in facts)
                self._assert(sid, batch)
                went = True
                self._assert(sid, [{"sid": sid, "id": "go", "type": "go"}])
                if self._clock() - started >= ACTION_TIME_LIMIT_S:
                    raise EngineError(
                        f"the rule engine took over {ACTION_TIME_LIMIT_S:.0f} s; durable-rules "
                        "drops actions that slow, so the result is discarded"
                    )
                return session
            finally:
                if not went:
                    self._end_safely(sid)
                self._host.delete_state(self.name, sid)
                del self._sessions[sid]

    def _assert(self, sid: str, batch: list[dict[str, Any]]) -> None:
        try:
            self._host.assert_facts(self.name, batch)
        except (durable_engine.MessageNotHandledException,
                durable_engine.MessageObservedException) as exc:
            raise EngineError(f"the rule engine refused the facts: {exc.message}") from exc
        state = self._host.get_state(self.name, sid)
        if state.get("exception"):
            raise EngineError(f"a rule action failed: {state['exception']}")

    def _end_safely(self, sid: str) -> None:
        """Make sure an action ran in the session, so deleting it cannot crash (pitfall 2)."""
        with contextlib.suppress(Exception):  # the original error is already propagating
            self._host.assert_facts(self.name, [{"sid": sid, "id": "go", "type": "go"}])
