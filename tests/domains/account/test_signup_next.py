"""Signing up or in from a page comes back to it (the header's links carry ``?next=``), and only to
a same-site path: anything else lands on the account page (no open redirect)."""

from __future__ import annotations

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
    assert done.status_code == 303 and done.headers["location"] == "/cart/checkout"


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
