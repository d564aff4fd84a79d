"""Rule mutation testing: do the clinical scenarios notice when a rule is changed?

``python -m twitch_cds.knowledge.mutate`` makes small, plausible mistakes (mutants) in every
rule file under ``rulesets/rules/``, loads each mutant ruleset, runs the scenario suite
(``tests/scenarios/*.yaml``, with the checks ``tests/test_scenarios.py`` makes) and reports
which scenario caught (killed) each mutant. A mutant nobody catches (a survivor) is a rule
part the scenarios do not prove: either a scenario is missing, or the change makes no
difference (an equivalent mutant), which a reviewer writes down in
``rulesets/mutation-survivors.yaml`` (mutant id -> reason). The command fails while a
survivor has no written reason.

Operators, read from the rule grammar (``knowledge/rules.py``), so new rules and new fields
are covered without code changes:

* ``drop-when:BIND`` - a fact the rule needs is no longer needed (rules with 2+ facts);
* ``drop-field:BIND.FIELD`` - one constraint of a fact pattern is dropped (never ``type``);
* ``drop-alt:BIND.FIELD=VALUE`` - one alternative of an any-of list is dropped;
* ``negate:BIND.FIELD[.OP]`` - a comparison is negated (ge<->lt, gt<->le, eq<->ne,
  exists true<->false; a boolean flips; a plain value becomes ``ne``);
* ``shift-up``/``shift-down:BIND.FIELD.OP`` - a threshold moves by a step: a literal in the
  rule, or the default of the parameter it reads (in ``parameters.yaml``);
* ``swap-valueset:BIND.FIELD[=VALUE]`` - a value set (``concept``, ``drug_class``,
  ``analyte``) or derived fact ``name`` is replaced by its next sibling;
* ``drop-unless:N`` - one ``unless`` entry is dropped.

A mutant the loader refuses (say, dropping a fact a message names) is ``invalid`` and does
not count in the score. Each mutant is compiled once; scenarios run in-process, those that
name the rule first, and the first one that fails kills it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence, Set
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from twitch_cds.errors import RulesetError
from twitch_cds.knowledge.files import read_yaml, rulesets_dir
from twitch_cds.knowledge.rules import valuesets_in

NEGATE = {"ge": "lt", "lt": "ge", "gt": "le", "le": "gt", "eq": "ne", "ne": "eq"}
VALUE_FIELDS = {"concept": "findings", "drug_class": "drug_classes", "analyte": "analytes"}
"""Fields whose values are value-set ids, and which list of siblings each is swapped within."""
SURVIVORS_FILE = "mutation-survivors.yaml"
MAX_JOBS = 2


@dataclass(frozen=True)
class Mutant:
    """One changed rule file (and, for a parameter shift, a changed parameters.yaml)."""

    id: str
    rule: str
    operator: str
    location: str
    path: str
    """The rule file, relative to ``rulesets/``."""
    document: dict[str, Any]
    parameters: dict[str, Any] | None = None


@dataclass
class Outcome:
    id: str
    rule: str
    operator: str
    location: str
    status: str
    """``killed``, ``survived`` or ``invalid``."""
    killed_by: str | None = None
    detail: str | None = None
    reason: str | None = None
    """For a survivor: the written reason from mutation-survivors.yaml, if any."""


@dataclass
class Siblings:
    """What a value may be swapped with, in ruleset order."""

    lists: dict[str, list[str]]
    derived: dict[str, set[str]]
    """Derived fact name -> the fields rules give it."""
    parameters: dict[str, float]
    urls: dict[str, str] = field(default_factory=dict)
    """Each value set's canonical URL: a swapped value set is linked as the loader asks."""

    def relink(self, document: dict[str, Any]) -> None:
        """Point ``library.links`` at the value sets the (mutated) rule now reads, so the
        mutant tests the logic, not the links check."""
        knowledge = document.get("knowledge") or {}
        patterns = [*(knowledge.get("when") or {}).values(), *(knowledge.get("unless") or [])]
        read = [name for name in valuesets_in(p for p in patterns if isinstance(p, dict))
                if name in self.urls]
        document.setdefault("library", {})["links"] = [
            {"label": f"Value set: {name}", "url": self.urls[name]} for name in read]

    def next_to(self, kind: str, value: Any, avoid: Sequence[Any],
                needs: Set[str] = frozenset()) -> str | None:
        """The next value after ``value`` in ruleset order that is not in ``avoid`` (for a
        derived fact: one that has the ``needs`` fields the pattern reads)."""
        if kind == "name":
            options = [n for n in self.derived if n == value or needs <= self.derived[n]]
        else:
            options = self.lists.get(VALUE_FIELDS[kind], [])
        if value not in options:
            return None
        start = options.index(value)
        for offset in range(1, len(options)):
            candidate = options[(start + offset) % len(options)]
            if candidate not in avoid:
                return candidate
        return None


def step_of(value: float) -> float:
    """A threshold's step: 1 for a whole number, else one unit of its second digit."""
    if float(value).is_integer():
        return 1.0
    return float(10 ** (math.floor(math.log10(abs(value))) - 1)) if value else 0.1


def siblings_of(directory: Path, rule_docs: Sequence[dict[str, Any]]) -> Siblings:
    concepts = read_yaml(directory / "concepts.yaml") or {}
    measurements = read_yaml(directory / "measurements.yaml") or {}
    parameters = (read_yaml(directory / "parameters.yaml") or {}).get("parameters", {})
    derived: dict[str, set[str]] = {}
    for doc in rule_docs:
        derive = doc.get("knowledge", {}).get("derive")
        if isinstance(derive, dict) and "name" in derive:
            fields = derived.setdefault(str(derive["name"]), set())
            fields |= set(derive.get("copy") or {}) | set(derive.get("set") or {})
    return Siblings(
        lists={"findings": list(concepts.get("findings", [])),
               "drug_classes": list(concepts.get("drug_classes", [])),
               "analytes": list(measurements.get("analytes", {}))},
        derived=derived,
        parameters={name: float(p["default"]) for name, p in parameters.items()},
        urls={str(vs["id"]): str(vs.get("url") or vs["id"])
              for vs in (json.loads(f.read_text(encoding="utf-8"))
                         for f in sorted((directory / "terminology").glob("valueset-*.json")))},
    )


def _field_mutations(
    bind: str, fld: str, spec: Any, siblings: Siblings, pattern: dict[str, Any]
) -> Iterator[tuple[str, str, Any]]:
    """(operator, location, new spec or DROP) for one constrained field of a pattern."""
    where = f"{bind}.{fld}"
    derived_name = fld == "name" and pattern.get("type") == "derived"
    if not derived_name:  # a derived pattern without a name is refused by the loader
        yield "drop-field", where, DROP
    needs = set(pattern) - {"type", "name", "id"}
    if isinstance(spec, list):
        for value in spec:
            if len(spec) > 1:
                yield "drop-alt", f"{where}={value}", [v for v in spec if v != value]
            if fld in VALUE_FIELDS or fld == "name":
                swapped = siblings.next_to(fld, value, spec, needs)
                if swapped is not None:
                    yield ("swap-valueset", f"{where}={value}",
                           [swapped if v == value else v for v in spec])
        return
    if isinstance(spec, dict) and not set(spec) & {"param", "field", "fact"}:
        for op, operand in spec.items():
            at = f"{where}.{op}"
            if op == "exists":
                yield "negate", at, {**spec, op: not operand}
                continue
            if op in NEGATE:
                negated = {k: v for k, v in spec.items() if k != op} | {NEGATE[op]: operand}
                yield "negate", at, negated
            yield from _shifts(at, spec, op, operand, siblings)
        return
    if fld in VALUE_FIELDS or fld == "name":
        swapped = siblings.next_to(fld, spec, [spec], needs)
        if swapped is not None:
            yield "swap-valueset", where, swapped
        return
    if isinstance(spec, bool):
        yield "negate", where, not spec
        return
    yield "negate", where, {"ne": spec}  # a value, or a param, field or fact operand: eq -> ne
    if isinstance(spec, int | float):
        yield from _shifts(where, {"eq": spec}, "eq", spec, siblings, plain=True)


def _shifts(at: str, spec: dict[str, Any], op: str, operand: Any, siblings: Siblings,
            plain: bool = False) -> Iterator[tuple[str, str, Any]]:
    """A numeric threshold one step up and down: a literal in the rule (``plain``: the field
    equals it), or the default of the parameter it names."""
    if isinstance(operand, bool):
        return
    if isinstance(operand, int | float):
        for name, sign in (("shift-up", 1), ("shift-down", -1)):
            moved = operand + sign * step_of(operand)
            yield name, at, moved if plain else {**spec, op: moved}
    elif isinstance(operand, dict) and (set(operand) == {"param"} or isinstance(
            operand.get("plus"), dict)):
        name = str((operand.get("plus") or operand)["param"])  # a window: its parameter
        if name in siblings.parameters:
            default = siblings.parameters[name]
            for label, sign in (("shift-up", 1), ("shift-down", -1)):
                yield label, at, ParamShift(name, default + sign * step_of(default))


@dataclass(frozen=True)
class ParamShift:
    """A threshold shift done on the parameter's default, not on the rule."""

    name: str
    value: float


DROP = object()


def mutants_of(document: dict[str, Any], path: str, siblings: Siblings,
               parameters_doc: dict[str, Any] | None = None) -> list[Mutant]:
    """Every mutant of one rule file, with stable ids ``rule-id:operator:location``."""
    rule_id = str(document["maintenance"]["id"])
    knowledge = document["knowledge"]
    found: list[Mutant] = []

    def add(operator: str, location: str, doc: dict[str, Any],
            params: dict[str, Any] | None = None) -> None:
        if operator == "swap-valueset":
            siblings.relink(doc)
        if doc is not document:  # a mutant is not the reviewed rule: test it, do not refuse it
            doc["maintenance"]["validation"] = "testing"
        found.append(Mutant(f"{rule_id}:{operator}:{location}", rule_id, operator, location,
                            path, doc, params))

    when = knowledge.get("when") or {}
    for bind, pattern in when.items():
        if len(when) > 1:
            doc = copy.deepcopy(document)
            del doc["knowledge"]["when"][bind]
            add("drop-when", bind, doc)
        for fld, spec in (pattern or {}).items():
            if fld == "type":
                continue
            for operator, location, new in _field_mutations(bind, fld, spec, siblings, pattern):
                doc = copy.deepcopy(document)
                target = doc["knowledge"]["when"][bind]
                if isinstance(new, ParamShift):
                    params = copy.deepcopy(parameters_doc or {})
                    params.setdefault("parameters", {}).setdefault(new.name, {})
                    params["parameters"][new.name]["default"] = new.value
                    add(operator, location, document, params)
                    continue
                if new is DROP:
                    del target[fld]
                else:
                    target[fld] = new
                add(operator, location, doc)
    for index in range(len(knowledge.get("unless") or [])):
        doc = copy.deepcopy(document)
        del doc["knowledge"]["unless"][index]
        add("drop-unless", str(index), doc)
    return found


def all_mutants(directory: Path) -> list[Mutant]:
    """The mutants of every rule file under ``directory/rules``, in file order."""
    files = sorted((directory / "rules").rglob("*.yaml"))
    docs = [(p, read_yaml(p)) for p in files]
    siblings = siblings_of(directory, [d for _, d in docs])
    parameters_doc = read_yaml(directory / "parameters.yaml")
    mutants: list[Mutant] = []
    for path, doc in docs:
        mutants += mutants_of(doc, str(path.relative_to(directory)), siblings, parameters_doc)
    return mutants


# ----------------------------------------------------------------------------- running


@dataclass
class Suite:
    """The scenarios and where their input files are read from."""

    scenarios: list[tuple[str, dict[str, Any]]]
    repo: Path
    broken: dict[str, list[str]] = field(default_factory=dict)
    """Scenarios that fail on the unmutated rules: left out, and reported."""


def _load_suite(scenario_dir: Path) -> Suite:
    from twitch_cds.knowledge.scenarios import load_scenario

    paths = sorted(scenario_dir.glob("*.yaml"))
    return Suite([(p.stem, load_scenario(p)) for p in paths], scenario_dir.parent.parent)


class _Worker:
    """A private copy of ``rulesets/`` in which mutants are written one at a time."""

    def __init__(self, source: Path, suite: Suite) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="twitch-cds-mutants-"))
        self.directory = self.tmp / "rulesets"
        shutil.copytree(source, self.directory)
        self.suite = suite

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def baseline(self) -> dict[str, list[str]]:
        from twitch_cds.knowledge.bundle import load_knowledge
        from twitch_cds.knowledge.scenarios import check_scenario

        knowledge = load_knowledge(self.directory)
        try:
            failing = {}
            for name, scenario in self.suite.scenarios:
                _, problems = check_scenario(scenario, self.suite.repo, knowledge)
                if problems:
                    failing[name] = problems
            return failing
        finally:
            _forget(knowledge)

    def run(self, mutant: Mutant) -> Outcome:
        from twitch_cds.knowledge.bundle import load_knowledge
        from twitch_cds.knowledge.scenarios import check_scenario

        outcome = Outcome(mutant.id, mutant.rule, mutant.operator, mutant.location, "survived")
        rule_file = self.directory / mutant.path
        param_file = self.directory / "parameters.yaml"
        saved = rule_file.read_bytes(), param_file.read_bytes()
        try:
            rule_file.write_text(yaml.safe_dump(mutant.document, allow_unicode=True,
                                                sort_keys=False), encoding="utf-8")
            if mutant.parameters is not None:
                param_file.write_text(yaml.safe_dump(mutant.parameters, allow_unicode=True,
                                                     sort_keys=False), encoding="utf-8")
            try:
                knowledge = load_knowledge(self.directory)
            except (RulesetError, ValueError) as exc:
                message = str(exc).replace(str(self.directory), "rulesets")
                outcome.status, outcome.detail = "invalid", message.splitlines()[0][:160]
                return outcome
            try:
                for name, scenario in _ordered(self.suite, mutant.rule):
                    _, problems = check_scenario(scenario, self.suite.repo, knowledge)
                    if problems:
                        outcome.status, outcome.killed_by = "killed", name
                        outcome.detail = problems[0][:200]
                        break
            finally:
                _forget(knowledge)
        finally:
            rule_file.write_bytes(saved[0])
            param_file.write_bytes(saved[1])
        return outcome


def _forget(knowledge: Any) -> None:
    """Drop the process's compiled engine for a mutant ruleset (it is never used again)."""
    import importlib

    evaluate_module = importlib.import_module("twitch_cds.evaluate")
    with evaluate_module._engines_lock:
        evaluate_module._engines.pop(id(knowledge), None)


def _ordered(suite: Suite, rule: str) -> list[tuple[str, dict[str, Any]]]:
    """Scenarios that name the rule first: they are the likeliest to kill its mutants."""
    usable = [(n, s) for n, s in suite.scenarios if n not in suite.broken]
    return sorted(usable, key=lambda item: rule not in item[1]["fires"] + item[1]["quiet"])


_WORKER: _Worker | None = None


def _init_worker(source: str, suite: Suite) -> None:
    global _WORKER
    _WORKER = _Worker(Path(source), suite)


def _run_in_worker(mutant: Mutant) -> Outcome:
    assert _WORKER is not None
    return _WORKER.run(mutant)


def _survivor_reasons(directory: Path) -> dict[str, str]:
    path = directory / SURVIVORS_FILE
    if not path.is_file():
        return {}
    data = read_yaml(path) or {}
    reasons = data.get("survivors", {}) if isinstance(data, dict) else {}
    return {str(k): str(v).strip() for k, v in (reasons or {}).items() if str(v or "").strip()}


@dataclass
class Report:
    outcomes: list[Outcome]
    broken: dict[str, list[str]]
    stale_reasons: list[str]
    seconds: float
    jobs: int

    def counts(self) -> dict[str, int]:
        counts = {"mutants": len(self.outcomes), "killed": 0, "survived": 0, "invalid": 0}
        for outcome in self.outcomes:
            counts[outcome.status] += 1
        counts["unexplained"] = sum(1 for o in self.outcomes
                                    if o.status == "survived" and not o.reason)
        return counts

    def score(self) -> float:
        counts = self.counts()
        valid = counts["killed"] + counts["survived"]
        return counts["killed"] / valid if valid else 1.0

    def as_json(self) -> dict[str, Any]:
        return {"score": round(self.score(), 4), "counts": self.counts(),
                "seconds": round(self.seconds, 1), "jobs": self.jobs,
                "broken_scenarios": self.broken, "stale_reasons": self.stale_reasons,
                "mutants": [asdict(o) for o in self.outcomes]}

    def table(self) -> str:
        rows = [("rule", "operator", "location", "result")]
        for o in self.outcomes:
            if o.status == "killed":
                result = f"killed by {o.killed_by}"
            elif o.status == "invalid":
                result = f"invalid ({o.detail})"
            else:
                result = "SURVIVED" + (f" (explained: {o.reason})" if o.reason
                                       else " (no reason written)")
            rows.append((o.rule, o.operator, o.location, result))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]) for r in rows]
        counts = self.counts()
        lines.append("")
        lines.append(f"mutation score: {self.score():.1%} ({counts['killed']} killed of "
                     f"{counts['killed'] + counts['survived']}; {counts['invalid']} invalid "
                     f"mutants not counted); survivors without a written reason: "
                     f"{counts['unexplained']}; {self.seconds:.1f} s with {self.jobs} job(s)")
        for name, problems in self.broken.items():
            lines.append(f"warning: scenario {name} fails on the unmutated rules (left out): "
                         f"{problems[0]}")
        for mutant_id in self.stale_reasons:
            lines.append(f"note: {SURVIVORS_FILE} explains {mutant_id}, which no longer survives")
        return "\n".join(lines)


def run(directory: Path, scenario_dir: Path, jobs: int = 1,
        rules: Sequence[str] | None = None) -> Report:
    """Make and run every mutant of the rules under ``directory`` (or of ``rules`` only)."""
    started = time.perf_counter()
    jobs = max(1, min(jobs, MAX_JOBS))
    mutants = all_mutants(directory)
    if rules:
        mutants = [m for m in mutants if m.rule in set(rules)]
    suite = _load_suite(scenario_dir)
    first = _Worker(directory, suite)
    try:
        suite.broken = first.baseline()
        if jobs == 1 or len(mutants) < 2:
            outcomes = [first.run(m) for m in mutants]
        else:
            # fork where the platform has it and this process has no other thread (a fork
            # copies locks other threads may hold); else spawn, which re-imports (~2 s)
            can_fork = ("fork" in multiprocessing.get_all_start_methods()
                        and threading.active_count() == 1)
            context = multiprocessing.get_context("fork" if can_fork else "spawn")
            with context.Pool(jobs, _init_worker, (str(directory), suite)) as pool:
                outcomes = pool.map(_run_in_worker, mutants, chunksize=4)
    finally:
        first.close()
    reasons = _survivor_reasons(directory)
    for outcome in outcomes:
        if outcome.status == "survived":
            outcome.reason = reasons.get(outcome.id)
    survivors = {o.id for o in outcomes if o.status == "survived"}
    considered = {m.rule for m in mutants}
    stale = sorted(r for r in reasons if r not in survivors and r.split(":")[0] in considered)
    return Report(outcomes, suite.broken, stale, time.perf_counter() - started, jobs)


def _default_scenarios(directory: Path) -> Path:
    for base in (directory.parent, Path.cwd()):
        if (base / "tests" / "scenarios").is_dir():
            return base / "tests" / "scenarios"
    return Path.cwd() / "tests" / "scenarios"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m twitch_cds.knowledge.mutate",
        description="Mutation testing of the rules against the clinical scenarios.")
    parser.add_argument("--rulesets", type=Path, default=None,
                        help="the rulesets/ directory (default: the one the package loads)")
    parser.add_argument("--scenarios", type=Path, default=None,
                        help="the scenario directory (default: tests/scenarios beside it)")
    parser.add_argument("--rule", action="append", default=[],
                        help="mutate only this rule id (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help=f"processes (1-{MAX_JOBS})")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument("--list", action="store_true", help="list the mutant ids and exit")
    args = parser.parse_args(argv)
    directory = (args.rulesets or rulesets_dir()).resolve()
    unknown = set(args.rule) - {m.rule for m in all_mutants(directory)}
    if unknown:
        parser.error(f"no rule (or no mutant) with id {', '.join(sorted(unknown))}")
    if args.list:
        for mutant in all_mutants(directory):
            if not args.rule or mutant.rule in args.rule:
                print(mutant.id)
        return 0
    scenario_dir = (args.scenarios or _default_scenarios(directory)).resolve()
    if not any(scenario_dir.glob("*.yaml")):
        # with no scenario every mutant "survives": a score of 0 % would be a false report
        parser.error(f"no scenarios (*.yaml) in {scenario_dir}: run from the repository root "
                     "or pass --scenarios DIR")
    report = run(directory, scenario_dir, args.jobs, args.rule)
    print(json.dumps(report.as_json(), indent=2) if args.json else report.table())
    return 1 if report.counts()["unexplained"] else 0


if __name__ == "__main__":
    sys.exit(main())
