"""``twitch-cds serve``: the command starts the service; configuration from file and env."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from twitch_cds.service.config import load_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_without_auth_warns_loudly_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "TWITCH_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "twitch_cds.cli", "serve", "--port", str(port),
         "--insecure-no-auth"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/cds-services")
                break
            except httpx.TransportError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        assert response.status_code == 200 and response.json()["services"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "AUTHENTICATION IS OFF" in stderr


def test_config_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    path = tmp_path / "service.yaml"
    path.write_text(f"clients:\n  - issuer: https://ehr.example.org\n    jwks_file: {jwks}\n"
                    "time_budget_ms: 250\ncors_origins: [https://a.example]\n"
                    "public_base_url: https://cds.example.org\n")
    monkeypatch.setenv("TWITCH_CDS_TIME_BUDGET_MS", "180")
    config = load_config(path)
    assert config.time_budget_ms == 180
    assert config.cors_origins == ["https://a.example"]
    assert config.clients[0].jwks_file == jwks
    path.write_text("clients:\n  - issuer: https://ehr.example.org\n")
    with pytest.raises(ValueError, match="exactly one of jwks_url or jwks_file"):
        load_config(path)


def test_authentication_needs_public_base_url(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("clients:\n  - issuer: https://ehr.example.org\n    jwks_url: "
                    "https://ehr.example.org/jwks\n")
    with pytest.raises(ValueError, match="public_base_url is required"):
        load_config(path)
    path.write_text("allow_unauthenticated: true\n")
    assert load_config(path).public_base_url is None


def test_serve_refuses_to_start_without_public_base_url(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("clients:\n  - issuer: https://ehr.example.org\n    jwks_url: "
                    "https://ehr.example.org/jwks\n")
    done = subprocess.run([sys.executable, "-m", "twitch_cds.cli", "serve", "--port",
                           str(_free_port()), "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "public_base_url is required" in done.stderr
