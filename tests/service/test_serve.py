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


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "twitch_cds.cli", "serve", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_up(process: subprocess.Popen[str], base: str) -> None:
    deadline = time.time() + 60
    while True:
        try:
            httpx.get(f"{base}/healthz")
            return
        except httpx.TransportError:
            if time.time() > deadline or process.poll() is not None:
                raise
            time.sleep(0.2)


def _raw_http(port: int, data: bytes, wait_s: float) -> tuple[bytes, float]:
    """Send ``data`` and read until the server closes or ``wait_s`` passes."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(data)
        conn.settimeout(wait_s)
        started = time.perf_counter()
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            pass
        return received, time.perf_counter() - started


def test_a_real_server_logs_json_lines_without_secrets(tmp_path: Path) -> None:
    from .support import ISSUER, SigningKey, jwks

    key = SigningKey.es384()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(key)))
    (tmp_path / "service.yaml").write_text(
        f"clients:\n  - issuer: {ISSUER}\n    jwks_file: {tmp_path / 'jwks.json'}\n"
        f"public_base_url: {base}\ndatabase_url: sqlite:///{tmp_path / 's.db'}\n"
        "header_read_timeout_s: 1\nbody_read_timeout_ms: 500\ntime_budget_ms: 2000\n")
    process = _start(["--port", str(port), "--config", str(tmp_path / "service.yaml"),
                      "--workers", "2"], dict(os.environ))
    secrets = ["SECRET-IN-THE-QUERY"]
    try:
        _wait_until_up(process, base)
        url = f"{base}/cds-services"
        token = key.token(url)
        secrets.append(token)
        answer = httpx.get(f"{url}?access_token={secrets[0]}",
                           headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        expired = key.token(url, exp=1_700_000_000, iat=1_699_999_000)
        secrets.append(expired)
        assert httpx.get(url, headers={"Authorization": f"Bearer {expired}"}
                         ).status_code == 401
        hook = f"{url}/twitch-cds-patient-view"
        forged = {"hook": "patient-view", "hookInstance": 'x\n{"level": "FORGED"}',
                  "context": {"userId": "u", "patientId": "p"}}
        bad = httpx.post(hook, json=forged, headers={"Authorization":
                                                      f"Bearer {key.token(hook)}"})
        assert bad.status_code == 400 and "control characters" in bad.text
        assert httpx.get(f"{base}/no%0A{{%22level%22:%22FORGED%22}}").status_code == 404
        # headers that never finish: the connection is closed after header_read_timeout_s
        received, waited = _raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 5)
        assert received == b"" and waited < 3
        # a body that never finishes: 408 after body_read_timeout_ms, not a held connection
        def head() -> bytes:
            return (f"POST /cds-services/twitch-cds-patient-view HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {key.token(hook)}\r\nContent-Type: "
                    "application/json\r\nContent-Length: 1000\r\n\r\n").encode()

        received, waited = _raw_http(port, head() + b'{"hook": ', 5)
        assert received.startswith(b"HTTP/1.1 408") and waited < 3
        assert b"OperationOutcome" in received
        # a client that goes away mid-body
        for _ in range(2):  # one per worker, most likely
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(head() + b'{"hook"')
                time.sleep(0.1)
        time.sleep(0.5)
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) and "message" in entry for entry in entries)
    assert not any(entry.get("level") == "FORGED" for entry in entries)
    for secret in secrets:
        assert secret not in stdout + stderr
    access = [e for e in entries if e.get("path") == "/cds-services" and "status" in e]
    assert {e["status"] for e in access} >= {200, 401}
    reasons = [e for e in entries if e["message"].startswith("401 on /cds-services")]
    assert reasons and "expired" in reasons[0]["reason"].lower()
    assert not any(str(e.get("status", "")).startswith("5") for e in entries)
    assert "Traceback" not in stderr and "Exception in ASGI" not in stderr
    assert any(e["message"].startswith("client disconnected") for e in entries)
    assert any(e["message"].startswith("database: sqlite:///") for e in entries)
