"""A member books and cancels in Chromium at phone width (390 CSS pixels): the booking form with
its questions (dietary needs, the staff's question), the bookings page saying until when the
booking can be cancelled, the cancel. Nothing overflows the viewport sideways. The server runs
migrated from scratch (this issue's migration included), on SQLite and on PostgreSQL when set."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.browser import DB_KINDS, server_database
from tests.helpers.server import app_server

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
DAY = date.today() + timedelta(days=10)


@pytest.fixture(scope="module", params=DB_KINDS)
def events_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    from tests.app.test_layout_browser import browser_or_skip

    browser_or_skip()
    tmp = tmp_path_factory.mktemp("events-booking")
    with server_database(request.param) as url, app_server(tmp, database_url=url) as server:
        async def seed(session: AsyncSession) -> None:
            from domains.events.services.events import EventForm, EventService
            from domains.events.services.options import save_options

            event = await EventService(session).save(EventForm(
                title="Bread workshop", tz="Europe/London", start_date=DAY.isoformat(), start_time="18:00",
                end_time="20:00", capacity="12"))
            await save_options(session, event, {"ask_dietary": True, "question": "Anything we should know?",
                                                "question_required": False, "cancel_until_hours": 24})

        server.in_process(seed)
        server.create_user("phoebe", PASSWORD, email="phoebe@example.org")
        yield server


def navigate(page: Any, click: str, condition: str) -> None:
    page.eval("window.__old = true")
    page.eval(f"document.querySelector({json.dumps(click)}).click()")
    page.wait_for(f"window.__old === undefined && document.readyState === 'complete' && ({condition})")


def fits(page: Any) -> None:
    scroll, inner = page.eval("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= inner, (page.eval("location.pathname"), scroll, inner)


def test_book_then_cancel_at_phone_width(events_server: Any, tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium

    server = events_server
    with chromium(tmp_path, browser_binary) as page:
        page.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        page.goto(server.base_url + "/account/login?next=/events/bread-workshop/book")
        page.eval(f"document.querySelector('input[name=login]').value = 'phoebe';"
                  f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)}")
        navigate(page, "form[action^='/account/login'] button[type=submit]",
                 "location.pathname === '/events/bread-workshop/book'")
        fits(page)
        assert page.eval("document.querySelector('label[for=f-answer]').innerText").startswith(
            "Anything we should know?")
        assert page.eval("document.querySelector('#f-attendee_1').value") == "phoebe"
        # Two places, the second attendee left unnamed: the form comes back saying so.
        page.eval("document.querySelector('#f-quantity').value = '2';"
                  "document.querySelector('#f-dietary_1').value = 'vegetarian';"
                  "document.querySelector('#f-answer').value = 'Arriving by bike'")
        navigate(page, "form[action='/events/bread-workshop/book'] button[type=submit]",
                 "document.querySelector('#e-attendees') !== null")
        assert "attendee 2 has no name" in page.eval("document.querySelector('#e-attendees').innerText")
        assert page.eval("document.querySelector('#f-dietary_1').value") == "vegetarian"  # kept as typed
        fits(page)
        page.eval("document.querySelector('#f-attendee_2').value = 'Quentin'")
        navigate(page, "form[action='/events/bread-workshop/book'] button[type=submit]",
                 "location.pathname === '/account/bookings'")
        body = str(page.eval("document.body.innerText"))
        assert "Booked: 2 places" in body and "Ticket: phoebe" in body and "Ticket: Quentin" in body
        assert "You can cancel until" in body and "vegetarian" in body
        fits(page)
        navigate(page, "form[action$='/cancel'] button[type=submit]", "location.pathname === '/account/bookings'")
        body = str(page.eval("document.body.innerText"))
        assert "Cancelled your booking for “Bread workshop”." in body and "cancelled" in body
        assert page.eval("document.querySelector(\"form[action$='/cancel']\")") is None
        fits(page)
