"""Service configuration, read by pydantic-settings' own sources.

Precedence, highest first: arguments given in code (``load_config(time_budget_ms=...)``),
``TWITCH_CDS_*`` environment variables, the YAML (or JSON) file, the defaults. The file is
``load_config``'s ``path``, else ``$TWITCH_CDS_CONFIG``, else none. Every setting with its
default and meaning is in ``examples/service.yaml``.
"""

from __future__ import annotations

import datetime as dt
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from twitch_cds.service.admission import default_max_queue


class ConfigFileError(ValueError):
    """The configuration file cannot be read as a mapping of settings."""


class _Mapping(PydanticBaseSettingsSource):
    """A file source whose file must hold a mapping (a YAML list is named, not crashed on)."""

    kind = "YAML"

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)  # type: ignore[misc]
        except (ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
            raise ConfigFileError(f"{file_path}: not valid {self.kind}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigFileError(f"{file_path}: the settings must be a mapping "
                                  f"(name: value), not a {type(data).__name__}")
        return data


class _YamlFile(_Mapping, YamlConfigSettingsSource):
    pass


class _JsonFile(_Mapping, JsonConfigSettingsSource):
    kind = "JSON"


_config_file: ContextVar[Path | None] = ContextVar("twitch_cds_config_file", default=None)
"""The file ``load_config`` is reading, for ``ServiceConfig.settings_customise_sources``."""


class TrustedClient(BaseModel):
    """An EHR allowed to call: its JWT issuer, where its public keys are, its tenants."""

    model_config = ConfigDict(extra="forbid")

    issuer: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    tenants: list[str] = Field(default_factory=list)
    """When set, the JWT ``tenant`` claim must be one of these."""
    fhir_servers: list[str] = Field(default_factory=list)
    """When set, the origins (``https://fhir.example.org``, scheme, host and port) this
    client's ``fhirServer`` may be on; the service fetches from no other."""

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustedClient:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(f"client {self.issuer}: give exactly one of jwks_url or jwks_file")
        return self


class ServiceConfig(BaseSettings):
    """Everything the service reads at start. Environment variables override the file:
    ``TWITCH_CDS_TIME_BUDGET_MS=250``, ``TWITCH_CDS_CORS_ORIGINS='["https://ehr.example"]'``."""

    model_config = SettingsConfigDict(env_prefix="TWITCH_CDS_", extra="forbid")

    clients: list[TrustedClient] = Field(default_factory=list)
    allow_unauthenticated: bool = False
    """Accept calls without a JWT. Only for local development; logged loudly at start."""
    public_base_url: str | None = None
    """The base URL clients call (``https://cds.example.org``): the JWT ``aud`` must be this
    plus the path called. Required whenever authentication is on; never taken from the
    request's headers."""
    allow_insecure_fhir_server: bool = False
    """Fetch from a ``fhirServer`` that is not https (sending it the bearer token). Only for
    local testing."""
    cors_origins: list[str] = Field(default_factory=list)
    time_budget_ms: int = Field(default=300, gt=0)
    """Each hook call's deadline, counted from its arrival: it covers waiting for the
    engine, reading the body, the prefetch fallback and the evaluation. Past it, answer one
    ``check-incomplete`` card (review the chart for red flags) rather than keep the
    clinician waiting."""
    max_queue: int | None = Field(default=None, ge=1)
    """Hook calls a worker takes on at once (waiting or being evaluated). Beyond it, or
    when those already taken on would use up the time budget, a call is answered at once
    with the ``check-incomplete`` card (reason ``overload``) and its body is never read.
    Default: ``time_budget_ms`` / 25 ms (a heavy chart's evaluation), at least 2."""
    max_connections: int = Field(default=1000, ge=1)
    """``twitch-cds serve``: open connections (and requests in progress) per worker before
    uvicorn itself answers a bare 503 (its ``limit_concurrency``): a backstop for memory
    against a connection flood, far above what ``max_queue`` admits."""
    evaluate_in: Literal["process", "thread"] = "process"
    """Where each worker evaluates charts. ``process``: in one child process of its own, so
    the engine never holds the GIL of the process that reads requests, sheds calls and
    answers deadlines (each worker then counts two processes). ``thread``: in one thread of
    the worker (no child process; the event loop waits for the GIL under load): for an app
    given knowledge of its own, and for tests."""
    evaluation_kill_after_ms: int = Field(default=2000, gt=0)
    """``evaluate_in: process``: an evaluation still running this long after its call's
    deadline (the call was answered ``check-incomplete`` at the deadline) has its process
    killed and a new one started, so a stuck chart cannot hold a worker. Calls meanwhile
    are answered ``check-incomplete`` at their deadlines."""
    overload_log_interval_s: float = Field(default=10.0, gt=0)
    """``check-incomplete`` answers (out of time, overload) are logged at most once per
    interval: the first as it happens, the rest as one count."""
    fetch_timeout_ms: int = Field(default=250, gt=0)
    max_body_bytes: int = Field(default=5_000_000, gt=0)
    body_read_timeout_ms: int = Field(default=5000, gt=0)
    """A request body not complete within this gets 408 (a slow or stalled client)."""
    header_read_timeout_s: float = Field(default=10.0, gt=0)
    """``twitch-cds serve``: a connection whose request line and headers are not complete
    within this is closed."""
    quiet_after_override: dict[str, dt.timedelta] = Field(
        default_factory=lambda: {"already-addressed": dt.timedelta(days=30)})
    """Override reason code (the project's CodeSystem, offered in every card's
    ``overrideReasons``) -> how long a card overridden with it is left out for that patient
    (ISO 8601 durations: ``P30D``, ``PT12H``), unless its evidence changes. A reason not
    listed quiets nothing; ``{}`` turns the feature off."""
    max_feedback_items: int = Field(default=100, gt=0)
    """Feedback items accepted in one request; more get 413."""
    openapi: bool = False
    """Serve ``/openapi.json`` and ``/docs`` (off by default: they need no token)."""
    validation_cache_entries: int = Field(default=50_000, ge=0)
    """fhir.resources validation results kept per worker, keyed by each resource's content:
    patient-view brings the same chart back again and again (0 turns it off)."""
    database_url: str | None = None
    """Feedback and JWT ids seen (replay protection); any SQLAlchemy URL. Default: SQLite
    under the user's state directory (``$XDG_STATE_HOME/twitch-cds/service.db``, else
    ``~/.local/state/twitch-cds/service.db``), never the working directory."""
    lang: Literal["en", "id"] = "en"
    metrics: bool = False
    """Serve Prometheus metrics at ``GET /metrics`` (counts and times only: no patient
    ids, no hookInstance values, no tokens)."""
    metrics_token: SecretStr | None = None
    """When set, ``/metrics`` needs ``Authorization: Bearer <this token>`` (else 401);
    without it, keep ``/metrics`` off the network the EHR reaches."""
    max_prefetch_url_length: int = Field(default=2000, ge=256)
    """Longest prefetch search advertised in discovery, counted with a 64-character patient
    id: the Observation codes are split over ``observations-1``, ``-2``, ... to stay within."""
    jti_lifetime_s: int = Field(default=3600, gt=0)
    """How long a token id is remembered (at least the longest token lifetime)."""
    jwks_refresh_cooldown_s: float = Field(default=30.0, ge=0)
    """Least time between two refetches of a JWKS forced by an unknown ``kid`` (key
    rotation), so a flood of forged kids cannot hammer the EHR's key endpoint."""
    leeway_s: int = Field(default=30, ge=0)
    """Clock skew allowed for ``exp`` and ``iat``."""
    catalogue_dir: Path | None = None
    """Serve the rule catalogue that ``twitch-cds catalogue --out DIR`` wrote, read-only, at
    ``/catalogue/`` (static files, GET and HEAD only, no token: it holds the knowledge, no
    patient data). Off when unset."""

    @model_validator(mode="after")
    def _catalogue_is_built(self) -> ServiceConfig:
        if self.catalogue_dir is not None and not (self.catalogue_dir / "index.html").is_file():
            raise ValueError(f"catalogue_dir {self.catalogue_dir} holds no catalogue "
                             "(no index.html): write one with twitch-cds catalogue --out DIR")
        return self

    @model_validator(mode="after")
    def _audience_is_configured(self) -> ServiceConfig:
        if not self.allow_unauthenticated and not self.public_base_url:
            raise ValueError(
                "public_base_url is required when authentication is on: set it (or "
                "TWITCH_CDS_PUBLIC_BASE_URL) to the base URL the EHR calls, e.g. "
                "https://cds.example.org; the JWT aud is checked against it")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments, then the environment, then the configuration file."""
        path = _config_file.get()
        if path is None:
            return init_settings, env_settings
        file: PydanticBaseSettingsSource = (
            _JsonFile(settings_cls, json_file=path, json_file_encoding="utf-8")
            if path.suffix.lower() == ".json"
            else _YamlFile(settings_cls, yaml_file=path, yaml_file_encoding="utf-8"))
        return init_settings, env_settings, file

    @property
    def queue_limit(self) -> int:
        """``max_queue``, or its default derived from the time budget."""
        return self.max_queue or default_max_queue(self.time_budget_ms)

    @property
    def database(self) -> str:
        """The SQLAlchemy URL in use: ``database_url``, else the default state file."""
        return self.database_url or f"sqlite:///{default_database_path()}"


def default_database_path() -> Path:
    """``$XDG_STATE_HOME/twitch-cds/service.db`` (``~/.local/state`` when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "twitch-cds" / "service.db"


def load_config(path: str | Path | None = None, **overrides: Any) -> ServiceConfig:
    """The configuration from ``overrides``, the environment and the file (``path``, else
    ``$TWITCH_CDS_CONFIG``, else none), in that order of precedence. A file named but not
    there is an error (``FileNotFoundError``), not an empty configuration."""
    chosen = path or os.environ.get("TWITCH_CDS_CONFIG")
    file = Path(chosen) if chosen else None
    if file is not None and not file.is_file():
        raise FileNotFoundError(f"configuration file {file} does not exist")
    token = _config_file.set(file)
    try:
        return ServiceConfig(**overrides)
    finally:
        _config_file.reset(token)
