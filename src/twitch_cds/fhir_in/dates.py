"""FHIR date, dateTime and instant values as aware datetimes, for age-of-data arithmetic."""

from __future__ import annotations

import datetime as dt
import functools
import re

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_LONGEST = len("2026-11-24T09:00:00.000000000+14:00")
"""No FHIR date, dateTime or instant is longer (nanoseconds and a zone included)."""


def parse_fhir_datetime(value: object) -> dt.datetime | None:
    """A FHIR date/dateTime/instant, or None when it is not one.

    Partial dates (``2026``, ``2026-11``) take their first day; values without a zone are
    read as UTC (FHIR requires a zone whenever a time is given).
    """
    if not isinstance(value, str) or not value or len(value) > _LONGEST:
        return None
    return _parse(value)


@functools.lru_cache(maxsize=4096)
def _parse(value: str) -> dt.datetime | None:
    """Remembered: a chart repeats the same dates (visits, lab runs) many times."""
    partial = _PARTIAL.match(value)
    if partial:
        year, month, day = partial.groups()
        try:
            return dt.datetime(int(year), int(month or 1), int(day or 1), tzinfo=dt.UTC)
        except ValueError:
            return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        # in UTC, so that comparing two dates can never overflow (9999-12-31T23:00-14:00)
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        return None


def days_between(earlier: dt.datetime, later: dt.datetime) -> float:
    return (later - earlier).total_seconds() / 86400.0
