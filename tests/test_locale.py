"""Issue 8: with lang="id" no English is left in the input-issue texts, and the message
catalogues that make that so are complete (both languages, the same placeholders, every key
the code uses present)."""

from __future__ import annotations

import ast
import contextlib
import copy
import inspect
import itertools
import json
import re
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

import twitch_cds
from twitch_cds import InputError
from twitch_cds.issues import Action, InputIssue, Severity, msg
from twitch_cds.locale import CatalogueError, catalogue, number, placeholders, render

from . import test_hardening as hardening
from .builders import NOW, lab, twitching

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "twitch_cds"
MESSY = ROOT / "examples" / "12-messy-data.json"
CATALOGUES = ("issues", "cli")


# -- the catalogues ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", CATALOGUES)
def test_every_key_has_en_and_id_with_the_same_placeholders(name: str) -> None:
    raw = yaml.safe_load((SOURCE / "locale" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert raw and set(raw) == set(catalogue(name))
    for key, entry in raw.items():
        assert set(entry) == {"en", "id"}, key
        assert entry["en"].strip() and entry["id"].strip(), key
        assert placeholders(entry["en"]) == placeholders(entry["id"]), key


@pytest.mark.parametrize("template", ["{value:>5}", "{value!r}", "{value.attr}", "{0}"])
def test_a_placeholder_is_a_plain_name(template: str) -> None:
    with pytest.raises(CatalogueError):
        placeholders(template)


def _used_keys() -> tuple[set[str], set[str], set[str]]:
    """Keys of issues.yaml and cli.yaml named in the source, and the f-string key prefixes."""
    issues: set[str] = set()
    cli: set[str] = set()
    prefixes: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            args = node.args
            if name == "_say" and len(args) >= 2:
                key_node, into = args[1], cli
            elif name in ("msg", "issue_word", "of") and args:  # of: InputError.of
                key_node, into = args[0], issues
            elif name == "described" and len(args) >= 2:
                key_node, into = args[1], issues
            elif name in ("unreadable", "_each") and len(args) >= 3:
                stage = args[2] if name == "unreadable" else args[1]
                if isinstance(stage, ast.Constant) and isinstance(stage.value, str):
                    issues.add(f"unreadable.{stage.value}")
                continue
            else:
                continue
            if isinstance(key_node, ast.Constant) and isinstance(key_node.value, str):
                into.add(("word." if name == "issue_word" else "") + key_node.value)
            elif isinstance(key_node, ast.JoinedStr):
                head = key_node.values[0]
                assert isinstance(head, ast.Constant), ast.unparse(key_node)
                prefixes.add(str(head.value))
    return issues, cli, prefixes


def test_every_key_used_in_the_code_exists() -> None:
    issues, cli, prefixes = _used_keys()
    assert len(issues) > 50 and len(cli) > 5
    assert not issues - set(catalogue("issues"))
    assert not cli - set(catalogue("cli"))
    # keys made from a value: every value the type allows has its key
    assert prefixes == {"unreadable.", "severity.", "action.", "indicator.", "rule.",
                        "coding-malformed."}
    for severity in get_args(Severity):
        assert f"severity.{severity}" in catalogue("cli")
    for action in get_args(Action):
        assert f"action.{action}" in catalogue("cli")
    for indicator in ("info", "warning", "critical"):
        assert f"indicator.{indicator}" in catalogue("cli")
    from twitch_cds.fhir_in.screen import Stage

    for stage in get_args(Stage):
        assert f"unreadable.{stage}" in catalogue("issues")
    from twitch_cds.fhir_in.coding import Malformation

    for kind in get_args(Malformation):
        assert f"coding-malformed.{kind}" in catalogue("issues")


def test_every_issue_message_is_used() -> None:
    """No dead text to translate: every message (but the validator phrases, chosen by
    pydantic's error type) is named somewhere in the code."""
    issues, _, _ = _used_keys()
    from twitch_cds.fhir_in.coding import Malformation

    issues |= {f"coding-malformed.{kind}" for kind in get_args(Malformation)}  # by its kind
    unused = {k for k in catalogue("issues") if not k.startswith("pydantic.")} - issues
    assert not unused


def test_numbers_are_written_the_language_s_way() -> None:
    assert (number(3.5, "en"), number(3.5, "id")) == ("3.5", "3,5")
    assert number(1234567, "id") == "1234567"
    assert render("issues", "finding-stale", {"date": "2026-01-02", "days": 14.5}, "id") \
        == "bertanggal 2026-01-02, lebih lama dari 14,5 hari: tidak terkini"


# -- no English left in the issues ------------------------------------------------------------
def _english_fragments() -> list[str]:
    """The fixed words of every English template that an Indonesian text must not contain:
    each literal run between placeholders with at least two words, unless the Indonesian
    template has it too (a FHIR field name, say)."""
    fragments = []
    for entry in catalogue("issues").values():
        for literal, *_ in string.Formatter().parse(entry["en"]):
            text = literal.strip(" :;,.()'")
            if len(re.findall(r"[A-Za-z]{2,}", text)) >= 2 and text not in entry["id"]:
                fragments.append(text)
    return fragments


FRAGMENTS = _english_fragments()


def _assert_indonesian(issues: list[InputIssue]) -> None:
    for issue in issues:
        assert issue.message_id is not None, issue
        left = [f for f in FRAGMENTS if f in issue.problem]
        assert not left, f"{issue}: English left: {left}"
        detail = issue.params.get("detail")
        if isinstance(detail, dict):  # a validator's English message is not passed through
            assert detail["en"] not in issue.problem, issue


def test_the_fragments_catch_english() -> None:
    assert len(FRAGMENTS) > 50
    english = twitch_cds.evaluate(MESSY.read_bytes(), now=NOW).issues
    assert english and all(any(f in i.problem for f in FRAGMENTS) for i in english)


@pytest.mark.parametrize("key", sorted(catalogue("issues")))
def test_no_message_keeps_english_in_indonesian(key: str) -> None:
    """Every message, not only those the inputs below happen to meet."""
    template = catalogue("issues")[key]["id"]
    text = render("issues", key, {name: "«x»" for name in placeholders(template)}, "id")
    assert not [f for f in FRAGMENTS if f in text], text


@pytest.mark.parametrize("path", [*sorted((ROOT / "examples").glob("*.json")),
                                  *sorted((ROOT / "tests" / "scenarios").glob("*.yaml"))],
                         ids=lambda p: p.stem)
def test_examples_and_scenarios_in_indonesian(path: Path) -> None:
    if path.suffix == ".json":
        data: Any = path.read_bytes()
        now = NOW
    else:
        scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = (json.loads((ROOT / scenario["input_file"]).read_text(encoding="utf-8"))
                if "input_file" in scenario else scenario["input"])
        now = scenario["now"]
    _assert_indonesian(twitch_cds.evaluate(data, now=now, lang="id").issues)


def test_the_messy_example_in_indonesian() -> None:
    english = twitch_cds.evaluate(MESSY.read_bytes(), now=NOW).issues
    indonesian = twitch_cds.evaluate(MESSY.read_bytes(), now=NOW, lang="id").issues
    assert len(indonesian) == len(english) >= 5
    _assert_indonesian(indonesian)
    for en, id_ in zip(english, indonesian, strict=True):
        # the same issue: only the words differ; the quoted input stays as sent
        assert en.model_dump(exclude={"problem"}) == id_.model_dump(exclude={"problem"})
        assert en.problem != id_.problem
        for value in en.params.values():
            if isinstance(value, str):
                assert value in id_.problem


def test_a_decimal_comma_in_indonesian_but_input_values_as_sent() -> None:
    data = [twitching(), lab("k", "2823-3", 25.5, "mmol/L"), lab("na", "2951-2", 3.5, "mg%")]
    en = {i.resource: i.problem for i in twitch_cds.evaluate(data, now=NOW).issues}
    id_ = {i.resource: i.problem for i in twitch_cds.evaluate(data, now=NOW, lang="id").issues}
    assert en["Observation/k"].startswith(
        "25.5 'mmol/L' is not a plausible potassium (plausible: 0.5–15 mmol/L)")
    assert id_["Observation/k"].startswith(
        "25,5 'mmol/L' bukan nilai kalium yang masuk akal (masuk akal: 0,5–15 mmol/L)")
    assert id_["Observation/na"].startswith("satuan 'mg%' bukan satuan yang dikenal untuk")


def test_evaluate_leaves_its_input_as_it_was() -> None:
    """What lets the run below evaluate the same input twice without a copy."""
    data = json.loads(MESSY.read_text(encoding="utf-8"))
    before = json.dumps(data, sort_keys=True)
    for lang in ("en", "id"):
        twitch_cds.evaluate(data, now=NOW, lang=lang)
    assert json.dumps(data, sort_keys=True) == before


@pytest.mark.parametrize(("data", "english", "indonesian"), [
    ("", "the input is empty", "masukan kosong"),
    ("{x", "input is not JSON: Expecting property name", "masukan bukan JSON: sintaks JSON"),
    (b"\xff", "input is not UTF-8 text: 'utf-8' codec", "masukan bukan teks UTF-8: bita ke-0"),
    ({"a": 1}, "input is a JSON object without resourceType", "masukan adalah objek JSON"),
    ({"hook": "patient-view", "hookInstance": 5, "context": {}},
     "not a valid CDS Hooks request: hookInstance: Input should be a valid string",
     "bukan permintaan CDS Hooks yang sah: hookInstance: nilainya harus berupa teks"),
    (7, "cannot read input of type int", "masukan berjenis int tidak dapat dibaca"),
])
def test_input_errors_in_either_language(data: Any, english: str, indonesian: str) -> None:
    with pytest.raises(InputError) as raised:
        twitch_cds.evaluate(data, now=NOW, lang="id")
    assert str(raised.value).startswith(english)  # the exception's message stays English
    assert raised.value.in_lang("en") == str(raised.value)
    assert raised.value.in_lang("id").startswith(indonesian)
    assert not [f for f in FRAGMENTS if f in raised.value.in_lang("id")]


def test_issues_keep_their_shape_and_are_safe() -> None:
    issue = InputIssue(severity="warning", resource="Observation/x", path="status",
                       action="ignored", code="status-unusable",
                       **msg("observation-status", status="'a\nb'"))
    assert issue.problem == "status 'a\ufffdb' is not a usable result"
    assert issue.in_lang("id").problem == "status 'a\ufffdb' bukan hasil yang dapat dipakai"
    assert issue.in_lang("en") == issue
    assert json.loads(issue.model_dump_json())["message_id"] == "observation-status"
    assert hash(issue) == hash(copy.deepcopy(issue))
    plain = InputIssue(severity="error", resource="r", path="p", problem="as written",
                       action="skipped", code="not-a-resource")
    assert plain.in_lang("id") is plain and plain.params == {}
    # an issue from another version (a message this one lacks) keeps the text it has
    foreign = plain.model_copy(update={"message_id": "no-such-message"})
    assert foreign.in_lang("id") is foreign


# -- the hardening inputs, evaluated again in Indonesian --------------------------------------
_NOT_HERE = {"test_a_giant_code_costs_no_more_than_a_short_one"}  # a timing test


def _hardening_cases() -> Iterator[Any]:
    for name, function in vars(hardening).items():
        if not name.startswith("test_") or name in _NOT_HERE or not callable(function):
            continue
        grids: list[list[dict[str, Any]]] = []
        for mark in getattr(function, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            names = mark.args[0]
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else names
            grids.append([dict(zip(names, v if len(names) > 1 else (v,), strict=True))
                          for v in mark.args[1]])
        wanted = set(inspect.signature(function).parameters) - {"monkeypatch"}
        for index, combo in enumerate(itertools.product(*grids)):
            kwargs = {k: v for part in combo for k, v in part.items()}
            if wanted <= set(kwargs):
                yield pytest.param(function, kwargs, id=f"{name}[{index}]")


@pytest.mark.parametrize(("function", "kwargs"), list(_hardening_cases()))
def test_hardening_inputs_in_indonesian(function: Callable[..., None], kwargs: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = twitch_cds.evaluate
    seen: list[InputIssue] = []

    def both(data: Any, **options: Any) -> twitch_cds.EvaluationResult:
        # first in Indonesian (evaluate leaves its input as it was: tested above), then the
        # hardening test's own call, unchanged; an InputError is raised again by that call
        with contextlib.suppress(InputError):
            seen.extend(real(data, **{**options, "lang": "id"}).issues)
        return real(data, **options)

    monkeypatch.setattr(twitch_cds, "evaluate", both)
    if "monkeypatch" in inspect.signature(function).parameters:
        kwargs = {**kwargs, "monkeypatch": monkeypatch}
    function(**kwargs)
    _assert_indonesian(seen)


def test_the_hardening_harness_finds_the_cases() -> None:
    """The run above is worth something only if it finds the hardening tests."""
    assert len(list(_hardening_cases())) > 30
