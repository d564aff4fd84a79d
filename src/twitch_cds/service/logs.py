"""The service's log: one JSON object per line, so no value (a path, a ``hookInstance``, a
401 reason) can forge a line, and nothing is written that the code did not choose to write:
no query strings, no tokens, no resource contents, no exception messages.

``twitch-cds serve`` hands ``log_config()`` to uvicorn (its own access log off: the
service's access line carries the path without the query string). An app built by
``create_app`` under another server gets a stderr handler if nothing else configured one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from typing import Any

SERVICE_LOGGER = "twitch_cds"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...record.fields}`` on one line (JSON
    escapes newlines and every control character). An exception is logged by its type and
    stack frames only: its message may carry patient data."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["stack"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, default=str)


def log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``: uvicorn's own messages
    and the service's lines, as JSON on stderr; uvicorn's access log silenced."""
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            # its lines hold the query string (a token sent as ?access_token=...)
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            SERVICE_LOGGER: {"handlers": ["stderr"], "level": upper, "propagate": False},
        },
    }


def ensure_handler() -> None:
    """Make the service's INFO lines appear when no one configured logging."""
    logger = logging.getLogger(SERVICE_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)


def has_control_characters(text: str) -> bool:
    """C0 and C1 control characters and the Unicode line and paragraph separators."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in text)
