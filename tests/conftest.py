"""Shared fixtures: the packaged knowledge, loaded once."""

from __future__ import annotations

import pytest

from twitch_cds.knowledge.bundle import Knowledge, default_knowledge


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return default_knowledge()
