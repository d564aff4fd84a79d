"""The overload profile of ``service_load.py`` (``python benchmarks/service_load.py --overload``).

For 1 and then 2 workers of a real ``twitch-cds serve`` (JWT on, shipped defaults), and for
each of two charts carrying one red flag — the heavy chart (200 resources the rules read and
300 vitals) and a 1,000-resource chart (``charts.mostly_irrelevant``: mostly vitals, plus one
weakness record) — it measures the sustainable rate (requests answered per second with one
request in flight per worker), then sends open-loop load at 1x, 2x and 5x that rate, then
one request at a time again (recovery). Every answer is read and put in one group:

- ``in time``: cards, the red-flag card among them;
- ``shed``: the check-incomplete card saying the service is busy (admission refused);
- ``incomplete``: the check-incomplete card saying the time ran out;
- ``wrong``: anything else (no red flag, ``{"cards": []}``, an HTTP error, a dropped
  connection) — it must stay 0.

It prints each group's count, p50 and p99 latency (ms, measured by the client from sending
to the last byte), the slowest answer, and the workers' resident memory (RSS, sampled every
0.5 s from ``/proc``: the peak of each phase and the timeline).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

import charts
from service_load import (
    ISSUER,
    RED_FLAG,
    Connection,
    free_port,
    heavy_request,
    percentile,
    wait_for,
)

BUDGET_MS = 300  # the shipped default time_budget_ms
MARGIN_MS = 100  # "late": answered more than this after the budget
PHASES = (1, 2, 5)
GROUPS = ("in time", "shed", "incomplete", "wrong")
BUSY, OUT_OF_TIME = b"service busy", b"out of time"


def big_request() -> dict[str, Any]:
    """1,000 resources: a realistic chart's mix with one weakness record (the red flag)."""
    resources = charts.mostly_irrelevant(999)
    resources.append(charts.observation("weak-1", charts.SCT, "26544005", "Muscle weakness",
                                        "exam", 1, valueBoolean=True))
    by_key: dict[str, list[dict[str, Any]]] = {
        "observations": [], "conditions": [], "medicationRequests": [],
        "medicationStatements": []}
    patient = None
    for resource in resources:
        kind = resource["resourceType"]
        if kind == "Patient":
            patient = resource
        else:
            by_key[{"Observation": "observations", "Condition": "conditions",
                    "MedicationStatement": "medicationStatements",
                    "MedicationRequest": "medicationRequests"}[kind]].append(resource)
    prefetch: dict[str, Any] = {key: {"resourceType": "Bundle", "type": "searchset",
                                      "entry": [{"resource": r} for r in items]}
                                for key, items in by_key.items()}
    prefetch["patient"] = patient
    return {"hook": "patient-view",
            "context": {"userId": "Practitioner/1", "patientId": charts.PATIENT},
            "prefetch": prefetch}


class Memory:
    """Samples the RSS of the service's processes (the server and its workers)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.samples: list[tuple[float, str, float]] = []  # (time, phase, MiB summed)
        self.per_process: list[tuple[float, float]] = []  # (time, largest one process)
        self.phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def pids(self) -> list[int]:
        """The server, its workers and their evaluation processes (children's children),
        and multiprocessing's resource trackers (small, but the service's all the same)."""
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return found

    @staticmethod
    def rss_mib(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(0.5):
            sizes = [self.rss_mib(pid) for pid in self.pids()]
            moment = time.monotonic() - start
            self.samples.append((moment, self.phase, sum(sizes)))
            self.per_process.append((moment, max(sizes, default=0.0)))

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, phase: str) -> tuple[float, float]:
        """Peak summed RSS and peak single-process RSS (MiB) during a phase."""
        summed = [m for _, p, m in self.samples if p == phase]
        single = [s for (t, p, _), (_, s) in zip(self.samples, self.per_process, strict=True)
                  if p == phase]
        return max(summed, default=0.0), max(single, default=0.0)


class Client:
    """Open-loop or one-at-a-time requests, each with a fresh JWT and hookInstance."""

    def __init__(self, url: str, key: Any) -> None:
        self.url = url
        self.key = key
        self.host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        self.port = int(port)
        self.path = "/" + url.split("//", 1)[1].split("/", 1)[1]

    def tokens(self, count: int) -> list[str]:
        now = int(time.time())
        return [jwt.encode({"iss": ISSUER, "aud": self.url, "iat": now, "exp": now + 900,
                            "jti": str(uuid.uuid4())}, self.key, algorithm="ES384",
                           headers={"kid": "bench", "typ": "JWT"}) for _ in range(count)]

    def raw(self, template: bytes, token: str) -> bytes:
        body = template.replace(b"@HOOK-INSTANCE@", str(uuid.uuid4()).encode())
        return (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer "
                f"{token}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                "\r\n\r\n").encode() + body

    async def run(self, template: bytes, rate: float, seconds: float,
                  concurrency: int = 0) -> list[tuple[str, float]]:
        """(group, latency ms) per request: open loop at ``rate``, or ``concurrency``
        requests in flight for ``seconds``."""
        total = max(1, int(rate * seconds)) if not concurrency else 100_000
        tokens = self.tokens(total if not concurrency else int(rate * seconds * 3) + 50)
        idle: list[Connection] = []
        out: list[tuple[str, float]] = []

        async def one(token: str) -> None:
            raw = self.raw(template, token)
            connection = idle.pop() if idle else Connection(self.host, self.port)
            started = time.perf_counter()
            try:
                status, content = await connection.post(raw)
                group = classify(status, content)
                idle.append(connection)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                group = "wrong"
                if len(WRONG) < 5:
                    WRONG.append(f"{type(exc).__name__}: {exc}")
            out.append((group, (time.perf_counter() - started) * 1000))

        start = time.perf_counter()
        if concurrency:
            stock = iter(tokens)

            async def loop() -> None:
                while time.perf_counter() - start < seconds:
                    token = next(stock, None)
                    await one(token if token is not None else self.tokens(1)[0])
                    if out[-1][0] != "in time":  # a shed answer is instant: no busy loop
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(loop() for _ in range(concurrency)))
        else:
            tasks = []
            for i, token in enumerate(tokens):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(token)))
            await asyncio.gather(*tasks)
        for connection in idle:
            if connection.writer is not None:
                connection.writer.close()
        return out


WRONG: list[str] = []
"""What the first few wrong answers were (printed at the end)."""


def classify(status: int, content: bytes) -> str:
    group = "wrong"
    if status == 200 and b'"cards":[]' not in content:
        if b'"code":"check-incomplete"' in content:
            group = "shed" if BUSY in content else (
                "incomplete" if OUT_OF_TIME in content else "wrong")
        elif RED_FLAG in content:
            group = "in time"
    if group == "wrong" and len(WRONG) < 5:
        WRONG.append(f"HTTP {status}: {content[:300]!r}")
    return group


def server_side(scrape: str) -> str:
    """The service's own view of its hook answers (from arrival in the worker to the last
    byte handed to the socket), over the whole run: how many within each bucket."""
    buckets: dict[str, float] = {}
    for line in scrape.splitlines():
        if line.startswith("twitch_cds_request_duration_seconds_bucket") and 'route="hook"' in line:
            edge = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[edge] = buckets.get(edge, 0.0) + float(line.rsplit(" ", 1)[1])
    total = buckets.get("+Inf", 0.0)
    if not total:
        return "server side: no hook answers counted"
    shown = ", ".join(f"<= {edge} s: {buckets[edge] / total:.1%}"
                      for edge in ("0.3", "0.4", "0.5", "1.0") if edge in buckets)
    return f"server side, all {total:.0f} hook answers of the run: {shown}"


def report(label: str, answers: list[tuple[str, float]], seconds: float,
           memory: tuple[float, float]) -> str:
    cells = [f"{label:30}", f"{len(answers) / seconds:6.1f}"]
    for group in GROUPS:
        times = [ms for g, ms in answers if g == group]
        if times:
            cells.append(f"{len(times):5d} {statistics.median(times):6.0f} "
                         f"{percentile(times, 0.99):6.0f}")
        else:
            cells.append(f"{0:5d} {'-':>6} {'-':>6}")
    slowest = max((ms for _, ms in answers), default=0.0)
    late = sum(1 for _, ms in answers if ms > BUDGET_MS + MARGIN_MS)
    cells.append(f"{slowest:7.0f} {late:5d}")
    cells.append(f"{memory[0]:6.0f} {memory[1]:6.0f}")
    return " | ".join(cells)


def overload(seconds: float, alg: str = "ES384", workers_list: tuple[int, ...] = (1, 2),
             charts_list: tuple[str, ...] = ("heavy chart", "1,000 resources"),
             evaluate_in: str = "process") -> None:
    run_began = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="twitch-cds-overload-"))
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": "bench", "alg": "ES384"}
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    bodies = {name: make() for name, make in (("heavy chart", heavy_request),
                                               ("1,000 resources", big_request))
              if name in charts_list}
    templates = {name: json.dumps({**body, "hookInstance": "@HOOK-INSTANCE@"}).encode()
                 for name, body in bodies.items()}
    print(f"overload profile: time_budget_ms {BUDGET_MS} (shipped defaults), evaluate_in "
          f"{evaluate_in}, {seconds:.0f} s per phase; CPU: {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the start")
    for name, template in templates.items():
        print(f"  {name}: {len(template) / 1024:.0f} KiB per request body")
    header = (f"{'phase':30} | {'req/s':>6} | " + " | ".join(
        f"{g:>5} {'p50':>6} {'p99':>6}" for g in GROUPS)
        + f" | {'max ms':>7} {'late':>5} | {'RSS MiB':>6} {'1 proc':>6}")
    for workers in workers_list:
        port = free_port()
        (folder / "service.json").write_text(json.dumps({
            "clients": [{"issuer": ISSUER, "jwks_file": str(folder / "jwks.json")}],
            "database_url": f"sqlite:///{folder / f'service-{workers}.db'}",
            "public_base_url": f"http://127.0.0.1:{port}", "metrics": True,
            "evaluate_in": evaluate_in}))
        process = subprocess.Popen(
            [sys.executable, "-m", "twitch_cds.cli", "serve", "--port", str(port), "--config",
             str(folder / "service.json"), "--workers", str(workers)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL)
        try:
            wait_for(f"http://127.0.0.1:{port}/healthz", process)
            client = Client(f"http://127.0.0.1:{port}/cds-services/twitch-cds-patient-view",
                            key)
            print(f"\n{workers} worker(s); latency ms: count p50 p99 per group\n{header}")
            with Memory(process.pid) as memory:
                for name, template in templates.items():
                    asyncio.run(client.run(template, 10, 2, concurrency=workers))  # warm up
                    memory.phase = f"{name} sustainable"
                    calibration = asyncio.run(client.run(template, 10, 5, concurrency=workers))
                    rate = sum(1 for g, _ in calibration if g == "in time") / 5
                    print(report(f"{name}: {workers} in flight", calibration, 5,
                                 memory.peak(memory.phase)))
                    for times in PHASES:
                        memory.phase = f"{name} {times}x"
                        answers = asyncio.run(client.run(template, rate * times, seconds))
                        print(report(f"{name}: {times}x = {rate * times:.0f}/s", answers,
                                     seconds, memory.peak(memory.phase)))
                    memory.phase = f"{name} recovery"
                    began = time.perf_counter()
                    after = asyncio.run(client.run(template, 10, 3, concurrency=1))
                    print(report(f"{name}: recovery, 1 in flight", after,
                                 time.perf_counter() - began, memory.peak(memory.phase)))
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
                    print(f"{'':30}   /healthz after: admitted {health['admitted']}, "
                          f"max_queue {health['max_queue']}, evaluation processes "
                          f"restarted {health.get('engine_restarts', 0)}")
            print(server_side(httpx.get(f"http://127.0.0.1:{port}/metrics").text))
            timeline = " ".join(f"{m:.0f}" for _, _, m in memory.samples[::4])
            print(f"RSS over time (MiB, every 2 s, all processes): {timeline}")
        finally:
            process.terminate()
            process.wait(timeout=30)
    for wrong in WRONG:
        print(f"wrong answer: {wrong}")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"the run took {time.perf_counter() - run_began:.0f} s")
