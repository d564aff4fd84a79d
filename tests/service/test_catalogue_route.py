"""The service serves the rule catalogue read-only at /catalogue/ when the operator turns it
on (``catalogue_dir``), and not otherwise."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from twitch_cds.catalogue import build_catalogue
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.service.app import create_app
from twitch_cds.service.config import ServiceConfig

from .support import LiveServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(knowledge: Knowledge, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalogue")
    build_catalogue(out, knowledge, ROOT / "tests" / "scenarios")
    return out


def _app(tmp_path: Path, **options: object) -> object:
    return create_app(ServiceConfig(evaluate_in="thread", allow_unauthenticated=True,
                                    database_url=f"sqlite:///{tmp_path / 's.db'}",
                                    **options))  # type: ignore[arg-type]


def test_the_catalogue_is_served_read_only(site: Path, tmp_path: Path) -> None:
    with LiveServer(_app(tmp_path, catalogue_dir=site)) as server:
        root = httpx.get(f"{server.url}/catalogue/")
        assert root.status_code == 200 and "en/index.html" in root.text
        rule = httpx.get(f"{server.url}/catalogue/id/rules/red-flag-weakness.html")
        assert rule.status_code == 200 and rule.headers["content-type"].startswith("text/html")
        assert 'lang="id"' in rule.text and "cds-card" in rule.text
        assert httpx.get(f"{server.url}/catalogue/static/site.js").status_code == 200
        assert httpx.post(f"{server.url}/catalogue/en/index.html").status_code == 405
        assert httpx.get(f"{server.url}/catalogue/en/no-such-page.html").status_code == 404
        outside = httpx.get(f"{server.url}/catalogue/%2e%2e/%2e%2e/pyproject.toml")
        assert outside.status_code == 404


def test_the_catalogue_is_off_unless_turned_on(tmp_path: Path) -> None:
    with LiveServer(_app(tmp_path)) as server:
        assert httpx.get(f"{server.url}/catalogue/").status_code == 404


def test_a_directory_without_a_catalogue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="holds no catalogue"):
        ServiceConfig(evaluate_in="thread", allow_unauthenticated=True, catalogue_dir=tmp_path)
