"""The rule catalogue: a static website (English and Indonesian) a clinical reviewer reads,
written by ``twitch-cds catalogue --out DIR``. A front door beside ``cli`` and ``service``:
it reads ``knowledge/`` and renders cards with the card builder and the scenario checker;
nothing below it imports it."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twitch_cds.knowledge.bundle import Knowledge, default_knowledge, load_knowledge


@dataclass(frozen=True)
class CatalogueSummary:
    out: Path
    pages: int
    rules: int
    scenarios: int
    mutation: bool


def default_scenarios(knowledge: Knowledge) -> Path:
    """``tests/scenarios`` beside ``rulesets/`` (the repository), else in the working dir."""
    for base in (knowledge.directory.parent, Path.cwd()):
        if (base / "tests" / "scenarios").is_dir():
            return base / "tests" / "scenarios"
    return Path.cwd() / "tests" / "scenarios"


def build_catalogue(out: Path, knowledge: Knowledge | None = None,
                    scenarios: Path | None = None,
                    mutation: dict[str, Any] | None = None) -> CatalogueSummary:
    """Write the whole site under ``out``. ``mutation`` is a mutation report (JSON shape of
    ``python -m twitch_cds.knowledge.mutate --json``); None leaves the results out."""
    from twitch_cds.catalogue.model import (
        add_mutation,
        add_scenarios,
        read_valuesets,
        rule_views,
    )
    from twitch_cds.catalogue.render import LANGS, Site, render_site

    knowledge = knowledge or default_knowledge()
    scenario_dir = scenarios or default_scenarios(knowledge)
    if not any(scenario_dir.glob("*.yaml")):
        raise ValueError(f"no scenarios (*.yaml) in {scenario_dir}: run from the repository "
                         "root or pass --scenarios DIR")
    views = rule_views(knowledge)
    if mutation is not None:
        add_mutation(views, mutation)
    count = add_scenarios(views, knowledge, scenario_dir, scenario_dir.parent.parent, LANGS)
    site = Site(knowledge, views, read_valuesets(knowledge.directory / "terminology"),
                mutation is not None, count)
    pages = render_site(site, out)
    return CatalogueSummary(out, len(pages), len(views), count, mutation is not None)


def catalogue_command(args: argparse.Namespace) -> int:
    """``twitch-cds catalogue --out DIR``."""
    knowledge = default_knowledge() if args.rulesets is None else load_knowledge(args.rulesets)
    mutation: dict[str, Any] | None = None
    if args.mutation_report is not None:
        mutation = json.loads(args.mutation_report.read_text(encoding="utf-8"))
    elif not args.no_mutation:
        from twitch_cds.knowledge.mutate import run

        scenarios = args.scenarios or default_scenarios(knowledge)
        mutation = run(knowledge.directory, scenarios, jobs=2).as_json()
    summary = build_catalogue(args.out, knowledge, args.scenarios, mutation)
    print(f"catalogue: {summary.pages} pages ({summary.rules} rules, {summary.scenarios} "
          f"scenarios in English and Indonesian"
          + ("" if summary.mutation else ", no mutation results")
          + f") in {summary.out}; open {summary.out / 'index.html'}")
    return 0
