"""Service configuration: file, environment and arguments in their order; --check-config."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from twitch_cds.cli import main
from twitch_cds.service.config import ConfigFileError, ServiceConfig, load_config

from .support import REPO

EXAMPLE = REPO / "examples" / "service.yaml"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TWITCH_CDS_"):
            monkeypatch.delenv(name)


def _file(tmp_path: Path, text: str, name: str = "service.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_environment_wins_over_the_file_and_arguments_over_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path, "allow_unauthenticated: true\ntime_budget_ms: 250\n"
                           "fetch_timeout_ms: 111\nlang: id\n")
    monkeypatch.setenv("TWITCH_CDS_TIME_BUDGET_MS", "180")
    monkeypatch.setenv("TWITCH_CDS_LANG", "en")
    config = load_config(path, lang="id")
    assert config.fetch_timeout_ms == 111  # the file, over the default (250)
    assert config.time_budget_ms == 180  # the environment, over the file
    assert config.lang == "id"  # the argument, over the environment
    assert config.max_prefetch_url_length == 2000  # the default


def test_the_config_file_comes_from_the_environment_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path, '{"allow_unauthenticated": true, "max_prefetch_url_length": 1500}',
                 "service.json")
    monkeypatch.setenv("TWITCH_CDS_CONFIG", str(path))
    assert load_config().max_prefetch_url_length == 1500


def test_a_file_that_is_not_a_mapping_or_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="must be a mapping"):
        load_config(_file(tmp_path, "- time_budget_ms: 3\n"))
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config(_file(tmp_path, "cors_origins: [\n"))
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_config(tmp_path / "nothere.yaml")


def test_the_example_file_names_every_setting_and_is_valid() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    named = set(re.findall(r"^#?\s*(\w+):", text, flags=re.MULTILINE))
    assert set(ServiceConfig.model_fields) <= named
    defaults = ServiceConfig(allow_unauthenticated=True)
    settings = yaml.safe_load(text)
    for name, value in settings.items():  # the example states the defaults
        if name not in ("clients", "public_base_url", "allow_unauthenticated"):
            stated = ServiceConfig(allow_unauthenticated=True, **{name: value})
            assert getattr(defaults, name) == getattr(stated, name), name  # "P30D" is 30 days
    config = load_config(EXAMPLE)
    assert config.clients[0].issuer == "https://ehr.example.org"


def test_check_config_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _file(tmp_path, "clients:\n  - issuer: https://ehr.example.org\n"
                           "    jwks_url: https://ehr.example.org/jwks\n"
                           "public_base_url: https://cds.example.org\n"
                           "database_url: postgresql://cds:s3cret@db/cds\n")
    assert main(["serve", "--check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("twitch-cds: configuration OK") and "\n" not in out
    assert "postgresql://cds:***@db/cds" in out and "s3cret" not in out
    assert "authentication JWT, 1 trusted client(s), aud https://cds.example.org" in out


@pytest.mark.parametrize(("text", "environment", "fault"), [
    ("allow_unauthenticated: true\ntime_budget_ms: 0\n", {},
     "time_budget_ms: Input should be greater than 0"),
    ("allow_unauthenticated: true\n", {"TWITCH_CDS_FETCH_TIMEOUT_MS": "soon"},
     "fetch_timeout_ms: Input should be a valid integer"),
    ("allow_unauthenticated: true\ntime_budget: 300\n", {},
     "time_budget: Extra inputs are not permitted"),
    ("clients: []\n", {}, "configuration: public_base_url is required"),
    ("allow_unauthenticated: true\nclients:\n  - issuer: x\n    jwks_file: /nonexistent/j\n",
     {}, "clients[0].jwks_file: /nonexistent/j does not exist"),
    ("allow_unauthenticated: true\nmax_prefetch_url_length: 100\n", {},
     "max_prefetch_url_length: Input should be greater than or equal to 256"),
    ("- 1\n", {}, "the settings must be a mapping"),
])
def test_check_config_names_the_setting_at_fault(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        text: str, environment: dict[str, str], fault: str) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--check-config", "--config", str(_file(tmp_path, text))]) == 1
    captured = capsys.readouterr()
    assert fault in captured.err and captured.out == ""


def test_check_config_from_the_command_line(tmp_path: Path) -> None:
    bad = _file(tmp_path, "allow_unauthenticated: true\ntime_budget_ms: -5\n")
    run = subprocess.run([sys.executable, "-m", "twitch_cds.cli", "serve", "--check-config",
                          "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == "twitch-cds: time_budget_ms: Input should be greater than 0"
    run = subprocess.run([sys.executable, "-m", "twitch_cds.cli", "serve", "--check-config",
                          "--config", str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("twitch-cds: configuration OK")
