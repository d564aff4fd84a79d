"""Real keys, real tokens, real HTTP on loopback: the pieces the service tests share."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ISSUER = "https://ehr.example.org"
FHIR_TOKEN = "fhir-access-token-not-to-be-logged"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @classmethod
    def es384(cls, kid: str = "ec-1") -> SigningKey:
        return cls(kid, "ES384", ec.generate_private_key(ec.SECP384R1()))

    @classmethod
    def rs384(cls, kid: str = "rsa-1") -> SigningKey:
        return cls(kid, "RS384", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def token(self, audience: str, issuer: str = ISSUER, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": issuer, "aud": audience, "exp": now + 300, "iat": now,
                   "jti": str(uuid.uuid4()), **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.private, algorithm=self.alg,
                          headers={"kid": self.kid, "typ": "JWT"})


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveServer:
    """An ASGI app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any, sock: socket.socket | None = None) -> None:
        self._socket = sock or _loopback_socket()
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)

    @classmethod
    def build(cls, make_app: Callable[[str], Any]) -> LiveServer:
        """For an app that must know its own URL first (``public_base_url``)."""
        sock = _loopback_socket()
        host, port = sock.getsockname()[:2]
        return cls(make_app(f"http://{host}:{port}"), sock)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class FhirStandIn:
    """A FHIR server for the fetch fallback: searches by patient over example bundles,
    two entries a page, bearer token required; also serves a JWKS that tests can rotate."""

    resources: list[dict[str, Any]]
    keys: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    delay_s: float = 0.0
    fail_types: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    base: str = ""
    max_url_length: int | None = None
    """Answer 414 to a request whose target (path and query) is longer, as many servers
    and proxies do."""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/jwks")
        async def keys() -> JSONResponse:
            return JSONResponse(self.keys)

        @app.get("/fhir/{rtype}/{rid}")
        async def read(rtype: str, rid: str, request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {FHIR_TOKEN}":
                return JSONResponse({}, status_code=401)
            found = [r for r in self.resources if r["resourceType"] == rtype and r["id"] == rid]
            return JSONResponse(found[0] if found else {"resourceType": "OperationOutcome"},
                                status_code=200 if found else 404)

        @app.get("/fhir/{rtype}")
        async def search(rtype: str, request: Request) -> JSONResponse:
            import asyncio

            self.requests.append(str(request.url))
            target = request.scope["raw_path"] + b"?" + request.scope["query_string"]
            if self.max_url_length is not None and len(target) > self.max_url_length:
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=414)
            if request.headers.get("authorization") != f"Bearer {FHIR_TOKEN}":
                return JSONResponse({}, status_code=401)
            if rtype in self.fail_types:
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=500)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            patient = request.query_params.get("patient")
            codes = request.query_params.get("code")
            matches = [r for r in self.resources if r["resourceType"] == rtype
                       and r.get("subject", {}).get("reference") == f"Patient/{patient}"
                       and (codes is None or _coded(r, codes))]
            page = int(request.query_params.get("page", "0"))
            chunk = matches[page * 2:page * 2 + 2]
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                                      "total": len(matches),
                                      "entry": [{"resource": r} for r in chunk]}
            if (page + 1) * 2 < len(matches):
                following = request.url.include_query_params(page=page + 1)
                bundle["link"] = [{"relation": "next",
                                   "url": f"{self.base}/fhir/{rtype}?{following.query}"}]
            return JSONResponse(bundle)

        return app


def _coded(resource: dict[str, Any], codes: str) -> bool:
    """Whether the resource's ``code`` has one of a FHIR token search's ``system|code``s."""
    wanted = {item.replace("\\,", ",") for item in re.split(r"(?<!\\),", codes)}
    codings = (resource.get("code") or {}).get("coding") or []
    return any(f"{c.get('system')}|{c.get('code')}" in wanted for c in codings)


@contextmanager
def fhir_server(resources: list[dict[str, Any]], **options: Any) -> Iterator[FhirStandIn]:
    stand_in = FhirStandIn(resources, **options)
    with LiveServer(stand_in.app()) as server:
        stand_in.base = server.url
        yield stand_in


def example_resources(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return [entry["resource"] for entry in bundle["entry"]]
