"""A visitor buys paid tickets in Chromium at phone width (issue 18 item 4): the event page's
"Buy tickets" with a quantity per ticket type, the private page that names each ticket (htmx
re-renders the name rows when a quantity changes, names typed so far kept), the event's question,
then the cart with the names on its line. SQLite, and PostgreSQL when set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.domains.events.test_booking_browser import DAY, DB_KINDS, fits, navigate, server_database
from tests.helpers.server import app_server

pytestmark = pytest.mark.e2e
KEY = f"{DAY:%Y%m%d}T180000"


@pytest.fixture(scope="module", params=DB_KINDS)
def tickets_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    from tests.app.test_layout_browser import browser_or_skip

    browser_or_skip()
    tmp = tmp_path_factory.mktemp("events-tickets")
    with server_database(request.param) as url, app_server(tmp, database_url=url) as server:
        async def seed(session: AsyncSession) -> None:
            from domains.events.services.events import EventForm, EventService
            from domains.events.services.options import save_options
            from domains.events.services.tickets import create_ticket_type

            event = await EventService(session).save(EventForm(
                title="Kiln night", tz="Europe/London", start_date=DAY.isoformat(), start_time="18:00",
                end_time="20:00", capacity="12"))
            await save_options(session, event, {"ask_dietary": False, "question": "Glaze colour?",
                                                "question_required": True, "cancel_until_hours": 24})
            for name, price, about in (("Standard", "1500", ""),
                                       ("Concession", "800", "Students and over-65s; bring proof at the door.")):
                await create_ticket_type(session, event, occurrence=KEY, name=name, price_minor=price,
                                         currency="EUR", description=about)

        server.in_process(seed)
        yield server


def test_buy_named_tickets_from_the_event_page(tickets_server: Any, tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium

    server = tickets_server
    with chromium(tmp_path, browser_binary) as page:
        page.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        page.goto(server.base_url + "/events/kiln-night")
        fits(page)
        inputs = page.eval("[...document.querySelectorAll('form[action=\"/events/kiln-night/tickets\"] "
                           "input[type=number]')].map(e => e.name)")
        assert len(inputs) == 2 and all(str(n).startswith("q-") for n in inputs)
        first = str(inputs[0])
        navigate(page, "form[action='/events/kiln-night/tickets'] button[type=submit]",
                 "location.pathname === '/events/kiln-night/tickets'")
        fits(page)
        ident = first[2:]
        assert page.eval(f"document.querySelectorAll('input[name^=\"a-{ident}-\"]').length") == 1
        page.eval(f"document.querySelector('input[name=\"a-{ident}-1\"]').value = 'Ada'")
        # htmx: two Concession tickets now; the form comes back with two name rows, Ada kept.
        page.eval(f"const q = document.querySelector('#q-{ident}'); q.value = '2';"
                  "q.dispatchEvent(new Event('change', {bubbles: true}))")
        page.wait_for(f"document.querySelectorAll('input[name^=\"a-{ident}-\"]').length === 2")
        assert page.eval(f"document.querySelector('input[name=\"a-{ident}-1\"]').value") == "Ada"
        assert page.eval("location.pathname") == "/events/kiln-night/tickets"
        page.eval(f"document.querySelector('input[name=\"a-{ident}-2\"]').value = 'Grace';"
                  "document.querySelector('#f-answer').value = 'Celadon'")
        navigate(page, "#buy-form button[type=submit]", "location.pathname === '/cart/'")
        body = str(page.eval("document.body.innerText"))
        assert "Kiln night: Concession ticket" in body and "For Ada, Grace" in body  # the cheaper one lists first
        fits(page)


def test_the_ticket_count_boxes_are_sized_for_a_count_on_wide_and_phone_screens(
        tickets_server: Any, tmp_path: Path, browser_binary: str) -> None:
    """A ticket count is at most two digits: at 1280 px its box is not stretched across the page
    (site.css makes fields full width) on the event page nor on the names page; at 390 px it still
    fits with its label. Screenshots go to ``<tmp_path>/screenshots`` (and $ROSE_ASH_SCREENSHOTS)."""
    from tests.helpers.browser import screenshot_at
    from tests.helpers.cdp import chromium

    boxes = "[...document.querySelectorAll('input[name^=\"q-\"]')]"
    with chromium(tmp_path, browser_binary) as page:
        for path, name in (("/events/kiln-night", "event"), ("/events/kiln-night/tickets", "names")):
            page.goto(tickets_server.base_url + path)
            for width, mobile in ((1280, False), (390, True)):
                screenshot_at(page, tmp_path / "screenshots" / f"tickets-{name}-{width}.png", width, mobile=mobile)
                page.call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1,
                          mobile=mobile)
                page.wait_for(f"matchMedia('(width: {width}px)').matches")
                sizes = page.eval(f"{boxes}.map(e => [e.getBoundingClientRect().width, "
                                  "e.closest('form').getBoundingClientRect().width])")
                assert len(sizes) == 2, (path, sizes)
                rem = float(page.eval("parseFloat(getComputedStyle(document.documentElement).fontSize)"))
                for box, form in sizes:
                    # Room for "10" and the spinner, and no wider than a short field.
                    assert 3 * rem <= box <= 8 * rem, (path, width, box, rem)
                    assert box < form / 2, (path, width, box, form)
                fits(page)
                page.call("Emulation.clearDeviceMetricsOverride")
