"""The ``twitch-cds`` command: evaluate a file of FHIR data, or list the rule catalogue."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twitch_cds import __version__
from twitch_cds.card_text import reference_text
from twitch_cds.errors import InputError, TwitchCdsError
from twitch_cds.evaluate import evaluate
from twitch_cds.issues import InputIssue
from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.locale import Lang, Param, render
from twitch_cds.result import EvaluationResult


def _say(lang: Lang, key: str, **params: Param) -> str:
    """The command line's own words (``locale/cli.yaml``) in the chosen language."""
    return render("cli", key, params, lang)


class _Version(argparse.Action):
    """``--version``: the package and the ruleset it carries (loaded only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        knowledge = default_knowledge()
        print(f"twitch-cds {__version__} (ruleset {knowledge.version}, "
              f"{len(knowledge.rules)} rules)")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twitch-cds",
        description="Clinical decision support for leg-muscle twitching after walking.",
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the package and ruleset versions and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("evaluate", help="evaluate one patient's FHIR data, print cards")
    run.add_argument("file", help="FHIR JSON (Bundle, resource, list, CDS Hooks request) or -")
    run.add_argument("--lang", choices=("en", "id"), default="en",
                     help="language of the cards and of the command's own words: en "
                          "(English, the default) or id (Indonesian)")
    run.add_argument("--now", help="evaluate as of this ISO 8601 date-time (default: now)")
    run.add_argument("--format", choices=("json", "text"), default="text",
                     help="text (the default): the cards for a reader; json: exactly the "
                          "CDS Hooks response on stdout, input issues on stderr")
    run.add_argument("--catalogue", metavar="URL",
                     help="base URL of the rule catalogue the cards link to")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="override a parameter from rulesets/parameters.yaml (repeatable)")
    rules = commands.add_parser("rules", help="print the rule catalogue")
    rules.add_argument("--format", choices=("json", "text"), default="text",
                       help="text (the default) for a reader, or json")
    rules.add_argument("--lang", choices=("en", "id"), default="en",
                       help="language of the text format's own words (JSON stays as is)")
    serve = commands.add_parser(
        "serve", help="run the CDS Hooks service (needs the [service] extra)",
        description="Run the CDS Hooks service. It needs a configuration naming the EHRs "
                    "allowed to call and public_base_url (--config, a copy of "
                    "examples/service.yaml), or --insecure-no-auth for a local trial.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; "
                            "0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--config", help="YAML or JSON service configuration file "
                                        "(every setting: examples/service.yaml)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (one engine each; use about one per core)")
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="accept calls without a JWT (local development only)")
    serve.add_argument("--check-config", action="store_true",
                       help="validate the configuration (file and TWITCH_CDS_* variables), "
                            "print OK or each setting at fault, and exit (1 when invalid)")
    sweep = commands.add_parser("screen", help="screen a FHIR Bulk Data export, write a worklist")
    sweep.add_argument("export", nargs="+",
                       help="manifest.json, a directory of .ndjson(.gz) files, or files")
    sweep.add_argument("--out", required=True, help="directory for the worklist and summary")
    sweep.add_argument("--workers", type=int, default=1,
                       help="worker processes (one engine each; about one per core)")
    sweep.add_argument("--format", choices=("csv", "ndjson"), default="csv",
                       help="worklist format")
    sweep.add_argument("--now", help="evaluate as of this ISO 8601 date-time (default: now)")
    sweep.add_argument("--lang", choices=("en", "id"), default="en",
                       help="language of the worklist's texts: en (default) or id")
    sweep.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="override a parameter from rulesets/parameters.yaml (repeatable)")
    sweep.add_argument("--dask", metavar="ADDRESS",
                       help="run on Dask: a scheduler address, or 'local' for a local cluster "
                            "of --workers processes (needs the [screen] extra)")
    sweep.add_argument("--restart", action="store_true",
                       help="discard an unfinished run in --out instead of resuming it "
                            "(a run of other inputs or settings is never resumed)")
    _workbench_commands(commands)
    return parser


def _workbench_commands(commands: Any) -> None:
    """The clinical review workbench: reviews, the catalogue website, the FHIR package."""
    review = commands.add_parser(
        "review", help="record a clinical review of a rule as it stands, or list review states")
    review.add_argument("rule", nargs="?", help="the rule id (not with --status)")
    review.add_argument("--reviewer", help="the reviewer's name, as they sign")
    review.add_argument("--role", help="the reviewer's clinical role (and institution)")
    review.add_argument("--decision", choices=("approved", "changes-requested"))
    review.add_argument("--comment", default="", help="what to change, or notes")
    review.add_argument("--date", help="the review date, YYYY-MM-DD (default: today, UTC)")
    review.add_argument("--status", action="store_true",
                        help="print each rule's review state and exit")
    review.add_argument("--rulesets", type=Path, default=None,
                        help="the rulesets/ directory (default: the one the package loads)")
    site = commands.add_parser(
        "catalogue", help="write the rule catalogue as a static website (English, Indonesian)")
    site.add_argument("--out", required=True, type=Path, help="directory for the website")
    site.add_argument("--scenarios", type=Path, default=None,
                      help="scenario directory (default: tests/scenarios beside rulesets/)")
    site.add_argument("--mutation-report", type=Path, default=None,
                      help="a JSON report of `python -m twitch_cds.knowledge.mutate --json` "
                           "(default: run the mutation tests now)")
    site.add_argument("--no-mutation", action="store_true",
                      help="leave the mutation results out (pages say they were not run)")
    site.add_argument("--rulesets", type=Path, default=None,
                      help="the rulesets/ directory (default: the one the package loads)")
    export = commands.add_parser("export", help="export the knowledge in a standard form")
    kinds = export.add_subparsers(dest="export_kind", required=True)
    package = kinds.add_parser("fhir-package",
                               help="an NPM-style FHIR package (CPG-on-FHIR resources): "
                                    "fhir-package OUT [--fhir-version R4|R5]")
    package.add_argument("out", type=Path, help="directory to write the package into")
    package.add_argument("--fhir-version", choices=("R4", "R5"), default="R4",
                         help="R4 (4.0.1) or R5 (5.0.0) resources")


def _workbench(args: argparse.Namespace) -> int:
    """Run ``review``, ``catalogue`` or ``export`` (front doors beside this one)."""
    if args.command == "review":
        return _review(args)
    if args.command == "catalogue":
        from twitch_cds.catalogue import catalogue_command

        return catalogue_command(args)
    from twitch_cds.export import export_command

    return export_command(args)


def _screen(args: argparse.Namespace) -> int:
    import logging

    from twitch_cds.screening import screen
    from twitch_cds.screening.dask_adapter import DaskError
    from twitch_cds.screening.partition import WorkError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    export = args.export[0] if len(args.export) == 1 else args.export
    try:
        summary = screen(export, args.out, workers=args.workers, fmt=args.format,
                         now=args.now, lang=args.lang,
                         parameters=_parameters(args.param, args.lang),
                         dask=args.dask, restart=args.restart)
    except (DaskError, WorkError) as exc:
        print(f"twitch-cds: {_say(args.lang, 'error')}: {exc}", file=sys.stderr)
        return 2
    print(_say(args.lang, "screen-summary", patients=summary.patients_read,
               resources=summary.resources_read, seconds=round(summary.seconds, 1),
               rate=round(summary.patients_per_second), flagged=summary.patients_flagged,
               rejected=summary.lines_rejected, failed=summary.patients_failed,
               summary=str(summary.outputs["summary.json"])))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("twitch-cds: the service needs the [service] extra: from the checkout, "
              "CPPFLAGS=\"$CPPFLAGS -DPyEval_CallObject=PyObject_CallObject\" "
              "pip install --no-cache-dir '.[service]'", file=sys.stderr)
        return 2
    if args.config:
        os.environ["TWITCH_CDS_CONFIG"] = str(Path(args.config).resolve())
    if args.insecure_no_auth:
        os.environ["TWITCH_CDS_ALLOW_UNAUTHENTICATED"] = "true"
    if args.check_config:
        from twitch_cds.service.check import check_config

        verdict = check_config(os.environ.get("TWITCH_CDS_CONFIG"))
        for line in verdict.lines:
            print(f"twitch-cds: {line}", file=sys.stdout if verdict.ok else sys.stderr)
        return 0 if verdict.ok else 1
    from twitch_cds.service.check import check_config
    from twitch_cds.service.config import load_config
    from twitch_cds.service.logs import log_config
    from twitch_cds.service.multiprocess import multiprocess_metrics
    from twitch_cds.service.protocol import HeaderTimeoutProtocol
    from twitch_cds.service.store import Store

    verdict = check_config(os.environ.get("TWITCH_CDS_CONFIG"))
    if not verdict.ok:  # fail here, with the reason, rather than in every worker
        for line in verdict.lines:
            print(f"twitch-cds: {line}", file=sys.stderr)
        if not args.config and not os.environ.get("TWITCH_CDS_CONFIG"):
            print("twitch-cds: no configuration file: give --config FILE (copy "
                  "examples/service.yaml: your EHR's keys and public_base_url), or try it "
                  "locally with --insecure-no-auth", file=sys.stderr)
        return 2
    config = load_config()
    Store(config.database)  # the tables exist before the workers start (each logs where)
    # uvicorn's access log is off (it writes query strings, where a token may be): the
    # service writes its own access line, path only, as JSON like every other line.
    # several workers: metrics summed across them (prometheus-client multiprocess mode)
    with multiprocess_metrics(config.metrics and args.workers > 1):
        uvicorn.run("twitch_cds.service.app:app", host=args.host, port=args.port,
                    workers=args.workers, log_config=log_config("info"), access_log=False,
                    http=HeaderTimeoutProtocol, timeout_keep_alive=5, server_header=False,
                    limit_concurrency=config.max_connections)
    return 0


def _parameters(pairs: Sequence[str], lang: Lang = "en") -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(_say(lang, "param-form", pair=repr(pair)))
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise ValueError(_say(lang, "param-number", pair=repr(pair),
                                  value=repr(value))) from exc
    return out


def _issue(issue: InputIssue, lang: Lang) -> str:
    """One issue on one line: severity and action in words, the stable code as is."""
    return _say(lang, "issue-line", severity=_say(lang, f"severity.{issue.severity}"),
                resource=issue.resource, path=issue.path, problem=issue.problem,
                action=_say(lang, f"action.{issue.action}"), code=issue.code)


def _text(result: EvaluationResult, lang: Lang = "en") -> str:
    lines = []
    for card in result.cards:
        lines.append(f"[{_say(lang, f'indicator.{card.indicator}')}] {card.summary}  "
                     f"({card.kind})")
        lines += [f"    {line}" for line in (card.detail or "").splitlines()]
        for suggestion in card.suggestions or ():
            lines.append(f"    -> {_say(lang, 'suggestion', label=suggestion.label)}")
        lines.append("")
    if not result.cards:
        # about the data only: no card says nothing about the patient
        unused = sum(1 for i in result.issues if i.action != "used-leniently")
        lines.append(_say(lang, "no-cards", facts=result.trace.facts) + " " + (
            _say(lang, "no-cards.unused", unused=unused) if unused
            else _say(lang, "no-cards.all-used")))
    if result.unclassified:
        lines.append(_say(lang, "unclassified", count=result.unclassified))
    if result.issues:
        lines.append(_say(lang, "issues-heading", count=len(result.issues)))
        lines += [f"  - {_issue(issue, lang)}" for issue in result.issues]
    return "\n".join(lines)


def _catalogue(fmt: str, lang: Lang = "en") -> str:
    entries: list[dict[str, Any]] = []
    for compiled in default_knowledge().rules:
        rule = compiled.rule
        entries.append({
            "id": rule.id,
            "version": rule.maintenance.version,
            "date": rule.maintenance.date.isoformat(),
            "validation": rule.maintenance.validation,
            "specialist": rule.maintenance.specialist,
            "reviewed": (rule.maintenance.reviewed.isoformat()
                         if rule.maintenance.reviewed else None),
            "evoke": list(rule.knowledge.evoke),
            "keywords": list(rule.library.keywords),
            "title": rule.library.title,
            "concludes": (("card", rule.knowledge.conclude.card) if rule.knowledge.conclude
                          else ("derived", rule.knowledge.derive.name)
                          if rule.knowledge.derive else None),
            **_rule_source(rule.library),
            "file": str(compiled.path.relative_to(default_knowledge().directory)),
        })
    if fmt == "json":  # machine-readable: the same in every language
        for e in entries:
            e["concludes"] = " ".join(e["concludes"]) if e["concludes"] else ""
        return json.dumps(entries, indent=2, ensure_ascii=False)
    # in Indonesian the article's own sentence is enough: its English gloss is left out
    return "\n\n".join(
        f"{e['id']} {e['version']}  {e['title']}\n  -> "
        + (_say(lang, f"rule.{e['concludes'][0]}", name=e["concludes"][1])
           if e["concludes"] else "")
        + "\n  " + _review_state(e, lang)
        + (f"\n  [{e['section']}] {e['sentence']}" if e["sentence"] else "")
        + (f"\n  ({e['gloss']})" if lang == "en" and e["gloss"] else "")
        + (f"\n  {_say(lang, 'rule.knowledge-source', reference=e['knowledge_source'])}"
           if e["knowledge_source"] else "") for e in entries
    )


def _rule_source(library: Any) -> dict[str, Any]:
    """A rule's source for the catalogue: the article sentence it encodes, and the
    reference of any general clinical knowledge it adds (with the date it was checked)."""
    citation, source = library.citation, library.knowledge_source
    return {
        "section": citation.section if citation else None,
        "sentence": citation.text if citation else None,
        "gloss": citation.gloss if citation else None,
        "knowledge_source": reference_text(source.reference, source.date) if source
        else None,
    }


def _review_state(entry: dict[str, Any], lang: Lang) -> str:
    """Where a rule stands in clinical review, and the hooks it is meant for."""
    if entry["specialist"]:
        return _say(lang, "rule.reviewed", validation=entry["validation"],
                    specialist=entry["specialist"], date=entry["reviewed"] or "?",
                    hooks=", ".join(entry["evoke"]))
    return _say(lang, "rule.not-reviewed", validation=entry["validation"],
                hooks=", ".join(entry["evoke"]))


def _review(args: argparse.Namespace) -> int:
    """``twitch-cds review``: record a review of a rule as it stands, or list the states."""
    import datetime as dt

    from twitch_cds.knowledge.files import rulesets_dir
    from twitch_cds.knowledge.reviews import load_reviews, read_rule_files, record_review

    rulesets = (args.rulesets or rulesets_dir()).resolve()
    if args.status:  # read file by file: a rule the loader refuses (stale) is listed too
        reviews = load_reviews(rulesets / "reviews")
        lines = []
        for rule in read_rule_files(rulesets / "rules"):
            state = reviews.of(rule)
            last = state.latest
            lines.append(f"{rule.id} {rule.maintenance.version}  {state.state}  "
                         f"{rule.maintenance.validation}"
                         + (f"  (last review {last.date} by {last.reviewer}: {last.decision})"
                            if last else ""))
        return _print("\n".join(lines))
    missing = [name for name in ("rule", "reviewer", "role", "decision")
               if not getattr(args, name)]
    if missing:
        raise ValueError("twitch-cds review RULE needs " + ", ".join(
            f"--{m}" if m != "rule" else "the rule id" for m in missing))
    date = dt.date.fromisoformat(args.date) if args.date else None
    path, review = record_review(rulesets, args.rule, reviewer=args.reviewer, role=args.role,
                                 decision=args.decision, comments=args.comment, date=date)
    print(f"recorded: {review.decision} review of {review.rule} {review.version} "
          f"({review.hash[:19]}...) by {review.reviewer} in {path}")
    if review.decision == "approved":
        print(f"to put it in production, set in its maintenance: validation: production, "
              f"specialist: \"{review.reviewer}, {review.role}\", reviewed: {review.date}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "rules":
            return _print(_catalogue(args.format, args.lang))
        if args.command == "serve":
            return _serve(args)
        if args.command == "screen":
            return _screen(args)
        if args.command in ("review", "catalogue", "export"):
            return _workbench(args)
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        result = evaluate(data, now=args.now, lang=args.lang,
                          parameters=_parameters(args.param, args.lang),
                          catalogue=args.catalogue)
    except (TwitchCdsError, ValueError, OSError) as exc:
        lang: Lang = getattr(args, "lang", "en")
        text = exc.in_lang(lang) if isinstance(exc, InputError) else str(exc)
        print(f"twitch-cds: {_say(lang, 'error')}: {text}", file=sys.stderr)
        return 2
    try:
        if args.format == "json":
            print(json.dumps(result.to_cds_hooks(), indent=2, ensure_ascii=False))
            for issue in result.issues:  # stdout stays a pure CDS Hooks response
                print(f"twitch-cds: {_say(args.lang, 'input-issue')}: "
                      f"{_issue(issue, args.lang)}", file=sys.stderr)
            if result.unclassified:
                print(f"twitch-cds: {_say(args.lang, 'unclassified', count=result.unclassified)}",
                      file=sys.stderr)
        else:
            return _print(_text(result, args.lang))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (``| head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _print(text: str) -> int:
    """Print to stdout; a reader that leaves early (``| head``) is not an error of ours."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
