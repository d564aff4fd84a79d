"""The CDS Hooks service under load on loopback, against ``evaluate()`` in-process.

    python benchmarks/service_load.py                 # 200 requests/s for 20 s per scenario
    python benchmarks/service_load.py --rate 100 --seconds 5 --workers 2

Starts ``twitch-cds serve`` (JWT on: ES384 tokens, a fresh jti each request) and a stand-in
FHIR server in their own processes, then sends patient-view requests at a fixed rate
(open loop) from concurrent clients: with full prefetch, and with prefetch left out so the
service fetches from the FHIR server. Prints throughput and p50/p99 latency, and the same
request evaluated in this process (the service's overhead as a ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jwt.algorithms import ECAlgorithm

import twitch_cds

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://ehr.example.org"
FHIR_TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fhir_stand_in(port: int) -> None:
    """A FHIR server for the fetch fallback, serving examples/03 by patient."""
    bundle = json.loads((ROOT / "examples" / "03-diuretic-no-labs.json").read_text())
    resources = [entry["resource"] for entry in bundle["entry"]]
    app = FastAPI()

    @app.get("/fhir/{rtype}")
    async def search(rtype: str, request: Request) -> JSONResponse:
        patient = request.query_params.get("patient")
        matches = [r for r in resources if r["resourceType"] == rtype
                   and r.get("subject", {}).get("reference") == f"Patient/{patient}"]
        return JSONResponse({"resourceType": "Bundle", "type": "searchset",
                             "entry": [{"resource": r} for r in matches]})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def load(url: str, key: Any, kid: str, body: dict[str, Any], rate: float,
               seconds: float) -> tuple[list[float], int, int, float]:
    """Open-loop load: request i starts at i / rate. Latencies in ms, errors, total, wall."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    total = int(rate * seconds)
    now = int(time.time())
    bodies = [json.dumps({**body, "hookInstance": str(uuid.uuid4())}).encode()
              for _ in range(total)]  # encoded ahead: the client should cost little CPU
    tokens = [jwt.encode({"iss": ISSUER, "aud": url, "iat": now, "exp": now + 600,
                          "jti": str(uuid.uuid4())}, key, algorithm="ES384",
                         headers={"kid": kid, "typ": "JWT"}) for _ in range(total)]
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        async def one(token: str, content: bytes) -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                response = await client.post(url, content=content, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                ok = response.status_code == 200 and b'"cards":[{' in response.content
            except httpx.TransportError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            if not ok:
                errors += 1

        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(tokens[i], bodies[i])))
        await asyncio.gather(*tasks)
        return latencies, errors, total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument("--fhir-stand-in", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fhir_stand_in:
        fhir_stand_in(args.fhir_stand_in)
        return

    folder = Path(tempfile.mkdtemp(prefix="twitch-cds-bench-"))
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": "bench", "alg": "ES384"}
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (folder / "service.json").write_text(json.dumps({
        "clients": [{"issuer": ISSUER, "jwks_file": str(folder / "jwks.json")}],
        "database_url": f"sqlite:///{folder / 'service.db'}", "time_budget_ms": 450,
        "fetch_timeout_ms": 400}))
    service_port, fhir_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes = [
        subprocess.Popen([sys.executable, __file__, "--fhir-stand-in", str(fhir_port)],
                         env=env, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "twitch_cds.cli", "serve", "--port",
                          str(service_port), "--config", str(folder / "service.json"),
                          "--workers", str(args.workers)], env=env,
                         stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL),
    ]
    try:
        wait_for(f"http://127.0.0.1:{fhir_port}/fhir/Patient", processes[0])
        wait_for(f"http://127.0.0.1:{service_port}/healthz", processes[1])
        url = f"http://127.0.0.1:{service_port}/cds-services/twitch-cds-patient-view"
        full = json.loads((ROOT / "examples" / "10-cds-hooks-request.json").read_text())
        margaret = json.loads((ROOT / "examples" / "03-diuretic-no-labs.json").read_text())
        patient = margaret["entry"][0]["resource"]
        fallback = {"hook": "patient-view", "fhirServer": f"http://127.0.0.1:{fhir_port}/fhir",
                    "fhirAuthorization": {"access_token": FHIR_TOKEN, "token_type": "Bearer",
                                          "expires_in": 300, "scope": "patient/*.read",
                                          "subject": "twitch-cds"},
                    "context": {"userId": "Practitioner/1", "patientId": patient["id"]},
                    "prefetch": {"patient": patient}}
        asyncio.run(load(url, key, "bench", full, 20, 2))  # warm up every worker
        print(f"service: {args.workers} worker(s); load: {args.rate:.0f} requests/s for "
              f"{args.seconds:.0f} s per scenario, open loop, ES384 JWT per request")
        print(f"{'scenario':30} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
              f"{'x in-process p50':>17}")
        for name, body in (("patient-view, full prefetch", full),
                           ("patient-view, fetch fallback", fallback)):
            in_process = []
            for _ in range(300):
                started = time.perf_counter()
                twitch_cds.evaluate(body if body is full else margaret)
                in_process.append((time.perf_counter() - started) * 1000)
            latencies, errors, total, wall = asyncio.run(
                load(url, key, "bench", body, args.rate, args.seconds))
            p50 = statistics.median(latencies)
            base = statistics.median(in_process)
            print(f"{name:30} {total / wall:7.1f} {p50:8.2f} {percentile(latencies, 0.99):8.2f} "
                  f"{errors:7d} {p50 / base:17.2f}")
            print(f"{'  in-process evaluate()':30} {'':7} {base:8.2f} "
                  f"{percentile(in_process, 0.99):8.2f}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
