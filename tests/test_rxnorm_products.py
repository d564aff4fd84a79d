"""The derived RxNorm product table against the sources it was built from."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "rulesets" / "terminology" / "rxnorm-products.json"
SOURCES = ROOT / "scripts" / "rxnorm_sources"
ESTROGENS = ("ethinyl estradiol", "estradiol", "mestranol", "estrogens", "estropipate")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("derive_rxnorm",
                                                  ROOT / "scripts" / "derive_rxnorm.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def _rows(name: str) -> list[dict[str, str]]:
    with open(SOURCES / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_shipped_table_is_what_the_script_derives_from_the_sources(
        table: dict[str, Any]) -> None:
    assert _script().derive(SOURCES) == json.loads(json.dumps(table))


def test_every_source_row_is_in_the_table_once(table: dict[str, Any]) -> None:
    products = {row[0]: row for row in table["products"]}
    other = {row[0]: row for row in table["not_relevant"]}
    assert not set(products) & set(other)
    for name in ("ssmithm-antihtn.csv", "ecqm2021.csv", "ecqm2025.csv",
                 "pedsnet-steroids.csv", "synthea-contraceptives.csv"):
        for row in _rows(name):
            assert row["code"] in products or row["code"] in other, (name, row["code"])


def test_each_products_name_names_its_ingredients(table: dict[str, Any]) -> None:
    """RxNorm clinical names name every ingredient: a class is never given to a product
    whose source name does not name an ingredient of it (branded groups such as "Hyzaar
    Oral Product", and two Synthea products, have the source's ingredient column)."""
    extra = {r["code"]: r["ingredients"].lower() for r in _rows("synthea-contraceptives.csv")}
    for r in _rows("ssmithm-antihtn.csv"):
        extra[r["code"]] = f"{extra.get(r['code'], '')} {r['ingredient'].lower()}"
    for code, _tty, name, classes, *_ in table["products"]:
        words = f"{name.lower()} {extra.get(code, '')}"
        for ingredients in classes.values():
            assert any(re.search(rf"(?<![a-z]){re.escape(i)}(?![a-z])", words)
                       for i in ingredients), (code, name)


def test_the_ssmithm_diuretic_classes_are_all_diuretic(table: dict[str, Any]) -> None:
    products = {row[0]: row[3] for row in table["products"]}
    for row in _rows("ssmithm-antihtn.csv"):
        if row["class"] in {"THIAZIDE_DIURETIC", "LOOP_DIURETIC", "K_SPARING_DIURETIC",
                            "ALDO_ANTAGONIST"}:
            assert "diuretic" in products[row["code"]], row


def test_progestin_only_contraceptives_are_never_estrogen(table: dict[str, Any]) -> None:
    classes = {row[0]: row[3] for row in table["products"]}
    for row in _rows("ecqm2021.csv") + _rows("ecqm2025.csv"):
        if row["set"] == "Contraceptive Medications" and not any(
                e in row["name"].lower() for e in ESTROGENS):
            assert "estrogen" not in classes.get(row["code"], {}), row
    for code in ("748962", "831533", "757594", "807283", "1856546", "389221", "198042"):
        assert code not in classes


def test_synthea_estrogen_packs_are_estrogen(table: dict[str, Any]) -> None:
    classes = {row[0]: row[3] for row in table["products"]}
    for code in ("749882", "1359133", "749785", "751905", "749762", "748856", "978950",
                 "748879", "1367439", "1536586", "235389"):
        assert "estrogen" in classes[code], code


def test_every_row_says_its_verification_and_sources(table: dict[str, Any]) -> None:
    for row in table["products"] + table["not_relevant"]:
        verification, sources = row[-3], row[-2]
        assert verification in ("V", "W") and sources
        assert set(sources) <= set(table["sources"])
        if verification == "W":
            assert len(sources) == 1
            assert table["sources"][sources[0]]["verification"] == "W"


_TABLE = json.loads(TABLE.read_text(encoding="utf-8"))


@settings(max_examples=60, deadline=None)
@given(row=st.sampled_from(_TABLE["products"]))
def test_any_product_code_alone_reads_as_its_classes(row: list[Any]) -> None:
    """End to end: a MedicationStatement carrying only the product code becomes an exposure
    to exactly the product's classes (a corticosteroid product of local use, none in the
    sources today, would be reported not systemic instead)."""
    import twitch_cds
    from tests.builders import NOW, RXNORM, med_statement, twitching

    result = twitch_cds.evaluate(
        [twitching(), med_statement("m", [{"system": RXNORM, "code": row[0]}])], now=NOW)
    read = {fact.id.split("#")[-1] for firing in result.trace.fired
            for fact in firing.facts.values() if fact.id.startswith("MedicationStatement/m#")}
    local = {"corticosteroid"} if any(i.code == "not-systemic" for i in result.issues) else set()
    assert read | local == set(row[3])
    assert not any(i.code == "unclassified-medication" for i in result.issues)


@settings(max_examples=40, deadline=None)
@given(row=st.sampled_from(_TABLE["not_relevant"]))
def test_any_product_of_no_class_is_silent(row: list[Any]) -> None:
    import twitch_cds
    from tests.builders import NOW, RXNORM, med_statement, twitching

    result = twitch_cds.evaluate(
        [twitching(), med_statement("m", [{"system": RXNORM, "code": row[0]}])], now=NOW)
    assert "MedicationStatement/m" not in {r for refs in result.evidence.values() for r in refs}
    assert not any(i.code == "unclassified-medication" for i in result.issues)
