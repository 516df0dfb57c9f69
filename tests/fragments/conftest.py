"""Fixtures for the fragment tests: guard-log capture (any unexpected guard error fails the test)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class GuardLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.expected = False

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture(autouse=True)
def patient_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generous fragment deadlines: a busy test machine must not turn pages into fallbacks."""
    import fragments.registry

    monkeypatch.setattr(fragments.registry, "TIMEOUT_FLOOR", 10.0)


@pytest.fixture(autouse=True)
def guard_log() -> Iterator[GuardLog]:
    """Collects the guard's errors; a test that did not expect one fails (design §2)."""
    handler = GuardLog()
    logger = logging.getLogger("rose_ash.fragments.guard")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
    if handler.records and not handler.expected:
        pytest.fail("the public-response guard fired: " + "; ".join(handler.messages))
