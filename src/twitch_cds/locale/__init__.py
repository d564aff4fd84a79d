"""The words twitch-cds says itself, in English and Indonesian: input-issue texts
(``issues.yaml``) and the command line's own words (``cli.yaml``).

These are not clinical knowledge (that is ``rulesets/``): they describe the data and the
program. Each catalogue is YAML data, one template per key with ``{named}`` placeholders, so a
translator edits text without touching code and a test checks every key has both languages
with the same placeholders.

Parameters fill the placeholders: a string is quoted as sent (a field value, a code, a unit,
a reference) and never translated; a number is written in the language's way (a decimal
comma in Indonesian); a ``{"en": ..., "id": ...}`` pair is a word that has a translation.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from importlib import resources
from typing import Literal

import yaml

Lang = Literal["en", "id"]
LANGS: tuple[Lang, ...] = ("en", "id")
Param = str | int | float | dict[str, str]
"""A placeholder's value: quoted text, a number, or a word in each language."""


class CatalogueError(ValueError):
    """A catalogue file is malformed (a missing language, a bad placeholder)."""


def placeholders(template: str) -> set[str]:
    """The ``{name}`` placeholders of a template (only plain names are allowed)."""
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise CatalogueError(f"{template!r}: placeholders are plain {{name}} only")
        names.add(name)
    return names


@functools.cache
def catalogue(name: str) -> Mapping[str, Mapping[Lang, str]]:
    """A catalogue by file name (``issues``, ``cli``), loaded and checked once per process."""
    text = resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise CatalogueError(f"{name}.yaml: expected a mapping of message keys")
    out: dict[str, dict[Lang, str]] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != set(LANGS) or not all(
                isinstance(entry[lang], str) and entry[lang] for lang in LANGS):
            raise CatalogueError(f"{name}.yaml: {key!r} needs non-empty 'en' and 'id' texts")
        if placeholders(entry["en"]) != placeholders(entry["id"]):
            raise CatalogueError(f"{name}.yaml: {key!r}: 'en' and 'id' differ in placeholders")
        out[str(key)] = {lang: entry[lang] for lang in LANGS}
    return out


def number(value: float, lang: Lang) -> str:
    """A number as the language writes it: ``3.5`` in English, ``3,5`` in Indonesian (a
    whole number in full, never in exponent form)."""
    text = str(value) if isinstance(value, int) else f"{value:g}"
    return text.replace(".", ",") if lang == "id" else text


def value(param: Param, lang: Lang) -> str:
    if isinstance(param, dict):
        return param.get(lang) or param.get("en") or ""
    if isinstance(param, bool):  # a bool is an int to Python: write it as a word
        return str(param).lower()
    if isinstance(param, int | float):
        return number(param, lang)
    return param


def render(name: str, key: str, params: Mapping[str, Param], lang: Lang) -> str:
    """The message ``key`` of catalogue ``name`` in ``lang``, placeholders filled."""
    template = catalogue(name)[key][lang]
    return template.format_map({k: value(v, lang) for k, v in params.items()})


def words(name: str, key: str) -> dict[str, str]:
    """A message without placeholders in every language: a translatable parameter."""
    entry = catalogue(name)[key]
    return {lang: entry[lang] for lang in LANGS}
