"""RxNorm products and packs as EHRs send them (``rulesets/terminology/rxnorm-products.json``).

A chart often carries only a product code (310798, hydrochlorothiazide 25 MG Oral Tablet; a
branded pack such as 749762 Seasonique) that no ingredient value set holds. The table,
derived by ``scripts/derive_rxnorm.py`` from public RxNorm-derived lists, gives each
product's drug classes and its RxNorm name (which names its dose form: what tells an
inhaler from a tablet), and lists the products and ingredient names known to belong to no
class, so that they are never reported as unclassified.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from twitch_cds.errors import RulesetError

PRODUCTS_FILE = "rxnorm-products.json"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True)
class ProductTable:
    """Product code -> classes and name; codes and names known to be of no class."""

    system: str = RXNORM
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    not_relevant: frozenset[str] = frozenset()
    not_relevant_names: re.Pattern[str] = re.compile(r"(?!)")

    def name(self, system: str | None, code: str | None) -> str | None:
        """The RxNorm name of a product code we hold (its ingredients and dose form)."""
        if system != self.system or not code:
            return None
        return self.names.get(code.strip())

    def is_not_relevant(self, system: str | None, code: str | None) -> bool:
        return system == self.system and bool(code) and str(code).strip() in self.not_relevant

    def names_not_relevant(self, text: str) -> bool:
        """Whether free text names a drug known to belong to no class (amlodipine, ...)."""
        return bool(text) and self.not_relevant_names.search(text[:2000]) is not None


def load_products(path: Path) -> ProductTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        columns = data["columns"]
        code_at, name_at, classes_at = (columns.index(c) for c in ("code", "name", "classes"))
        classes = {row[code_at]: tuple(sorted(row[classes_at])) for row in data["products"]}
        names = {row[code_at]: row[name_at] for row in data["products"]}
        other = data["not_relevant_columns"]
        other_code, other_name = other.index("code"), other.index("name")
        for row in data["not_relevant"]:
            names[row[other_code]] = row[other_name]
        words = sorted(data["not_relevant_ingredients"], key=len, reverse=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RulesetError(f"{path}: not a product table: {exc}") from exc
    body = "|".join(re.escape(w).replace(r"\ ", r"[\s-]+") for w in words)
    return ProductTable(
        system=data.get("system", RXNORM), classes=classes, names=names,
        not_relevant=frozenset(row[other_code] for row in data["not_relevant"]),
        not_relevant_names=re.compile(rf"(?<![A-Za-z])(?:{body})(?![A-Za-z])", re.IGNORECASE)
        if words else re.compile(r"(?!)"))
