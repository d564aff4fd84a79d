"""The rule catalogue website: its layout, its links, its words in both languages, and the
site in a real headless browser (Chromium from the distribution, driven by Playwright).

Where no browser is found the browser test is skipped, saying so; with ``CI`` set (.ci/run)
it fails instead. The screenshot of a rule page is kept under ``test-artifacts/``."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, get_args

import pytest

from twitch_cds.catalogue import build_catalogue
from twitch_cds.catalogue.render import LANGS
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.mutate import run as run_mutants
from twitch_cds.knowledge.reviews import Decision, ReviewState
from twitch_cds.knowledge.rules import Validation
from twitch_cds.locale import catalogue

from .test_cards import ENGLISH_MARKERS

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "src" / "twitch_cds" / "catalogue" / "templates"
ARTIFACTS = ROOT / "test-artifacts"
RULE = "red-flag-weakness"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def site(knowledge: Knowledge, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalogue")
    report = run_mutants(knowledge.directory, ROOT / "tests" / "scenarios", rules=[RULE])
    build_catalogue(out, knowledge, ROOT / "tests" / "scenarios", report.as_json())
    return out


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, value))


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


# -- layout and links, without a browser ------------------------------------------------------
def test_the_agreed_layout(site: Path, knowledge: Knowledge) -> None:
    assert 'url=en/index.html' in (site / "index.html").read_text()
    for lang in LANGS:
        base = site / lang
        assert (base / "index.html").is_file() and (base / "graph.html").is_file()
        for compiled in knowledge.rules:
            assert (base / "rules" / f"{compiled.rule.id}.html").is_file()
        for name in knowledge.terminology.titles:
            assert (base / "valuesets" / f"{name}.html").is_file(), name
        for name in knowledge.parameters.parameters:
            assert (base / "parameters" / f"{name}.html").is_file(), name
        assert "<svg" in (base / "graph.html").read_text()


def test_every_link_resolves_and_nothing_is_fetched(site: Path) -> None:
    """Every asset is in the directory: no CDN, no network; every local link exists."""
    for page in _pages(site):
        parser = _Refs()
        parser.feed(page.read_text(encoding="utf-8"))
        for tag, ref in parser.refs:
            if ref.startswith(("http://", "https://", "//")):
                assert tag == "a", f"{page}: {tag} loads {ref} from the network"
                continue
            target = (page.parent / ref.split("#")[0].split("?")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: {ref} does not exist"


def test_a_rule_page_shows_what_a_reviewer_needs(site: Path, knowledge: Knowledge) -> None:
    page = (site / "en" / "rules" / f"{RULE}.html").read_text(encoding="utf-8")
    rule = knowledge.rules_by_id[RULE].rule
    assert rule.library.citation.text in page and rule.library.citation.gloss in page
    assert 'href="../valuesets/muscle-weakness.html"' in page
    assert "26544005" in page  # a code of the value set it reads, with its mark
    assert "V: verified" in page
    assert 'href="../rules/self-care-withheld.html"' in page  # a rule that depends on it
    assert "mutants caught by a scenario" in page
    assert page.count('class="cds-card indicator-critical"') >= 1
    assert "never reviewed" in page and "twitch-cds review red-flag-weakness" in page
    assert "sha256:" in page
    other = (site / "en" / "rules" / "caffeine-disorder.html").read_text(encoding="utf-8")
    assert "Not run for this catalogue." in other  # this catalogue mutated one rule only


def test_knowledge_not_from_the_article_says_so(site: Path, knowledge: Knowledge) -> None:
    """A rule following a guideline, not the article, shows that reference first; the
    article's sentence is not presented as its source."""
    sourced = [c.rule for c in knowledge.rules if c.rule.library.knowledge_source]
    assert sourced
    for rule in sourced:
        page = (site / "en" / "rules" / f"{rule.id}.html").read_text(encoding="utf-8")
        source = rule.library.knowledge_source
        assert source is not None
        if rule.library.citation is not None:  # the article is cited after the reference
            assert page.index('id="knowledge-source"') < page.index('id="article"')
        else:  # general clinical knowledge only: no article section at all
            assert 'id="article"' not in page
        assert "not the article" in page and html_escape(source.reference) in page
    plain = (site / "en" / "rules" / f"{RULE}.html").read_text(encoding="utf-8")
    assert 'id="knowledge-source"' not in plain


def test_every_word_the_templates_use_is_in_both_languages() -> None:
    words = catalogue("catalogue")
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""page\.t\(["']([a-z.\-]+)["']""", template.read_text()))
    prefixes = {key for key in used if key.endswith(".")}  # "state." ~ state, ...
    assert used - prefixes and used - prefixes <= set(words), used - prefixes - set(words)
    families = {"state.": get_args(ReviewState), "validation.": get_args(Validation),
                "knowledge-source.": ("general-clinical-knowledge",),
                "decision.": get_args(Decision), "mark.": ("V", "W", "U"),
                "basis.": ("article", "reference", "local-policy"),
                "urgency.": ("critical", "warning", "info")}
    assert prefixes <= set(families)
    for prefix, values in families.items():
        assert {f"{prefix}{v}" for v in values} <= set(words), prefix


# -- in a real browser --------------------------------------------------------------------------
def _browser() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Any]:
    executable = _browser()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    if executable is None or sync_playwright is None:
        missing = "Chromium (apt-get install chromium)" if executable is None \
            else "Playwright (pip install playwright)"
        message = f"no browser to test the catalogue in: {missing} not found"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the browser test must run)")
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="twitch-cds-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1200, "height": 1400})
            page = context.new_page()
            page.errors = []  # type: ignore[attr-defined]
            page.on("console", lambda m: page.errors.append(f"console: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: page.errors.append(f"failed: {r.url}"))
            yield page
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _open(page: Any, path: Path) -> None:
    page.errors.clear()
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert not page.errors, f"{path}: {page.errors}"


def _visible_rules(page: Any) -> list[str]:
    return list(page.eval_on_selector_all(
        "#rules tbody tr:not(.hidden) td:first-child code", "els => els.map(e => e.textContent)"))


def test_search_and_filters_work(browser_page: Any, site: Path, knowledge: Knowledge) -> None:
    page = browser_page
    _open(page, site / "index.html")  # the root redirects to English
    page.wait_for_url(re.compile(r"/en/index\.html$"))
    total = len(knowledge.rules)
    assert len(_visible_rules(page)) == total
    page.fill("#q", "weakness")
    shown = _visible_rules(page)
    assert RULE in shown and "caffeine-disorder" not in shown and len(shown) < total
    assert page.text_content("#shown") == f"{len(shown)} of {total} rules shown"
    page.fill("#q", "")
    page.select_option("#f-kind", "red-flag")
    red = _visible_rules(page)
    assert RULE in red and all(r.startswith(("red-flag", "self-care")) for r in red)
    page.select_option("#f-kind", "")
    page.select_option("#f-state", "reviewed")
    assert _visible_rules(page) == []  # no clinician has reviewed these rules yet
    page.select_option("#f-state", "never-reviewed")
    assert len(_visible_rules(page)) == total
    page.select_option("#f-state", "")
    page.select_option("#f-valueset", "muscle-weakness")
    reading = _visible_rules(page)
    assert RULE in reading and len(reading) < total
    assert all(" muscle-weakness " in v for v in page.eval_on_selector_all(
        "#rules tbody tr:not(.hidden)", "rows => rows.map(r => r.dataset.valuesets)"))
    page.select_option("#f-valueset", "")
    page.fill("#f-code", "26544005")  # SNOMED CT muscle weakness
    coded = _visible_rules(page)
    assert RULE in coded and "caffeine-disorder" not in coded
    assert not page.errors


def test_a_rule_page_shows_scenario_cards(browser_page: Any, site: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    page = browser_page
    _open(page, site / "en" / "index.html")
    page.click(f'a[href="rules/{RULE}.html"]')
    page.wait_for_url(re.compile(rf"/en/rules/{RULE}\.html$"))
    cards = page.locator("#scenarios .cds-card")
    assert cards.count() >= 2
    first = page.locator("#scenarios .cds-card.indicator-critical").first
    assert "red flags" in first.locator(".summary").text_content()
    assert first.locator(".detail strong").count() >= 1  # the detail's Markdown, rendered
    assert page.locator("#scenarios .passes").count() >= 2
    assert page.locator("#scenarios .fails").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"catalogue-{RULE}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    with capsys.disabled():  # shown in every run, not only with -s
        print(f"\nscreenshot of the rule page: {shot}")
    assert not page.errors


SAMPLE = ("index.html", "graph.html", f"rules/{RULE}.html", "rules/self-care-withheld.html",
          "rules/chronic-twitching.html", "rules/side-effect-diuretic.html",
          "rules/self-care-fluids.html", "valuesets/muscle-weakness.html",
          "valuesets/diuretic.html", "parameters/chronic_twitching_days.html")
"""Pages opened in the browser in each language (every page is checked without one)."""


def test_pages_load_and_their_links_resolve(browser_page: Any, site: Path) -> None:
    page = browser_page
    for lang in LANGS:
        for name in SAMPLE:
            path = site / lang / name
            _open(page, path)
            hrefs = page.eval_on_selector_all(
                "a[href]",
                "els => els.map(e => new URL(e.getAttribute('href'), document.baseURI).href)")
            assert hrefs
            for href in hrefs:
                if href.startswith("file://"):
                    target = Path(href.removeprefix("file://").split("#")[0])
                    assert target.is_file(), f"{path.relative_to(site)}: {href}"


_OUR_TEXT = """() => {
  const body = document.body.cloneNode(true);
  // an evidence line of a card quotes the record's own words (its display, a drug's name)
  body.querySelectorAll("li").forEach(li => {
    if (li.firstChild && li.firstChild.nodeName === "CODE") { li.remove(); }
  });
  // the references under "Not from the article" are the sources' own titles
  body.querySelectorAll("strong").forEach(s => {
    const labels = ["Not from the article: general clinical knowledge",
                    "Bukan dari artikel: pengetahuan klinis umum"];
    if (!labels.includes(s.textContent.trim())) { return; }
    const list = (s.closest("p") || s).nextElementSibling;
    if (list && list.nodeName === "UL") { list.remove(); }
  });
  // identifiers, code, quoted words and the rule graph's image are not prose of ours
  body.querySelectorAll("code, pre, svg, .verbatim, [lang=en], script").forEach(e => e.remove());
  return body.textContent;
}"""

SKIPPED = {"code", "pre", "svg", "script", "style", "title"}
KNOWLEDGE_SOURCE_LABELS = ["Not from the article: general clinical knowledge, from",
                           "Bukan dari artikel: pengetahuan klinis umum, dari"]
"""The heading of a card's references that are not from the article (cards.yaml)."""


class _OurText(HTMLParser):
    """The same text as ``_OUR_TEXT``, without a browser: every page, quickly."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.parts: list[str] = []
        self.li_open = False
        self.references_next = False
        """The list after "Not from the article" holds the sources' own titles."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        references, self.references_next = tag == "ul" and self.references_next, False
        skip = (references or tag in SKIPPED or "verbatim" in (attributes.get("class") or "")
                or (attributes.get("lang") == "en" and tag != "html")
                or (tag == "code" and self.li_open))
        if self.li_open and tag == "code":  # the li starts with code: an evidence line
            self.stack[-1] = True
        self.li_open = tag == "li"
        if tag in ("meta", "link", "br", "input"):
            return
        self.stack.append(skip or bool(self.stack and self.stack[-1]))

    def handle_endtag(self, tag: str) -> None:
        self.li_open = False
        if tag not in ("meta", "link", "br", "input") and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.li_open = False
        if data.strip() in KNOWLEDGE_SOURCE_LABELS:
            self.references_next = True
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)


def _english(text: str, where: str) -> None:
    found = ENGLISH_MARKERS.search(text)
    assert not found, (f"{where}: {found.group(0)!r} in "
                       f"...{text[max(0, found.start() - 80):found.end() + 80]}...")


def test_no_indonesian_page_carries_english_of_ours(site: Path) -> None:
    pages = _pages(site / "id")
    for path in pages:
        parser = _OurText()
        parser.feed(path.read_text(encoding="utf-8"))
        _english(" ".join(parser.parts), str(path.relative_to(site)))
    assert len(pages) > 100
    english = _OurText()  # the check can fail: English pages are full of these words
    english.feed((site / "en" / "rules" / f"{RULE}.html").read_text(encoding="utf-8"))
    assert ENGLISH_MARKERS.search(" ".join(english.parts))


def test_indonesian_pages_carry_no_english_of_ours_in_the_browser(browser_page: Any,
                                                                  site: Path) -> None:
    page = browser_page
    for name in SAMPLE:
        _open(page, site / "id" / name)
        assert page.evaluate("document.documentElement.lang") == "id"
        _english(page.evaluate(_OUR_TEXT), f"id/{name}")
    _open(page, site / "en" / "rules" / f"{RULE}.html")
    assert ENGLISH_MARKERS.search(page.evaluate(_OUR_TEXT))


def test_nothing_below_the_front_doors_imports_them() -> None:
    """The catalogue and the export read knowledge/; only the CLI (and each other) call them."""
    source = ROOT / "src" / "twitch_cds"
    allowed = {source / "cli.py", *(source / "catalogue").rglob("*.py"),
               *(source / "export").rglob("*.py")}
    for path in source.rglob("*.py"):
        if path not in allowed:
            text = path.read_text(encoding="utf-8")
            assert "twitch_cds.catalogue" not in text and "twitch_cds.export" not in text, path


def test_the_catalogue_shows_reviewed_stale_and_the_diff(knowledge: Knowledge,
                                                         tmp_path: Path) -> None:
    """A rule approved and promoted shows as reviewed with its review; a rule edited after
    its review shows as stale, with the diff of its file since the review."""
    import datetime as dt

    import yaml

    from twitch_cds import load_knowledge
    from twitch_cds.knowledge.reviews import record_review

    rulesets = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, rulesets)
    for rule_id in (RULE, "caffeine-disorder"):
        record_review(rulesets, rule_id, reviewer="Dr A. Neurologist", role="Neurologist",
                      decision="approved", comments="Checked against scenario 010.",
                      date=dt.date(2026, 12, 7))

    def edit(rule_id: str, change: Any) -> None:
        path = next((rulesets / "rules").rglob(f"*{rule_id}.yaml"))
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))

    edit(RULE, lambda d: d["maintenance"].update(
        validation="production", specialist="Dr A. Neurologist, Neurologist",
        reviewed="2026-12-07"))
    edit("caffeine-disorder", lambda d: d["knowledge"]["message"].update(
        en="Caffeine-related disorder on record, edited"))
    out = tmp_path / "site"
    build_catalogue(out, load_knowledge(rulesets), ROOT / "tests" / "scenarios")
    index = (out / "en" / "index.html").read_text(encoding="utf-8")
    for rule_id, state in ((RULE, "reviewed"), ("caffeine-disorder", "stale"),
                           ("caffeine-large-intake", "never-reviewed")):
        row = index[index.index(f'href="rules/{rule_id}.html"') - 900:
                    index.index(f'href="rules/{rule_id}.html"')]
        assert f'data-state="{state}"' in row.rsplit("<tr", 1)[-1], rule_id
    reviewed = (out / "en" / "rules" / f"{RULE}.html").read_text(encoding="utf-8")
    assert "Approved by Dr A. Neurologist (Neurologist) on 2026-12-07" in reviewed
    assert "Checked against scenario 010." in reviewed and "Unchanged since" in reviewed
    stale = (out / "en" / "rules" / "caffeine-disorder.html").read_text(encoding="utf-8")
    assert "stale: edited since its review" in stale
    assert '<span class="add">+' in stale and "edited" in stale
    indonesian = (out / "id" / "rules" / "caffeine-disorder.html").read_text(encoding="utf-8")
    assert "usang: diubah setelah ditinjau" in indonesian
