"""The events domain's surrogate keys (design/fragments.md §7), built here only.

``events`` every list, grid, feed and widget of events; ``event:<id>`` one event's page, card and
feed; ``events-calendar:<slug>`` a calendar's filtered views. Every save purges all three kinds
that apply, in the saving transaction.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from fragments.purge import SurrogateKey

__all__ = ["EVENTS", "calendar", "event", "showing"]

EVENTS: Final = SurrogateKey("events")


def event(event_id: UUID | str) -> SurrogateKey:
    return SurrogateKey(f"event:{event_id}")


def calendar(slug: str) -> SurrogateKey:
    return SurrogateKey(f"events-calendar:{slug}")


def showing(event_id: UUID, calendar_slug: str) -> set[SurrogateKey]:
    return {EVENTS, event(event_id), calendar(calendar_slug)}
