"""Events in the social hub: an AS2 ``Event`` (the events actor's, Mobilizon's, Gancio's) is a card
with its title, date, place and link, never folded behind its ``summary``; a Note's ``summary`` is
still a content warning, folded."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor, APObject
from federation.social.schemas import event_card, event_when
from tests.federation.activitypub.test_social_hub import _note_ids, _people, _post
from tests.federation.social.test_timeline_ux import _note

pytestmark = pytest.mark.anyio

MOBILIZON = "https://mobilizon.example/@village"
LINE = "Sat 12 December 2026, 19:00\u201321:30 \u00b7 Village Hall"


async def test_a_federated_event_is_a_card_with_date_place_and_link(client: Any, db_session: AsyncSession) -> None:
    (alice,) = await _people(client, "alice")
    db_session.add(Actor(uri=MOBILIZON, local=False, type="Group", username="village", domain="mobilizon.example",
                         name="Village", inbox=f"{MOBILIZON}/inbox", fetched_at=datetime.now(UTC)))
    # Gancio-style: the date and place line in ``summary`` too; on an Event it is not a warning.
    raw = {"type": "Event", "startTime": "2026-12-12T19:00:00+00:00", "endTime": "2026-12-12T21:30:00+00:00",
           "location": {"type": "Place", "name": "Village Hall",
                        "address": {"type": "PostalAddress", "streetAddress": "1 Green"}}}
    db_session.add(APObject(ap_id="https://mobilizon.example/events/1", type="Event", attributed_to=MOBILIZON,
                            name="Winter <social>", summary=LINE, content="<p>Mulled cider.</p>",
                            url="https://mobilizon.example/events/winter", visibility="public", raw=raw,
                            published=datetime.now(UTC) - timedelta(minutes=5)))
    await db_session.commit()
    r = await _post(alice, "/social/compose", {"content": "the ending", "visibility": "public",
                                               "summary": "film spoilers", "next": "/social/"})
    assert r.status_code == 303
    html = (await alice.get("/social/federated")).text
    event_note, warned_note = sorted(_note_ids(html), key=lambda n: "film" in _note(html, n))
    card = _note(html, event_note)
    assert 'class="article-card event-card"' in card and "<details>" not in card, card
    assert re.search(r'<h2 class="article-card-title"><a href="https://mobilizon.example/events/winter"'
                     r' rel="nofollow noopener noreferrer">Winter &lt;social&gt;</a></h2>', card), card
    assert '<p class="event-card-when">Sat 12 December 2026, 19:00\u201321:30</p>' in card
    assert '<p class="event-card-place muted">Village Hall</p>' in card and "See the event" in card
    # a real content warning stays folded
    warned = _note(html, warned_note)
    assert "<details><summary>film spoilers</summary>" in warned and "the ending" in warned


async def test_the_events_actors_own_event_shows_its_title(client: Any, db_session: AsyncSession) -> None:
    """As events.py stores it: no summary, the Mobilizon fields in ``raw``."""
    (alice,) = await _people(client, "alice")
    events = "http://127.0.0.1:8000/ap/actors/events"
    db_session.add(APObject(ap_id=f"{events}/e1", type="Event", attributed_to=events, local=True,
                            name="Carol singing", summary="", content="<p>…</p>",
                            url="http://127.0.0.1:8000/events/carols", visibility="public",
                            raw={"startTime": "2026-12-20T18:00:00+00:00", "endTime": "2026-12-20T19:00:00+00:00",
                                 "location": {"type": "Place", "name": "Church porch"}, "ical:status": "CANCELLED"},
                            published=datetime.now(UTC)))
    await db_session.commit()
    html = (await alice.get("/social/local")).text
    (note,) = _note_ids(html)
    card = _note(html, note)
    assert '<a href="http://127.0.0.1:8000/events/carols">Carol singing</a>' in card
    assert "Sun 20 December 2026, 18:00\u201319:00" in card and "Church porch" in card
    assert "<strong>Cancelled</strong>" in card and "nofollow" not in card


def test_event_cards_from_bad_documents() -> None:
    """Hostile or sloppy peers: wrong types and unparsable times give an empty field, not an error."""
    card = event_card({"startTime": "next tuesday", "location": ["not a place"], "ical:status": 3},
                      name="", url="https://x.example/e")
    assert (card.name, card.when, card.place, card.status) == ("Untitled event", "", "", "")
    card = event_card(None, name="n", url="u")
    assert card.when == "" and card.place == ""
    card = event_card({"startTime": "2026-12-12T19:00:00Z", "endTime": "2026-12-13T01:00:00Z",
                       "location": {"address": {"streetAddress": "<b>1 Green</b>", "addressLocality": "Stroud"}}},
                      name="n", url="u")
    assert card.when == "Sat 12 December 2026, 19:00 \u2013 Sun 13 December 2026, 01:00"
    assert card.place == "1 Green, Stroud"
    assert event_when(datetime(2026, 1, 1, 9, tzinfo=UTC), None) == "Thu 1 January 2026, 09:00"
