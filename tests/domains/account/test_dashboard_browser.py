"""The member's dashboard in headless Chromium (issue 18 item 8), with JavaScript on and off, at
1280 and 390 CSS pixels: every installed domain's panel is there, filled by the server; there is
one Sign out button, and it signs out; nothing scrolls sideways. Screenshots go to
``<tmp_path>/screenshots`` (and to ``$ROSE_ASH_SCREENSHOTS`` when set, for a person to look at)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.browser import screenshot_at as screenshot
from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"
DAY = date.today() + timedelta(days=12)


def seed(server: AppServer) -> None:
    """An author with a booked workshop, a private repository and a draft."""
    server.create_user("dora", PASSWORD, author=True)

    async def work(session: AsyncSession) -> None:
        from domains.account.models import User
        from domains.blog.models import DRAFT, Post, PostAuthor
        from domains.events.services.bookings import Attendee, BookingService
        from domains.events.services.events import EventForm, EventService
        from forge.models import ForgeRepo

        dora = (await session.execute(select(User).where(User.username == "dora"))).scalar_one()
        event = await EventService(session).save(EventForm(
            title="Sourdough workshop", tz="Europe/London", start_date=DAY.isoformat(), start_time="18:00",
            end_time="20:00", capacity="12"))
        await BookingService(session, base_url=server.base_url).book(
            event, f"{DAY:%Y%m%d}T180000", user=dora, name="Dora", email="dora@example.org", quantity=1,
            attendees=[Attendee(name="Dora")])
        session.add(ForgeRepo(owner_id=dora.id, name="allotment-map", lower_name="allotment-map", is_private=True))
        post = Post(title="Notes from the seed swap", slug="seed-swap-notes", status=DRAFT)
        session.add(post)
        await session.flush()
        session.add(PostAuthor(post_id=post.id, author_id=dora.id))

    server.in_process(work)


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_dashboard_in_the_browser(tmp_path: Path, browser_binary: str, server_database_url: str | None,
                                  javascript: bool) -> None:
    from tests.helpers.cdp import chromium

    with app_server(tmp_path, database_url=server_database_url) as server, chromium(tmp_path, browser_binary) as page:
        seed(server)
        page.goto(server.base_url + "/account/login")
        page.eval("document.querySelector('input[name=login]').value = 'dora';"
                  f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
                  "document.querySelector('form[action=\"/account/login\"] button[type=submit]').click()")
        page.wait_for("location.pathname === '/account' && document.readyState === 'complete'")
        page.set_javascript(javascript)
        page.goto(server.base_url + "/account")
        if javascript:
            page.wait_for("window.htmx !== undefined")

        panels = page.eval("[...document.querySelectorAll('.dashboard-panel')].map(p => p.id)")
        assert panels == ["dashboard-bookings", "dashboard-notifications", "dashboard-orders", "dashboard-drafts",
                          "dashboard-repositories", "dashboard-newsletters"]
        text = page.eval("document.querySelector('main').innerText")
        assert "Sourdough workshop" in text and "Notes from the seed swap" in text and "allotment-map" in text
        ticket = page.eval("document.querySelector('#dashboard-bookings a[href^=\"/events/tickets/\"]').href")
        assert ticket.startswith(server.base_url + "/events/tickets/")
        # One Sign out button on the whole page, visible (the header's), with or without JavaScript.
        buttons = "[...document.querySelectorAll('button')].filter(b => b.textContent.trim() === 'Sign out')"
        assert page.eval(f"{buttons}.length") == 1
        assert page.eval(f"{buttons}[0].closest('header') !== null && {buttons}[0].offsetParent !== null")

        for width, mobile in ((1280, False), (390, True)):
            screenshot(page, tmp_path / "screenshots" / f"dashboard-{'js' if javascript else 'nojs'}-{width}.png",
                       width, mobile=mobile)
            assert page.eval(f"{buttons}.length") == 1

        # The ticket link from the panel opens the ticket; /account/tickets lists it too.
        page.goto(server.base_url + "/account/tickets")
        assert page.eval("document.querySelector('h1').textContent") == "Your tickets"
        assert page.eval(f"document.querySelector('a[href=\"{ticket.removeprefix(server.base_url)}\"]') !== null")
        page.goto(ticket)
        assert "Sourdough workshop" in page.eval("document.body.innerText")

        # The one button signs out.
        page.goto(server.base_url + "/account")
        page.eval(f"{buttons}[0].click()")
        page.wait_for("location.pathname === '/account/login' && document.readyState === 'complete'")
        page.goto(server.base_url + "/account")
        page.wait_for("location.pathname === '/account/login'")
