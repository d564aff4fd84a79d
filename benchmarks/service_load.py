"""The CDS Hooks service under load on loopback, against ``evaluate()`` in-process.

    python benchmarks/service_load.py                 # 200 requests/s for 20 s per scenario
    python benchmarks/service_load.py --rate 100 --seconds 5 --workers 2

Starts ``twitch-cds serve`` (JWT on: ES384 or RS384 tokens, a fresh jti each request) and a stand-in
FHIR server in their own processes, then sends patient-view requests at a fixed rate
(open loop) from concurrent clients: a light chart with full prefetch, a heavy chart with
full prefetch (200 resources the rules read: twitching records over weeks, weakness
Observations and Conditions, low and normal potassium, a diuretic and a corticosteroid;
plus 300 vitals), and prefetch left out so the service fetches from the FHIR server. Prints
throughput and p50/p99 latency, and the same request evaluated in this process (the
service's overhead as a ratio). Every heavy-chart answer must carry the red-flag card: one
without it (the check-incomplete card past the time budget, say) counts as an error.

    python benchmarks/service_load.py --heavy-rate 50 --seconds 20   # the heavy target
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import twitch_cds

ROOT = Path(__file__).resolve().parents[1]
SCT, LOINC, ICD = "http://snomed.info/sct", "http://loinc.org", "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
RED_FLAG = b'"code":"red-flag"'
ISSUER = "https://ehr.example.org"
FHIR_TOKEN = "bench-token"
ALG = ["ES384"]


def _day(days_ago: int) -> str:
    moment = time.gmtime(time.time() - days_ago * 86400)
    return time.strftime("%Y-%m-%dT08:30:00Z", moment)


def _observation(i: int, system: str, code: str, display: str, category: str,
                 days_ago: int, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs-{i}", "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}],
                     "text": display},
            "subject": {"reference": "Patient/heavy"}, "effectiveDateTime": _day(days_ago),
            **value}


def _potassium(i: int, value: float, days_ago: int) -> dict[str, Any]:
    q = {"unit": "mmol/L", "system": UCUM, "code": "mmol/L"}
    return _observation(i, LOINC, "2823-3", "Potassium [Moles/volume] in Serum or Plasma",
                        "laboratory", days_ago, valueQuantity={"value": value, **q},
                        referenceRange=[{"low": {"value": 3.5, **q},
                                         "high": {"value": 5.1, **q}}])


def _weakness_condition(i: int) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"cond-{i}",
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed"}]},
            "code": {"coding": [{"system": ICD, "code": "M62.81",
                                 "display": "Muscle weakness (generalized)"}]},
            "subject": {"reference": "Patient/heavy"}, "onsetDateTime": _day(40 + i % 30)[:10],
            "recordedDate": _day(40 + i % 30)[:10]}


def _statement(i: int, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": f"med-{i}", "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                      "display": display}], "text": display},
            "subject": {"reference": "Patient/heavy"},
            "effectivePeriod": {"start": _day(90)[:10]}, "dateAsserted": _day(3)[:10]}


def heavy_request() -> dict[str, Any]:
    """A patient-view request with full prefetch: 200 resources the rules read and 300
    vitals (heart rate, temperature), dated over the last weeks."""
    observations: list[dict[str, Any]] = []
    i = 0
    for n in range(80):  # twitching recorded at visits over eight weeks
        i += 1
        observations.append(_observation(i, SCT, "82470000", "Muscle fasciculation", "exam",
                                         n % 56, valueBoolean=True))
    for n in range(30):
        i += 1
        observations.append(_observation(i, SCT, "26544005", "Muscle weakness", "exam",
                                         n % 40, valueBoolean=True))
    for n in range(60):  # low and normal potassium
        i += 1
        observations.append(_potassium(i, [3.1, 3.3, 3.9, 4.4][n % 4], n % 30))
    conditions = [_weakness_condition(n) for n in range(20)]
    statements = [_statement(n, *[("4603", "furosemide"), ("8640", "prednisone")][n % 2])
                  for n in range(10)]
    for n in range(300):
        i += 1
        if n % 2:
            observations.append(_observation(i, LOINC, "8867-4", "Heart rate", "vital-signs",
                                             n % 60, valueQuantity={
                                                 "value": 60 + n % 30, "unit": "/min",
                                                 "system": UCUM, "code": "/min"}))
        else:
            observations.append(_observation(i, LOINC, "8310-5", "Body temperature",
                                             "vital-signs", n % 60, valueQuantity={
                                                 "value": 36.5 + (n % 8) / 10, "unit": "Cel",
                                                 "system": UCUM, "code": "Cel"}))
    assert len(observations) + len(conditions) + len(statements) == 500

    def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
                "entry": [{"resource": r} for r in resources]}

    return {"hook": "patient-view",
            "context": {"userId": "Practitioner/1", "patientId": "heavy"},
            "prefetch": {
                "patient": {"resourceType": "Patient", "id": "heavy", "gender": "male",
                            "birthDate": "1961-08-12"},
                "observations": bundle(observations), "conditions": bundle(conditions),
                "medicationRequests": bundle([]), "medicationStatements": bundle(statements)}}


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


class Connection:
    """A keep-alive HTTP/1.1 connection that sends prepared requests: a client this thin
    (no httpx per request) keeps the load generator's own cost out of the figures."""

    IDLE_S = 4.0
    """Reconnect after this long idle: the server closes idle connections after 5 s."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def post(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is not None and time.monotonic() - self.used > self.IDLE_S:
            self.writer.close()
            self.writer = None
        self.used = time.monotonic()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        content = await self.reader.readexactly(length)
        self.used = time.monotonic()
        if b"\r\nconnection: close" in head.lower():
            self.writer.close()
            self.writer = None
        return status, content


def prepared(url: str, path: str, token: str, body: bytes) -> bytes:
    host = url.split("//", 1)[1].split("/", 1)[0]
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def load(url: str, key: Any, kid: str, body: dict[str, Any], rate: float,
               seconds: float, concurrency: int = 0,
               expect: bytes = b'"cards":[{'
               ) -> tuple[list[float], collections.Counter[str], int, float]:
    """Open loop (request i starts at i / rate, on a free connection) or, with
    ``concurrency``, closed loop. Latencies in ms, errors (not 200, or ``expect`` not in the
    answer), requests, wall seconds."""
    total = max(1, int(rate * seconds))
    now = int(time.time())
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    requests = [prepared(url, path, jwt.encode(
        {"iss": ISSUER, "aud": url, "iat": now, "exp": now + 600, "jti": str(uuid.uuid4())},
        key, algorithm=ALG[0], headers={"kid": kid, "typ": "JWT"}),
        json.dumps({**body, "hookInstance": str(uuid.uuid4())}).encode())
        for _ in range(total)]  # prepared ahead: the client should cost little CPU
    idle: list[Connection] = []
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()

    async def one(raw: bytes) -> None:
        connection = idle.pop() if idle else Connection(host, int(port))
        started = time.perf_counter()
        try:
            status, content = await connection.post(raw)
            if status != 200:
                errors[f"HTTP {status}"] += 1
            elif b'"code":"check-incomplete"' in content:
                errors["check-incomplete"] += 1
            elif expect not in content:
                errors["unexpected cards"] += 1
            idle.append(connection)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] += 1
        latencies.append((time.perf_counter() - started) * 1000)

    start = time.perf_counter()
    if concurrency:
        queue = iter(requests)

        async def worker() -> None:
            for raw in queue:
                await one(raw)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    else:
        tasks = []
        for i, raw in enumerate(requests):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(raw)))
        await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for connection in idle:
        if connection.writer is not None:
            connection.writer.close()
    return latencies, errors, total, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0,
                        help="requests per second with full prefetch")
    parser.add_argument("--fallback-rate", type=float, default=50.0,
                        help="requests per second that make the service fetch (each one is "
                             "four searches on the stand-in FHIR server, on the same cores)")
    parser.add_argument("--heavy-rate", type=float, default=50.0,
                        help="requests per second with the heavy chart (500 resources)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--alg", choices=("ES384", "RS384"), default="ES384",
                        help="the EHR's JWT algorithm (RS384 verifies ~10x faster)")
    parser.add_argument("--overload", action="store_true",
                        help="the overload profile instead: the heavy and a 1,000-resource "
                             "chart at 1x, 2x and 5x the sustainable rate of 1 and 2 workers")
    parser.add_argument("--overload-workers", default="1,2",
                        help="with --overload: the worker counts to run, e.g. 2 or 1,2")
    parser.add_argument("--heavy-only", action="store_true",
                        help="with --overload: the heavy chart only")
    parser.add_argument("--evaluate-in", choices=("process", "thread"), default="process",
                        help="where each worker evaluates (thread: the design before the "
                             "evaluation process, as a baseline)")
    parser.add_argument("--fhir-stand-in", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fhir_stand_in:
        fhir_stand_in(args.fhir_stand_in)
        return
    if args.overload:
        from service_overload import overload

        overload(seconds=args.seconds if args.seconds != 20.0 else 10.0, alg=args.alg,
                 workers_list=tuple(int(n) for n in args.overload_workers.split(",")),
                 charts_list=("heavy chart", "1,000 resources") if not args.heavy_only
                 else ("heavy chart",), evaluate_in=args.evaluate_in)
        return

    folder = Path(tempfile.mkdtemp(prefix="twitch-cds-bench-"))
    service_port, fhir_port = free_port(), free_port()
    ALG[0] = args.alg
    key: Any
    if args.alg == "ES384":
        key = ec.generate_private_key(ec.SECP384R1())
        public = ECAlgorithm.to_jwk(key.public_key())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = RSAAlgorithm.to_jwk(key.public_key())
    jwk = {**json.loads(public), "kid": "bench", "alg": args.alg}
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (folder / "service.json").write_text(json.dumps({
        "clients": [{"issuer": ISSUER, "jwks_file": str(folder / "jwks.json")}],
        "database_url": f"sqlite:///{folder / 'service.db'}",  # default budget and timeouts
        "public_base_url": f"http://127.0.0.1:{service_port}",
        "allow_insecure_fhir_server": True,  # the stand-in FHIR server is plain http
        "evaluate_in": args.evaluate_in}))
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
        asyncio.run(load(url, key, "bench", full, 50, 2))  # warm up every worker
        print(f"service: {args.workers} worker(s), evaluate_in {args.evaluate_in}; open-loop "
              f"load for {args.seconds:.0f} s per scenario, an {args.alg} JWT per request; "
              f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        heavy = heavy_request()
        baselines = {}
        for label, data, runs in (("full prefetch", full, 1000),
                                  ("heavy chart", heavy, 20),
                                  ("fetch fallback", margaret, 1000)):
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                twitch_cds.evaluate(data)  # the same patient, in this process
                samples.append((time.perf_counter() - started) * 1000)
            baselines[label] = samples
            print(f"in-process evaluate(), {label:15} p50 {statistics.median(samples):6.2f} ms"
                  f"  p99 {percentile(samples, 0.99):6.2f} ms")
        red = twitch_cds.evaluate(heavy).cards
        assert red and red[0].kind == "red-flag", "the heavy chart must carry a red flag"
        print(f"{'service':30} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
              f"{'x in-process p50':>17}")
        for name, body, rate, concurrency, expect in (
                ("full prefetch, one at a time", full, 100, 1, b'"cards":[{'),
                ("full prefetch, open loop", full, args.rate, 0, b'"cards":[{'),
                ("heavy chart, one at a time", heavy, 10, 1, RED_FLAG),
                ("heavy chart, open loop", heavy, args.heavy_rate, 0, RED_FLAG),
                ("fetch fallback, one at a time", fallback, 50, 1, b'"cards":[{'),
                ("fetch fallback, open loop", fallback, args.fallback_rate, 0, b'"cards":[{')):
            latencies, errors, total, wall = asyncio.run(
                load(url, key, "bench", body, rate, args.seconds if not concurrency else 3,
                     concurrency, expect))
            p50 = statistics.median(latencies)
            base = statistics.median(baselines[name.split(",")[0]])
            print(f"{name:30} {total / wall:7.1f} {p50:8.2f} {percentile(latencies, 0.99):8.2f} "
                  f"{sum(errors.values()):7d} {p50 / base:17.2f}"
                  + (f"   ({', '.join(f'{k}: {v}' for k, v in errors.items())})"
                     if errors else ""))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
