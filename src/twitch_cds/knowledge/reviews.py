"""Clinical reviews (``rulesets/reviews/<rule-id>/*.yaml``): who reviewed which content of
a rule, and what they decided.

A review names the rule's content by a hash, so an edit after the review is seen: the
loader lets a rule be ``validation: production`` only while an approving review matches
the rule as it stands. The hash covers the whole rule file as parsed (logic, texts,
citation, version, date) except the slots that record the review itself and its adoption
(``maintenance.validation``, ``specialist``, ``reviewed``, ``institution``): promoting a
reviewed rule does not invalidate its review; changing what it says or does does.

Each review also keeps the rule file's text as it was reviewed, so the catalogue can show
what changed since, and the loader can check the recorded hash against that text.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twitch_cds.errors import RulesetError
from twitch_cds.knowledge.files import read_yaml
from twitch_cds.knowledge.rules import RuleFile

REVIEWS_DIR = "reviews"
REVIEW_SLOTS = ("validation", "specialist", "reviewed", "institution")
"""``maintenance`` fields that record a review and an adoption, not what the rule says."""

Decision = Literal["approved", "changes-requested"]
ReviewState = Literal["reviewed", "changes-requested", "stale", "never-reviewed"]
"""Where a rule stands: approved as it stands; changes asked for as it stands; reviewed,
but edited since; never reviewed."""
REVIEW_STATES: tuple[ReviewState, ...] = ("reviewed", "changes-requested", "stale",
                                          "never-reviewed")


def rule_hash(rule: RuleFile) -> str:
    """``sha256:<hex>`` of the rule's content, without the review slots of ``maintenance``."""
    data = rule.model_dump(mode="json", by_alias=True)
    for slot in REVIEW_SLOTS:
        data["maintenance"].pop(slot, None)
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class Review(BaseModel):
    """One reviewer's decision on one content of one rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    """The rule's content hash (``rule_hash``) when reviewed."""
    reviewer: str = Field(min_length=3)
    """The clinician's name, as they sign."""
    role: str = Field(min_length=3)
    """Their clinical role and, where it matters, institution."""
    date: dt.date
    decision: Decision
    comments: str = ""
    rule_file: str = Field(min_length=10)
    """The rule file's text as reviewed (what the diff since the review is taken against)."""


@dataclass(frozen=True)
class RuleReview:
    """A rule's review state: the reviews of it, newest first, and what they say now."""

    state: ReviewState
    current: Review | None
    """The newest review of the rule as it stands (None: none matches)."""
    latest: Review | None
    """The newest review of any content of the rule."""
    reviews: tuple[Review, ...]


@dataclass(frozen=True)
class Reviews:
    """Every review in ``rulesets/reviews/``, by rule id (newest first)."""

    by_rule: Mapping[str, tuple[Review, ...]] = field(default_factory=dict)

    def of(self, rule: RuleFile) -> RuleReview:
        reviews = self.by_rule.get(rule.id, ())
        content = rule_hash(rule)
        current = next((r for r in reviews if r.hash == content), None)
        latest = reviews[0] if reviews else None
        if current is not None:
            state: ReviewState = ("reviewed" if current.decision == "approved"
                                  else "changes-requested")
        else:
            state = "stale" if reviews else "never-reviewed"
        return RuleReview(state, current, latest, reviews)


def _order(review: Review, path: Path) -> tuple[dt.date, str]:
    return review.date, path.name


def load_reviews(directory: Path) -> Reviews:
    """Read and check every review file under ``directory`` (``rulesets/reviews``); a review
    whose recorded hash is not that of its own ``rule_file`` text is refused."""
    found: dict[str, list[tuple[Review, Path]]] = {}
    if not directory.is_dir():
        return Reviews()
    for path in sorted(directory.rglob("*.yaml")):
        try:
            review = Review.model_validate(read_yaml(path))
        except ValidationError as exc:
            raise RulesetError(f"{path}: not a valid review: {exc}") from exc
        try:
            reviewed = RuleFile.model_validate(yaml.safe_load(review.rule_file))
        except (ValidationError, yaml.YAMLError) as exc:
            raise RulesetError(f"{path}: rule_file is not a valid rule file: {exc}") from exc
        if reviewed.id != review.rule or reviewed.maintenance.version != review.version:
            raise RulesetError(f"{path}: rule_file is {reviewed.id} "
                               f"{reviewed.maintenance.version}, the review names "
                               f"{review.rule} {review.version}")
        if rule_hash(reviewed) != review.hash:
            raise RulesetError(f"{path}: hash {review.hash} is not the hash of the rule_file "
                               "recorded with it: the review was altered after it was made")
        found.setdefault(review.rule, []).append((review, path))
    by_rule: dict[str, tuple[Review, ...]] = {}
    for rule, entries in found.items():
        entries.sort(key=lambda e: _order(*e), reverse=True)
        by_rule[rule] = tuple(review for review, _ in entries)
    return Reviews(by_rule)


def check_production(rule: RuleFile, reviews: Reviews) -> None:
    """A ``production`` rule needs an approving review of its content as it stands, by the
    specialist it names, on the date it gives. Raises ``ValueError`` saying what is missing."""
    if rule.maintenance.validation != "production":
        return
    state = reviews.of(rule)
    if state.state != "reviewed" or state.current is None:
        why = {
            "never-reviewed": "it has never been reviewed",
            "stale": "it was edited after its last review (content hash "
                     f"{rule_hash(rule)[:19]}…, reviewed {state.latest.hash[:19]}…)"
                     if state.latest else "",
            "changes-requested": "its latest review of this content requests changes",
        }[state.state]
        raise ValueError(f"validation: production needs an approving review of the rule as "
                         f"it stands, and {why}: record one with `twitch-cds review "
                         f"{rule.id} ...` or set validation: testing")
    review = state.current
    if review.reviewer not in rule.maintenance.specialist:
        raise ValueError(f"specialist {rule.maintenance.specialist!r} does not name the "
                         f"approving reviewer {review.reviewer!r}")
    if rule.maintenance.reviewed != review.date:
        raise ValueError(f"reviewed {rule.maintenance.reviewed} differs from the approving "
                         f"review's date {review.date}")


def read_rule_files(rules_dir: Path) -> list[RuleFile]:
    """Every rule file, each read and checked on its own (not loaded as a ruleset: a rule
    the loader refuses in production, once edited, is still listed as stale)."""
    rules = []
    for path in sorted(rules_dir.rglob("*.yaml")):
        try:
            rules.append(RuleFile.model_validate(read_yaml(path)))
        except ValidationError as exc:
            raise RulesetError(f"{path}: {exc}") from exc
    return rules


def find_rule_file(rules_dir: Path, rule_id: str) -> Path:
    """The file of the rule with this id (read on its own: a rule the loader refuses can
    still be reviewed)."""
    for path in sorted(rules_dir.rglob("*.yaml")):
        data = read_yaml(path)
        if isinstance(data, dict) and (data.get("maintenance") or {}).get("id") == rule_id:
            return path
    raise RulesetError(f"{rules_dir}: no rule with id {rule_id!r}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "reviewer"


def record_review(rulesets: Path, rule_id: str, *, reviewer: str, role: str,
                  decision: Decision, comments: str = "",
                  date: dt.date | None = None) -> tuple[Path, Review]:
    """Write a review of the rule as it stands to ``rulesets/reviews/<rule>/``."""
    path = find_rule_file(rulesets / "rules", rule_id)
    text = path.read_text(encoding="utf-8")
    try:
        rule = RuleFile.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise RulesetError(f"{path}: {exc}") from exc
    review = Review(rule=rule.id, version=rule.maintenance.version, hash=rule_hash(rule),
                    reviewer=reviewer.strip(), role=role.strip(),
                    date=date or dt.datetime.now(dt.UTC).date(), decision=decision,
                    comments=comments.strip(), rule_file=text)
    folder = rulesets / REVIEWS_DIR / rule.id
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{review.date.isoformat()}-{_slug(review.reviewer)}"
    target = folder / f"{stem}.yaml"
    number = 2
    while target.exists():
        target = folder / f"{stem}-{number}.yaml"
        number += 1
    target.write_text(dump_review(review), encoding="utf-8")
    return target, review


class _Literal(str):
    """A string YAML writes as a block (``|``): the rule file stays readable in the review."""


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def dump_review(review: Review) -> str:
    data: dict[str, Any] = review.model_dump(mode="json")
    data["rule_file"] = _Literal(review.rule_file)
    if "\n" in review.comments:
        data["comments"] = _Literal(review.comments)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def diff_since_review(current_text: str, review: Review, name: str) -> list[str]:
    """The unified diff of the rule file since ``review`` (empty: unchanged)."""
    return list(difflib.unified_diff(
        review.rule_file.splitlines(), current_text.splitlines(),
        fromfile=f"{name} (reviewed {review.date}, {review.version})",
        tofile=f"{name} (now)", lineterm=""))


def states(rules: Iterable[RuleFile], reviews: Reviews) -> dict[str, RuleReview]:
    """Each rule's review state, by id."""
    return {rule.id: reviews.of(rule) for rule in rules}
