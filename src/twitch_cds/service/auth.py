"""CDS Hooks JWT authentication (spec 2.0 "Trusting CDS Clients"), with PyJWT.

Checked: ``alg`` ES384 or RS384 only (never ``none`` or HMAC), ``kid`` and ``typ``, the
signature against the issuer's JWKS (a URL, cached, refetched when an unknown ``kid`` shows
up after a key rotation; or a file), ``iss`` on the allowlist, ``aud`` equal to the endpoint
called, ``exp`` and ``iat``, ``jti`` never seen before within its lifetime, and ``tenant``
where the client has tenants. Any failure is an ``AuthError`` (whatever PyJWT or the key
library raised, e.g. an RS384 header naming an EC key); the app answers a bare 401.
``verify`` blocks (a JWKS fetch, a database write): the app runs it off the event loop.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from typing import Any, Literal

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from twitch_cds.service.config import ServiceConfig, TrustedClient
from twitch_cds.service.store import Store

ALGORITHMS = ["ES384", "RS384"]
TYPES = ("jwt", "application/jwt")
"""The JWT header ``typ`` CDS Hooks 2.0 requires ("JWT"; media types are case-insensitive)."""


AuthReason = Literal["missing", "malformed", "algorithm", "issuer", "key", "signature",
                     "expired", "not-yet-valid", "audience", "tenant", "replay", "error"]
"""Why a token was refused, as one of a fixed few words (a metrics label: no free text)."""


class AuthError(Exception):
    """Why a token was refused (logged without the token; never sent to the client)."""

    def __init__(self, message: str, reason: AuthReason) -> None:
        super().__init__(message)
        self.reason: AuthReason = reason


def _pyjwt_reason(exc: jwt.PyJWTError) -> AuthReason:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not-yet-valid"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "issuer"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "signature"
    return "malformed"


class _Keys:
    """One client's public keys."""

    def __init__(self, client: TrustedClient, refresh_cooldown_s: float) -> None:
        options: dict[str, Any] = {}
        if "cooldown_duration" in inspect.signature(PyJWKClient).parameters:
            options["cooldown_duration"] = refresh_cooldown_s  # PyJWT >= 2.11
        self._url_client = PyJWKClient(client.jwks_url, cache_keys=True, lifespan=3600,
                                       timeout=5, **options) if client.jwks_url else None
        self._file_keys: dict[str, PyJWK] = {}
        if client.jwks_file is not None:
            jwks = PyJWKSet.from_dict(json.loads(client.jwks_file.read_text(encoding="utf-8")))
            self._file_keys = {key.key_id: key for key in jwks.keys if key.key_id}

    def key(self, kid: str) -> Any:
        if self._url_client is not None:
            try:
                return self._url_client.get_signing_key(kid).key
            except jwt.PyJWKClientError as exc:
                raise AuthError(f"no key {kid!r} in the issuer's JWKS: {exc}", "key") from exc
        if kid not in self._file_keys:
            raise AuthError(f"no key {kid!r} in the issuer's JWKS file", "key")
        return self._file_keys[kid].key


class JwtVerifier:
    def __init__(self, config: ServiceConfig, store: Store) -> None:
        self._config = config
        self._store = store
        self._clients = {client.issuer: client for client in config.clients}
        self._keys: dict[str, _Keys] = {}
        self._lock = threading.Lock()

    def _keys_for(self, client: TrustedClient) -> _Keys:
        with self._lock:
            if client.issuer not in self._keys:
                self._keys[client.issuer] = _Keys(client, self._config.jwks_refresh_cooldown_s)
            return self._keys[client.issuer]

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The token's claims, or AuthError (never any other exception)."""
        try:
            return self._verify(authorization, audience)
        except AuthError:
            raise
        except Exception as exc:  # a malformed key, header or claim: still only a 401
            raise AuthError(f"token rejected ({type(exc).__name__})", "error") from exc

    def _verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("no Bearer token", "missing")
        token = authorization[len("Bearer "):].strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"not a JWT: {exc}", "malformed") from exc
        if not isinstance(header.get("typ"), str) or header["typ"].lower() not in TYPES:
            raise AuthError(f"typ {header.get('typ')!r} in the JWT header: CDS Hooks needs JWT",
                            "malformed")
        if header.get("alg") not in ALGORITHMS:
            raise AuthError(f"alg {header.get('alg')!r} is not allowed", "algorithm")
        if not header.get("kid"):
            raise AuthError("no kid in the JWT header", "malformed")
        client = self._clients.get(str(unverified.get("iss")))
        if client is None:
            raise AuthError(f"issuer {unverified.get('iss')!r} is not trusted", "issuer")
        key = self._keys_for(client).key(str(header["kid"]))
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=ALGORITHMS, audience=audience,
                issuer=client.issuer, leeway=self._config.leeway_s,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"token rejected: {exc}", _pyjwt_reason(exc)) from exc
        if not isinstance(claims["iat"], int | float) or not isinstance(claims["exp"],
                                                                        int | float):
            raise AuthError("iat and exp must be numbers", "malformed")
        if claims["iat"] > time.time() + self._config.leeway_s:
            raise AuthError("iat is in the future", "not-yet-valid")
        if client.tenants and claims.get("tenant") not in client.tenants:
            raise AuthError(f"tenant {claims.get('tenant')!r} is not allowed for this issuer",
                            "tenant")
        remember_until = max(float(claims["exp"]), time.time() + self._config.jti_lifetime_s)
        if not self._store.first_use(client.issuer, str(claims["jti"]), remember_until):
            raise AuthError("jti already used (replay)", "replay")
        return claims
