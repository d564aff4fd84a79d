"""Derive ``rulesets/terminology/rxnorm-products.json`` from public RxNorm-derived lists.

RxNorm's product concepts (clinical and branded drugs SCD/SBD, packs GPCK/BPCK, dose-form
groups SCDF/SBDF/SCDG...) are not ingredients, so a chart that sends only a product code
(``310798``, hydrochlorothiazide 25 MG Oral Tablet) is in no ingredient value set. This
script resolves every product the sources list to the ingredients its RxNorm name (or the
source's ingredient column) names, and so to our drug classes (the ingredient names of
``valueset-diuretic``, ``valueset-corticosteroid`` and ``valueset-estrogen``). Products of
no class ingredient are kept as "known, not relevant" so that they are not reported as
unclassified.

    python scripts/derive_rxnorm.py --sources scripts/rxnorm_sources  # from the extracts
    python scripts/derive_rxnorm.py --sources DIR --raw ...            # from the originals

``--raw`` reads the original files (``--ssmithm antihtn_rxcuis.csv --canvas2022 medication.py
--canvas2026 medication.py --pedsnet rx_2019_11_Steroids_V1.csv``), writes the extracts we
keep (code, name, and the source's own class/ingredient columns: RxNorm facts), then
derives from them; ``tests/test_rxnorm_products.py`` re-derives from the extracts and
compares with the shipped table.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TERMINOLOGY = ROOT / "rulesets" / "terminology"
OUT = TERMINOLOGY / "rxnorm-products.json"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NAME_SYSTEM = "https://twitch-cds.github.io/fhir/CodeSystem/medication-name"
CLASSES = ("diuretic", "corticosteroid", "estrogen")

SOURCES: dict[str, dict[str, str]] = {
    "ssmithm": {
        "title": "ssmithm/rxnorm-drug-lists antihypertensive_drugs/antihtn_rxcuis.csv "
                 "(RxNorm release May 2026, via the rxref R package)",
        "url": "https://github.com/ssmithm/rxnorm-drug-lists",
        "commit": "27b1bcd63812d8079c79b2cd3e2024408cb74038",
        "date": "2026-05-13",
        "licence": "none stated; RxNorm identifiers and names (NLM) only are kept",
        "verification": "W",
    },
    "ecqm2021": {
        "title": "NLM VSAC eCQM value sets, 'eCQM Update 2021-05-06' expansions, as shipped in "
                 "canvas-medical/canvas-plugins canvas_sdk/value_set/v2022/medication.py",
        "url": "https://github.com/canvas-medical/canvas-plugins",
        "commit": "344f0bcb924b2be7ffafb5ac7edf19d475704259",
        "date": "2026-08-21",
        "licence": "MIT (pyproject.toml); value sets are NLM VSAC",
        "verification": "V",
    },
    "ecqm2025": {
        "title": "NLM VSAC eCQM value sets, 'eCQM Update 2025-05-08' expansions, as shipped in "
                 "canvas-medical/canvas-plugins canvas_sdk/value_set/v2026/medication.py",
        "url": "https://github.com/canvas-medical/canvas-plugins",
        "commit": "344f0bcb924b2be7ffafb5ac7edf19d475704259",
        "date": "2026-08-21",
        "licence": "MIT (pyproject.toml); value sets are NLM VSAC",
        "verification": "V",
    },
    "pedsnet": {
        "title": "PEDSnet/Variable-Dictionary drugs/rx_2019_11_Steroids_V1.csv (OMOP RxNorm "
                 "concepts; vocabulary_id RxNorm rows only)",
        "url": "https://github.com/PEDSnet/Variable-Dictionary",
        "commit": "009e8ba179c84d844a0c5b898132efb33acdef9e",
        "date": "2024-05-06",
        "licence": "public codeset (terminology.md source PED)",
        "verification": "V",
    },
    "synthea": {
        "title": "synthetichealth/synthea src/main/resources/modules/contraceptives/*.json "
                 "(codes Synthea prescribes; oral_contraceptive.json @3b789a3d, "
                 "ring_contraceptive.json @4532e3ce, patch_contraceptive.json @106459b9) and "
                 "smart-on-fhir/sample-bulk-fhir-datasets branch 10-patients @8aef4e02 "
                 "(2025-09-17); each pack's full RxNorm name (its ingredients) from a public "
                 "inventory of Synthea output found by code search",
        "url": "https://github.com/synthetichealth/synthea",
        "commit": "3b789a3d99d8e4ae7108540298d18c760045ade4",
        "date": "2025-09-17",
        "licence": "Apache-2.0",
        "verification": "W",
    },
}
ECQM_SETS = {
    "ecqm2021": ("Contraceptive Medications", "Conjugated Estrogens", "Esterified Estrogens",
                 "Estradiol", "Estropipate", "Glucocorticoids (oral only)"),
    "ecqm2025": ("Diuretics", "Contraceptive Medications",
                 "Potentially Harmful Estrogens for Older Adults"),
}
SSMITHM_DIURETIC = {"THIAZIDE_DIURETIC", "LOOP_DIURETIC", "K_SPARING_DIURETIC",
                    "ALDO_ANTAGONIST"}


# -- ingredient names of each class, from our own value sets ------------------------------
def class_names() -> dict[str, set[str]]:
    """Each class's ingredient names (lower case): RxNorm displays, designations and the
    name-only concepts of the class's value set."""
    names: dict[str, set[str]] = {}
    for cls in CLASSES:
        vs = json.loads((TERMINOLOGY / f"valueset-{cls}.json").read_text(encoding="utf-8"))
        found: set[str] = set()
        for include in vs["compose"]["include"]:
            if include["system"] not in (RXNORM, NAME_SYSTEM):
                continue
            for concept in include.get("concept", []):
                words = [concept.get("display") or "",
                         *(d["value"] for d in concept.get("designation", [])
                           if not d.get("language"))]
                found.update(w.lower() for w in words if _is_ingredient_word(w))
        names[cls] = found
    return names


def _is_ingredient_word(word: str) -> bool:
    """An English ingredient name (not a brand, abbreviation or group word): lower-case in
    RxNorm's own spelling."""
    return bool(word) and word == word.lower() and word not in {"estrogens"}


def _pattern(names: set[str]) -> re.Pattern[str]:
    body = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![a-z])({body})(?![a-z])")


def tty_of(name: str) -> str:
    """RxNorm term type from the shape of its normalised name (when the source gives none):
    packs in braces, branded names in brackets, strengths in clinical drugs, a dose form
    alone in dose-form groups, and nothing else in ingredients."""
    branded = name.rstrip().endswith("]")
    if name.startswith("{"):
        return "BPCK" if branded else "GPCK"
    if any(ch.isdigit() for ch in name.split("[")[0]):
        return "SBD" if branded else "SCD"
    if " " in name.split("[")[0].strip():
        return "SBDF" if branded else "SCDF"
    return "IN"


# -- reading the original files -----------------------------------------------------------
def read_ecqm(path: Path, wanted: tuple[str, ...]) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    rows = []
    for block in re.split(r"\nclass ", text):
        name = re.search(r'VALUE_SET_NAME = "([^"]+)"', block)
        if not name or name.group(1) not in wanted:
            continue
        rx = re.search(r"RXNORM = \{(.*?)\n    \}", block, re.S)
        for code, display in re.findall(r'"(\d+)",\s*# (.+)', rx.group(1) if rx else ""):
            rows.append({"code": code, "name": display.strip(), "set": name.group(1)})
    return rows


def write_extracts(args: argparse.Namespace, out: Path) -> None:
    """Keep only the RxNorm facts we use from each original file (code, name, and the
    source's own class or ingredient columns)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(args.ssmithm, newline="", encoding="utf-8") as f:
        rows = [{"code": r["RXCUI"], "name": r["STR"], "tty": r["TTY"],
                 "ingredient": r["ingredient_name"], "class": r["class"]}
                for r in csv.DictReader(f)]
    _write(out / "ssmithm-antihtn.csv", rows, ["code", "name", "tty", "ingredient", "class"])
    for key, path in (("ecqm2021", args.canvas2022), ("ecqm2025", args.canvas2026)):
        _write(out / f"{key}.csv", read_ecqm(Path(path), ECQM_SETS[key]),
               ["code", "name", "set"])
    with open(args.pedsnet, newline="", encoding="utf-8") as f:
        rows = [{"code": r["concept_code"], "name": r["concept_name"]}
                for r in csv.DictReader(f) if r["vocabulary_id"] == "RxNorm"]
    _write(out / "pedsnet-steroids.csv", rows, ["code", "name"])


def _write(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    rows = sorted(rows, key=lambda r: (int(r["code"]), *(r[c] for c in columns[1:])))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- derivation ---------------------------------------------------------------------------
def derive(sources: Path) -> dict[str, Any]:
    names = class_names()
    patterns = {cls: _pattern(n) for cls, n in names.items()}
    products: dict[str, dict[str, Any]] = {}
    irrelevant: dict[str, dict[str, Any]] = {}
    unplaced: list[str] = []

    def patterns_hit(name: str) -> bool:
        return any(p.search(name) for p in patterns.values())

    def ingredients_in(name: str) -> dict[str, set[str]]:
        low = name.lower()
        return {cls: set(p.findall(low)) for cls, p in patterns.items() if p.search(low)}

    def add(code: str, name: str, tty: str, source: str,
            found: dict[str, set[str]], expected: str | None = None) -> None:
        if not found:
            if expected:
                unplaced.append(f"{source} {code} {name!r}: no {expected} ingredient named")
            entry = irrelevant.setdefault(code, {"name": name, "tty": tty, "sources": set()})
            entry["sources"].add(source)
            return
        entry = products.setdefault(code, {"name": name, "tty": tty, "classes": {},
                                           "sources": set()})
        for cls, ingr in found.items():
            entry["classes"].setdefault(cls, set()).update(ingr)
        entry["sources"].add(source)
        if entry["name"].lower() != name.lower():
            entry.setdefault("other_names", set()).add(name)

    # ssmithm: one row per (product, antihypertensive ingredient), with its class
    by_code: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in _read(sources / "ssmithm-antihtn.csv"):
        by_code[row["code"]].append(row)
    for code, rows in by_code.items():
        found = ingredients_in(rows[0]["name"])
        diuretic_rows = {r["ingredient"].lower() for r in rows if r["class"] in SSMITHM_DIURETIC}
        if diuretic_rows:
            found.setdefault("diuretic", set()).update(diuretic_rows)
            names["diuretic"].update(diuretic_rows)
        add(code, rows[0]["name"], rows[0]["tty"], "ssmithm", found)
    for key in ("ecqm2021", "ecqm2025"):
        for row in _read(sources / f"{key}.csv"):
            expected = ("corticosteroid" if "Glucocorticoid" in row["set"] else
                        "diuretic" if row["set"] == "Diuretics" else
                        None if row["set"] == "Contraceptive Medications" else "estrogen")
            add(row["code"], row["name"], tty_of(row["name"]), key,
                ingredients_in(row["name"]), expected)
    for row in _read(sources / "pedsnet-steroids.csv"):
        add(row["code"], row["name"], tty_of(row["name"]), "pedsnet",
            ingredients_in(row["name"]), "corticosteroid")
    for row in _read(sources / "synthea-contraceptives.csv"):
        found = ingredients_in(f"{row['name']} {row['ingredients']}")
        add(row["code"], row["name"], tty_of(row["name"]), "synthea", found)
        if row["display"] and row["display"].lower() != row["name"].lower():
            target = products.get(row["code"]) or irrelevant[row["code"]]
            target.setdefault("other_names", set()).add(row["display"])

    both = set(products) & set(irrelevant)
    for code in both:  # a class ingredient named by any source wins: never dropped
        products[code]["sources"] |= irrelevant.pop(code)["sources"]

    def verification(srcs: set[str]) -> str:
        verified = any(SOURCES[s]["verification"] == "V" for s in srcs)
        return "V" if verified or len(srcs) > 1 else "W"

    def row_of(code: str, e: dict[str, Any], classes: bool) -> list[Any]:
        row: list[Any] = [code, e["tty"], e["name"]]
        if classes:
            row.append({cls: sorted(i) for cls, i in sorted(e["classes"].items())})
        row += [verification(e["sources"]), sorted(e["sources"]),
                sorted(e.get("other_names", ()))]
        return row

    irrelevant_names = (
        {r["ingredient"].lower() for rows in by_code.values() for r in rows
         if r["class"] not in SSMITHM_DIURETIC}
        | {r["name"].lower() for r in _read(sources / "ssmithm-antidiabetic-lipid.csv")}
        | {r["name"].lower() for r in _read(sources / "common-not-relevant.csv")})
    irrelevant_names = sorted(n for n in irrelevant_names - set().union(*names.values())
                              if not patterns_hit(n))
    return {
        "description": (
            "RxNorm products (SCD, SBD, GPCK, BPCK, SCDF, SBDF, SCDG, SBDG, ...) resolved to the "
            "ingredients their RxNorm names name, and so to the drug classes of "
            "valueset-diuretic, valueset-corticosteroid and valueset-estrogen; derived by "
            "scripts/derive_rxnorm.py from the sources below (do not edit by hand). "
            "`products`: code -> classes with their ingredients. `not_relevant`: products "
            "the same sources list that contain no class ingredient (other antihypertensives, "
            "progestin-only contraceptives, ...): known, so never reported as unclassified. "
            "verification: V when an NLM VSAC or PEDSnet (OMOP) list holds the code with its "
            "name, or two sources agree; W when a single third-party list does."),
        "system": RXNORM,
        "derived_by": "scripts/derive_rxnorm.py",
        "sources": SOURCES,
        "columns": ["code", "tty", "name", "classes", "verification", "sources",
                    "other_names"],
        "products": [row_of(c, e, True) for c, e in sorted(products.items(),
                                                            key=lambda kv: int(kv[0]))],
        "not_relevant_columns": ["code", "tty", "name", "verification", "sources",
                                 "other_names"],
        "not_relevant": [row_of(c, e, False) for c, e in sorted(irrelevant.items(),
                                                                 key=lambda kv: int(kv[0]))],
        "not_relevant_ingredients": irrelevant_names,
        "not_relevant_ingredients_sources": [
            "ssmithm antihypertensive ingredients of non-diuretic classes (antihtn_rxcuis.csv)",
            "ssmithm antidiabetic_drugs/Antidiabetic-med_class_lists.csv and "
            "lipid_lowering_therapy/Lipid-med_class_lists.csv generic names",
            "scripts/rxnorm_sources/common-not-relevant.csv: common drugs of other classes "
            "(general knowledge, W), English and Indonesian names"],
        "unplaced": sorted(unplaced),
    }


def _dump(table: dict[str, Any]) -> str:
    """Readable and small: metadata indented, one product per line (diffs stay per code)."""
    def rows(items: list[Any]) -> str:
        return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":"))
                                   for r in items) + "\n]"
    head = {k: v for k, v in table.items() if k not in ("products", "not_relevant")}
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    return (f'{text},\n"products": {rows(table["products"])},\n'
            f'"not_relevant": {rows(table["not_relevant"])}\n}}\n')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, default=ROOT / "scripts" / "rxnorm_sources")
    parser.add_argument("--raw", action="store_true", help="read the original files first")
    parser.add_argument("--ssmithm")
    parser.add_argument("--canvas2022")
    parser.add_argument("--canvas2026")
    parser.add_argument("--pedsnet")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.raw:
        write_extracts(args, args.sources)
    table = derive(args.sources)
    args.out.write_text(_dump(table), encoding="utf-8")
    print(f"{len(table['products'])} products, {len(table['not_relevant'])} not relevant; "
          f"{len(table['unplaced'])} source rows named no ingredient of their class",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
