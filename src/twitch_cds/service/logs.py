"""The service's log: one JSON object per line, so no value (a path, a ``hookInstance``, a
401 reason) can forge a line, and nothing is written that the code did not choose to write:
no query strings, no tokens, no resource contents, no exception messages.

``twitch-cds serve`` hands ``log_config()`` to uvicorn (its own access log off: the
service's access line carries the path without the query string). An app built by
``create_app`` under another server gets a stderr handler if nothing else configured one.
"""

from __future__ import annotations

import asyncio
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


class Tally:
    """An event that can come by the thousand under load, logged at most once per interval:
    the first one of a quiet period as it happens (with its details), the rest as one count
    by reason when the interval ends. Lives on the event loop."""

    def __init__(self, logger: logging.Logger, what: str, interval_s: float) -> None:
        self.logger, self.what, self.interval_s = logger, what, interval_s
        self._counts: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, reason: str, message: str, *args: object,
            fields: dict[str, Any] | None = None) -> None:
        """Count one event; log ``message`` only if no line was written this interval."""
        if self._timer is None:
            self.logger.warning(message, *args, extra={"fields": fields or {}})
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.flush)
            return
        self._counts[reason] = self._counts.get(reason, 0) + 1

    def flush(self) -> None:
        """Log what was counted since the last line; a quiet interval ends the series."""
        counts, self._counts = self._counts, {}
        if not counts:
            self._timer = None
            return
        total = sum(counts.values())
        self.logger.warning(
            "%s: %d more in the last %.0f s (%s)", self.what, total, self.interval_s,
            ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())),
            extra={"fields": {"count": total, "byReason": counts,
                              "interval_s": self.interval_s}})
        self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.flush)
