"""``twitch-cds serve --check-config``: is this configuration one the service can start with?

Everything the service would refuse at start is checked without starting it: each setting
(file and environment), the JWKS files named, the database URL, and that the prefetch
searches fit ``max_prefetch_url_length``. The answer is one line saying what will be used,
or one line per fault naming the setting (``time_budget_ms: Input should be greater than
0``). Nothing secret is printed: the database password is masked, tokens are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from twitch_cds.knowledge.bundle import default_knowledge
from twitch_cds.service.config import ServiceConfig, load_config
from twitch_cds.service.templates import prefetch_templates


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: list[str]


def _faults(error: ValidationError) -> list[str]:
    faults = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "configuration"
        message = item["msg"].removeprefix("Value error, ")
        faults.append(f"{where}: {message}")
    return faults


def _summary(config: ServiceConfig, file: str | None, database: str) -> str:
    if config.allow_unauthenticated:
        auth = "authentication OFF (allow_unauthenticated: local development only)"
    else:
        auth = (f"authentication JWT, {len(config.clients)} trusted client(s), "
                f"aud {config.public_base_url}")
    metrics = ("metrics on /metrics" + (" (token)" if config.metrics_token else "")
               if config.metrics else "metrics off")
    return (f"configuration OK ({file or 'no file: defaults and environment'}): "
            f"database {database}; {auth}; {metrics}")


def check_config(path: str | Path | None = None) -> Verdict:
    """The configuration from ``path`` (else ``$TWITCH_CDS_CONFIG``) and the environment."""
    try:
        config = load_config(path)
    except ValidationError as exc:
        return Verdict(False, _faults(exc))
    except (OSError, ValueError) as exc:  # a missing or unreadable file
        return Verdict(False, [str(exc)])
    faults = [f"clients[{n}].jwks_file: {client.jwks_file} does not exist"
              for n, client in enumerate(config.clients)
              if client.jwks_file is not None and not client.jwks_file.is_file()]
    try:
        database = make_url(config.database).render_as_string(hide_password=True)
    except ArgumentError:
        faults.append("database_url: not a database URL (e.g. sqlite:///service.db, "
                      "postgresql://user@host/db)")
        database = "?"
    offered = {r.code for r in default_knowledge().cards.override_reasons}
    faults += [f"quiet_after_override.{code}: not an override reason the cards offer "
               f"({', '.join(sorted(offered))})"
               for code in sorted(set(config.quiet_after_override) - offered)]
    try:
        prefetch_templates(default_knowledge(), config.max_prefetch_url_length)
    except ValueError as exc:
        faults.append(f"max_prefetch_url_length: {exc}")
    if faults:
        return Verdict(False, faults)
    return Verdict(True, [_summary(config, str(path) if path else None, database)])
