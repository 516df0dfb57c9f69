"""The member's dashboard (issue 18 item 8): ``/account`` shows the panels the installed domains
register as personal fragments (``me.dashboard-*``), inlined by the server; each is also a hole at
``/f/me/dashboard-*`` that is private to its member. ``/account/tickets`` lists a member's tickets.
Both databases."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from domains.account.models import User
from domains.account.newsletters.models import CONFIRMED, NewsletterList, Subscription
from domains.blog.models import DRAFT, Post, PostAuthor
from domains.cart.models import Order
from domains.events.booking_models import Booking, Position
from domains.events.models import Event
from domains.events.services.events import EventForm, EventService
from federation.activitypub.models import Notification
from forge.models import ForgeRepo
from tests.helpers.web import CSRF_FIELD, login, signup

pytestmark = pytest.mark.anyio

DAY = date.today() + timedelta(days=10)
PANELS = ("bookings", "notifications", "orders", "drafts", "repositories", "newsletters")


@pytest.fixture(autouse=True)
def patient_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generous fragment deadlines: a busy test machine must not turn panels into fallbacks (the
    fallback test makes its panel fail on purpose)."""
    import fragments.registry

    monkeypatch.setattr(fragments.registry, "TIMEOUT_FLOOR", 10.0)


async def _user(engine: AsyncEngine, username: str) -> User:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        return (await session.execute(select(User).where(User.username == username))).scalar_one()


async def _as(client: Any, username: str) -> None:
    client.cookies.clear()
    assert (await login(client, username)).status_code == 303


async def _alice_with_everything(client: Any, engine: AsyncEngine) -> User:
    """Alice (an author) with a booking, an order, a list, a repository, a draft and two unread
    notifications, each made the way its own domain stores it."""
    client.cookies.clear()
    assert (await signup(client, "alice")).status_code == 303
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        alice = (await session.execute(select(User).where(User.username == "alice"))).scalar_one()
        alice.is_author = True
        alice.email_verified_at = datetime.now(UTC)
        lst = NewsletterList(name="Co-op news", slug="co-op-news")
        session.add(lst)
        await session.flush()
        session.add(Subscription(list_id=lst.id, user_id=alice.id, email=alice.email, status=CONFIRMED))
        session.add(NewsletterList(name="Market days", slug="market-days"))
        session.add(Order(state="paid", number="RA-2026-000042", token=secrets.token_urlsafe(16), user_id=alice.id,
                          email=alice.email, currency="GBP", subtotal_minor=1250, total_minor=1250,
                          placed_at=datetime.now(UTC)))
        session.add(ForgeRepo(owner_id=alice.id, name="Seed-Library", lower_name="seed-library", is_private=True))
        post = Post(title="Half-written harvest notes", slug="harvest-notes", status=DRAFT)
        session.add(post)
        await session.flush()
        session.add(PostAuthor(post_id=post.id, author_id=alice.id))
        for kind in ("like", "follow"):
            session.add(Notification(user_id=alice.id, kind=kind, actor="https://remote.example/users/bob"))
    # The booking through the booking form, as a member makes one.
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        await EventService(session).save(EventForm(
            title="Bread workshop", tz="Europe/London", start_date=DAY.isoformat(), start_time="18:00",
            end_time="20:00", capacity="5"))
    page = await client.get("/events/bread-workshop/book")
    token = CSRF_FIELD.search(page.text)
    assert token
    booked = await client.post("/events/bread-workshop/book", data={
        "occurrence": f"{DAY:%Y%m%d}T180000", "quantity": "2", "name": "Alice", "email": "alice@example.org",
        "attendee_1": "Alice", "attendee_2": "Alex", "_csrf_token": token.group(1)})
    assert booked.status_code == 303, booked.text[:300]
    return await _user(engine, "alice")


def _directives(header: str) -> set[str]:
    return {part.strip() for part in header.split(",")}


def _panel(html: str, name: str) -> str:
    match = re.search(rf'<section class="card dashboard-panel" id="dashboard-{name}"[^>]*>(.*?)</section>', html, re.S)
    assert match, f"no {name} panel"
    return match.group(1)


async def test_dashboard_shows_each_domains_panel_and_one_sign_out(client: Any, engine: AsyncEngine) -> None:
    await _alice_with_everything(client, engine)
    page = await client.get("/account")
    assert page.status_code == 200
    assert _directives(page.headers["cache-control"]) == {"private", "no-store"}
    html = page.text
    # Inlined by the server (no hole left to fill), in the dashboard's order.
    found = re.findall(r'id="dashboard-([a-z-]+)"', html)
    assert found == list(PANELS)
    bookings = _panel(html, "bookings")
    assert "Bread workshop" in bookings and "Ticket: Alice" in bookings and "Ticket: Alex" in bookings
    assert re.search(r'href="/events/tickets/[A-Za-z0-9_-]{22,}"', bookings)
    assert 'href="/account/tickets"' in bookings
    orders = _panel(html, "orders")
    assert 'href="/account/orders/RA-2026-000042"' in orders and "12.50" in orders
    newsletters = _panel(html, "newsletters")
    assert "Co-op news" in newsletters and "Market days" not in newsletters and "1 more to join" in newsletters
    repos = _panel(html, "repositories")
    assert 'href="/forge/alice/Seed-Library"' in repos and "private" in repos
    assert 'href="/blog/admin/posts/' in _panel(html, "drafts")
    assert "Half-written harvest notes" in _panel(html, "drafts")
    assert re.search(r'<strong class="unread-count">2</strong> unread notifications', _panel(html, "notifications"))
    # One sign-out on the page (the header's account menu, filled here without JavaScript).
    assert html.count('action="/account/logout"') == 1
    assert 'hx-get="/f/me/account-menu"' not in html


async def test_personal_fragments_are_private_to_their_member(client: Any, engine: AsyncEngine) -> None:
    await _alice_with_everything(client, engine)
    mine = {}
    for name in PANELS:
        url = f"/f/me/dashboard-{name}"
        got = await client.get(url)
        assert got.status_code == 200, url
        assert got.headers["cache-control"] == "private, no-cache", url
        assert got.headers["vary"] == "Cookie", url
        assert "surrogate-key" not in got.headers and "set-cookie" not in got.headers, url
        assert got.headers["etag"].startswith('W/"'), url
        again = await client.get(url, headers={"If-None-Match": got.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", url
        assert again.headers["cache-control"] == "private, no-cache" and again.headers["vary"] == "Cookie"
        mine[name] = got.text
    assert "Seed-Library" in mine["repositories"] and "RA-2026-000042" in mine["orders"]

    # Another member sees none of it, and a different body (so a different validator).
    client.cookies.clear()
    assert (await signup(client, "brian")).status_code == 303
    for name in PANELS:
        theirs = await client.get(f"/f/me/dashboard-{name}")
        assert theirs.status_code == 200
        for secret in ("Seed-Library", "RA-2026-000042", "Bread workshop", "harvest", "Co-op news", "unread-count"):
            assert secret not in theirs.text, (name, secret)
    assert "No orders yet" in (await client.get("/f/me/dashboard-orders")).text
    # Brian is no author: no drafts panel at all.
    assert 'id="dashboard-drafts"' not in (await client.get("/account")).text

    # Anonymous: a sign-in link, never a 401 page, never anyone's data.
    client.cookies.clear()
    for name in PANELS:
        anon = await client.get(f"/f/me/dashboard-{name}")
        assert anon.status_code == 200
        assert anon.headers["cache-control"] == "private, no-cache"
        assert "Seed-Library" not in anon.text and "RA-2026" not in anon.text
    assert 'href="/account/login"' in (await client.get("/f/me/dashboard-bookings")).text


async def test_an_uninstalled_domain_adds_no_panel(client: Any, engine: AsyncEngine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import fragments.site

    await _alice_with_everything(client, engine)
    monkeypatch.setattr(fragments.site, "_installed", fragments.site._installed - {"forge", "social"})
    html = (await client.get("/account")).text
    assert re.findall(r'id="dashboard-([a-z-]+)"', html) == ["bookings", "orders", "drafts", "newsletters"]
    assert "Seed-Library" not in html


async def test_a_failing_panel_falls_back_to_a_link(client: Any, engine: AsyncEngine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from domains.cart.services import CartService

    await _alice_with_everything(client, engine)

    async def broken(self: Any, user_id: Any) -> list[Order]:
        raise RuntimeError("the orders table is on fire")

    monkeypatch.setattr(CartService, "orders_of", broken)
    page = await client.get("/account")
    assert page.status_code == 200
    orders = _panel(page.text, "orders")
    assert 'href="/account/orders/"' in orders and "RA-2026" not in orders
    assert "Bread workshop" in _panel(page.text, "bookings")  # the others still render


async def test_account_tickets_lists_upcoming_and_past(client: Any, engine: AsyncEngine) -> None:
    alice = await _alice_with_everything(client, engine)
    # A past date of another event, stored as the booking service stores one (it refuses to book the past).
    past_day = date.today() - timedelta(days=30)
    async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        event = await EventService(session).save(EventForm(
            title="Seed swap", tz="Europe/London", start_date=past_day.isoformat(), start_time="10:00",
            end_time="12:00", capacity="5"))
        booking = Booking(event_id=event.id, occurrence=f"{past_day:%Y%m%d}T100000", user_id=alice.id, name="Alice",
                          email=alice.email, quantity=1, state="confirmed")
        session.add(booking)
        await session.flush()
        session.add(Position(booking_id=booking.id, secret="past" + secrets.token_urlsafe(24), attendee="Alice"))
        # Someone else's ticket is never listed.
        other = Booking(event_id=event.id, occurrence=booking.occurrence, user_id=None, name="Zed",
                        email="zed@example.org", quantity=1, state="confirmed")
        session.add(other)
        await session.flush()
        session.add(Position(booking_id=other.id, secret="zed" + secrets.token_urlsafe(24), attendee="Zed"))
        assert isinstance(event, Event)

    page = await client.get("/account/tickets")
    assert page.status_code == 200
    assert _directives(page.headers["cache-control"]) == {"private", "no-store"}
    upcoming, _, past = page.text.partition('id="past-tickets"')
    assert upcoming.count("Bread workshop: ") == 2 and "Seed swap" not in upcoming
    assert "Seed swap: Alice" in past and f"{past_day:%B %Y}" in past and "Zed" not in page.text
    links = re.findall(r'href="/events/tickets/([^"]+)"', page.text)
    assert len(links) == 3
    for secret in links:  # each link is a ticket page that opens
        assert (await client.get(f"/events/tickets/{secret}")).status_code == 200

    client.cookies.clear()
    anon = await client.get("/account/tickets")
    assert anon.status_code in (302, 303, 401) and "Alice" not in anon.text
