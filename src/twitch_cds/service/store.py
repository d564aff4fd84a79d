"""The service's durable state in a SQL database (SQLite by default, any SQLAlchemy URL):
card feedback, the cards a clinician overrode (to keep them quiet, see ``quiet.py``), and
the JWT ids already seen (replay protection across workers)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    make_url,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

metadata = MetaData()

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(200), nullable=False),
    Column("card", String(100), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("override_reason_system", String(300)),
    Column("override_reason_code", String(100)),
    Column("override_comment", Text),
    Column("accepted_suggestions", Text),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("service_id", "card", "outcome", name="one_outcome_per_card"),
)

overrides = Table(
    "card_overrides", metadata,
    Column("card", String(100), primary_key=True),
    Column("service_id", String(200), nullable=False),
    Column("reason_system", String(300), nullable=False),
    Column("reason_code", String(100), nullable=False),
    Column("overridden_at", DateTime(timezone=True), nullable=False),
)
"""The latest override of each card with a coded reason (one row per card uuid). A card's
uuid names the patient, the card kind, the rules and the records it cites, so a row stands
for one patient and one body of evidence."""

seen_tokens = Table(
    "seen_jwt_ids", metadata,
    Column("issuer", String(300), primary_key=True),
    Column("jti", String(300), primary_key=True),
    Column("expires", Float, nullable=False, index=True),
)
PURGE_EVERY_S = 60.0


class Store:
    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "",
                                                                            ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.location = parsed.render_as_string(hide_password=True)
        """Where the data is, for the log (no password)."""
        self.engine: Engine = create_engine(url, future=True)
        self._purged = 0.0
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        for attempt in range(5):  # workers starting together race to create the tables
            try:
                metadata.create_all(self.engine)
                break
            except OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def record_feedback(self, service_id: str, item: dict[str, Any]) -> bool:
        """Store one feedback item; False when this card already has this outcome."""
        return self.record_feedback_items(service_id, [item]) == 1

    def record_feedback_items(self, service_id: str, items: Sequence[dict[str, Any]]) -> int:
        """Store feedback items in one transaction; an outcome a card already has is kept
        once. Returns how many rows were new. Blocking: call it off the event loop."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for item in items:
            rows.setdefault((item["card"], item["outcome"]), _feedback_row(service_id, item))
        try:
            with self.engine.begin() as connection:
                return self._insert_new(connection, service_id, list(rows.values()))
        except IntegrityError:  # another worker wrote one of them meanwhile: one by one
            stored = 0
            for row in rows.values():
                try:
                    with self.engine.begin() as connection:
                        stored += self._insert_new(connection, service_id, [row])
                except IntegrityError:
                    continue
            return stored

    @staticmethod
    def _insert_new(connection: Connection, service_id: str,
                    rows: list[dict[str, Any]]) -> int:
        cards = sorted({row["card"] for row in rows})
        existing: set[tuple[str, str]] = set()
        for start in range(0, len(cards), 500):  # bounded IN lists
            found = connection.execute(
                select(feedback.c.card, feedback.c.outcome)
                .where(feedback.c.service_id == service_id)
                .where(feedback.c.card.in_(cards[start:start + 500])))
            existing.update((card, outcome) for card, outcome in found)
        new = [row for row in rows if (row["card"], row["outcome"]) not in existing]
        if new:
            connection.execute(insert(feedback), new)
        return len(new)

    def record_overrides(self, service_id: str, items: Sequence[dict[str, Any]],
                         system: str) -> int:
        """Remember, per card, its latest override with a reason coded in ``system`` (the
        project's CodeSystem); returns how many were written. Blocking: off the loop."""
        now = dt.datetime.now(dt.UTC)
        latest: dict[str, dict[str, Any]] = {}
        for item in items:
            coding = (item.get("overrideReason") or {}).get("reason") or {}
            if item.get("outcome") == "overridden" and coding.get("system") == system \
                    and isinstance(coding.get("code"), str):
                latest[item["card"]] = {"card": item["card"], "service_id": service_id,
                                        "reason_system": system, "reason_code": coding["code"],
                                        "overridden_at": now}
        if not latest:
            return 0
        for attempt in range(3):  # another worker may write the same card meanwhile
            try:
                with self.engine.begin() as connection:
                    connection.execute(delete(overrides).where(
                        overrides.c.card.in_(list(latest))))
                    connection.execute(insert(overrides), list(latest.values()))
                return len(latest)
            except IntegrityError:
                if attempt == 2:
                    raise
        return 0

    def overrides_of(self, cards: Sequence[str]) -> dict[str, tuple[str, dt.datetime]]:
        """Card uuid -> (reason code, when) for those of ``cards`` that were overridden."""
        if not cards:
            return {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(overrides.c.card, overrides.c.reason_code, overrides.c.overridden_at)
                .where(overrides.c.card.in_(list(cards)[:500])))
            return {card: (code, _aware(when)) for card, code, when in rows}

    def feedback_for(self, card: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(feedback).where(feedback.c.card == card))
            return [dict(row._mapping) for row in rows]

    def first_use(self, issuer: str, jti: str, expires: float) -> bool:
        """Remember a token id until it expires; False if it was already used (a replay)."""
        now = dt.datetime.now(dt.UTC).timestamp()
        try:
            with self.engine.begin() as connection:
                if now - self._purged > PURGE_EVERY_S:
                    connection.execute(delete(seen_tokens).where(seen_tokens.c.expires < now))
                    self._purged = now
                connection.execute(insert(seen_tokens).values(
                    issuer=issuer, jti=jti, expires=expires))
        except IntegrityError:
            return False
        return True


def _feedback_row(service_id: str, item: dict[str, Any]) -> dict[str, Any]:
    reason = item.get("overrideReason") or {}
    coding = reason.get("reason") or {}
    return {
        "service_id": service_id, "card": item["card"], "outcome": item["outcome"],
        "override_reason_system": coding.get("system"),
        "override_reason_code": coding.get("code"),
        "override_comment": reason.get("userComment"),
        "accepted_suggestions": json.dumps(item.get("acceptedSuggestions") or []),
        "outcome_timestamp": item["outcomeTimestamp"],
        "received_at": dt.datetime.now(dt.UTC),
    }


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes: they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # several worker processes, one file
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
