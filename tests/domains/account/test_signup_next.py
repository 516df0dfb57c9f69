"""Signing up or in from a page comes back to it (the header's links carry ``?next=``), and only to
a same-site path: anything else lands on the account page (no open redirect)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.helpers.web import post_form

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"


async def _signup(client: Any, name: str, next_: str) -> Any:
    return await post_form(client, "/account/signup", {
        "username": name, "email": f"{name}@example.org", "password": PASSWORD, "next": next_},
        page=f"/account/signup?next={next_}")


async def test_sign_up_returns_to_the_page_it_came_from(client: Any) -> None:
    form = await client.get("/account/signup?next=/cart/checkout")
    assert form.status_code == 200
    assert '<input type="hidden" name="next" value="/cart/checkout">' in form.text
    assert 'href="/account/login?next=/cart/checkout"' in form.text
    done = await _signup(client, "carol", "/cart/checkout")
    # by the private welcome page (the page signed up from may be public and cached: no flash there)
    assert done.status_code == 303 and done.headers["location"] == "/account/welcome?next=/cart/checkout"
    welcome = await client.get(done.headers["location"])
    assert welcome.status_code == 200 and "no-store" in welcome.headers["cache-control"]
    assert '<a class="button" href="/cart/checkout">Continue where you were</a>' in welcome.text
    assert "Welcome to" in welcome.text and "carol@example.org" in welcome.text


@pytest.mark.parametrize("bad", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "cart"])
async def test_sign_up_never_goes_off_site(client: Any, bad: str) -> None:
    form = await client.get("/account/signup", params={"next": bad})
    assert 'name="next"' not in form.text
    done = await _signup(client, "dave", bad)
    assert done.status_code == 303 and done.headers["location"] == "/account"


async def test_a_refused_sign_up_keeps_where_to_go(client: Any) -> None:
    short = await post_form(client, "/account/signup", {"username": "erin", "email": "erin@example.org",
                                                        "password": "short", "next": "/events/"},
                            page="/account/signup")
    assert short.status_code == 422
    assert '<input type="hidden" name="next" value="/events/">' in short.text


async def test_the_sign_in_page_offers_sign_up_with_the_same_destination(client: Any) -> None:
    page = await client.get("/account/login?next=/cart/checkout")
    assert 'href="/account/signup?next=/cart/checkout"' in page.text
    plain = await client.get("/account/login")
    assert 'href="/account/signup"' in plain.text


async def test_the_welcome_reaches_a_member_who_signed_up_from_a_public_page(client: Any) -> None:
    """Signed up from an event's page (public, cached: it never shows a flash): the welcome page says
    it, with and without JavaScript, and links back; the public page stays cacheable."""
    done = await _signup(client, "fran", "/events/?tag=music")
    assert done.headers["location"] == "/account/welcome?next=/events/%3Ftag%3Dmusic"
    welcome = await client.get(done.headers["location"])
    assert 'href="/events/?tag=music">Continue where you were</a>' in welcome.text
    assert "fran@example.org" in welcome.text and "@fran" in welcome.text
    # no flash was queued for a later page: the menu's hole has none to deliver
    menu = await client.get("/f/me/account-menu", headers={"HX-Request": "true"})
    assert menu.status_code == 200 and "@fran" in menu.text and 'id="toasts"' not in menu.text
    home = await client.get("/")
    assert "set-cookie" not in home.headers and home.headers["cache-control"].startswith("public")
    assert 'class="flash' not in home.text


@pytest.mark.parametrize("bad", ["//evil.example/x", "https://evil.example/", "javascript:alert(1)", ""])
async def test_the_welcome_page_links_only_on_site(client: Any, bad: str) -> None:
    await _signup(client, "gina", "")
    page = await client.get("/account/welcome", params={"next": bad})
    assert page.status_code == 200 and '<a class="button" href="/account">Go to your account</a>' in page.text
    assert "evil" not in page.text and "javascript:" not in page.text


async def test_the_welcome_page_is_for_members(client: Any) -> None:
    page = await client.get("/account/welcome?next=/events/")
    assert page.status_code in (302, 303) and page.headers["location"].startswith("/account/login")


async def test_a_flash_queued_before_a_public_page_arrives_in_the_menu_hole_once(client: Any) -> None:
    """Signing up without ``next`` flashes on the dashboard (private: it shows it itself, and the
    menu's hole then has nothing to add); signing in from a public page flashes "Signed in" and
    lands there: the account menu's htmx hole swaps the message into the toast region, once."""
    done = await _signup(client, "hugo", "")
    assert done.headers["location"] == "/account"
    dashboard = await client.get("/account")
    assert "Welcome to" in dashboard.text
    menu = await client.get("/f/me/account-menu", headers={"HX-Request": "true"})
    assert 'id="toasts"' not in menu.text
    await post_form(client, "/account/logout", {}, page="/account")
    signed_in = await post_form(client, "/account/login", {"login": "hugo", "password": PASSWORD,
                                                           "next": "/events/"}, page="/account/login")
    assert signed_in.headers["location"] == "/events/"
    events = await client.get("/events/")
    assert "Signed in as" not in events.text and "set-cookie" not in events.headers  # public stays public
    menu = await client.get("/f/me/account-menu", headers={"HX-Request": "true"})
    assert re.search(r'<div id="toasts" class="toasts" role="status" hx-swap-oob="true">'
                     r'<p class="flash flash-success">Signed in as hugo\.</p></div>', menu.text), menu.text
    assert "@hugo" in menu.text
    again = await client.get("/f/me/account-menu", headers={"HX-Request": "true"})
    assert 'id="toasts"' not in again.text  # once
