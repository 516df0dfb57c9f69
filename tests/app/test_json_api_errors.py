"""Every JSON API answers a body it cannot read with a 4xx in its own error shape, never the HTML
error page and never a 500: malformed JSON, bytes that are not UTF-8, a body that is not JSON at
all. The shapes: problem+json (market, cart, events' bookings), problem+json with Gitea's
``{"message", "url"}`` (the forge's /api/v1), Mastodon's ``{"error"}``, and for Pretix's check-in
API (outside /api/ by Pretix's path) problem+json, whose ``detail`` is the key Pretix's own
(Django REST framework) errors carry and its scanning apps show."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.federation.mastodon_api.test_mastodon_api import sign_in

pytestmark = pytest.mark.anyio

JSON = "application/json"
# (what is wrong, the body, its Content-Type)
BAD_BODIES = [
    ("malformed JSON", b'{"secret": "abc", ', JSON),
    ("not UTF-8", b'{"secret": "caf\xe9", "name": "caf\xe9"}', JSON),
    ("not UTF-8 outside a string", b'{"secret": \xff}', JSON),
    ("JSON of the wrong type", b'["secret"]', JSON),
    ("text, not JSON", b'{"secret": "abc"}', "text/plain"),
    ("a form, not JSON", b"secret=abc", "application/x-www-form-urlencoded"),
]
# Mastodon reads forms as well as JSON (clients post both) and, as Mastodon does, reads a body of
# another type as no parameters: posting a status then fails its validation (422, in its shape),
# updating the profile changes nothing (200).
MASTODON_IGNORED = {"text, not JSON", "a form, not JSON"}

ENDPOINTS = [
    pytest.param("POST", "/events/bread-workshop/checkin/redeem", "pretix", id="pretix-redeem"),
    pytest.param("POST", "/api/events/bread-workshop/bookings", "problem", id="events-bookings"),
    pytest.param("POST", "/api/cart/lines", "problem", id="cart-lines"),
    pytest.param("PATCH", "/api/cart/lines/0", "problem", id="cart-line"),
    pytest.param("POST", "/api/market/products", "problem", id="market-products"),
    pytest.param("POST", "/api/market/stock", "problem", id="market-stock"),
    pytest.param("POST", "/api/v1/user/repos", "gitea", id="forge-create-repo"),
    pytest.param("PATCH", "/api/v1/repos/ada/proj", "gitea", id="forge-edit-repo"),
    pytest.param("POST", "/api/v1/repos/migrate", "gitea", id="forge-migrate"),
    pytest.param("POST", "/api/v1/statuses", "mastodon", id="mastodon-statuses"),
    pytest.param("PATCH", "/api/v1/accounts/update_credentials", "mastodon", id="mastodon-credentials"),
    pytest.param("POST", "/api/v1/apps", "mastodon", id="mastodon-apps"),
]


async def _member_token(db: AsyncSession) -> str:
    """An administrator's personal token with every scope these APIs ask for."""
    from domains.account.schemas import SignupInput
    from domains.account.services import AccountService, TokenService

    user = await AccountService(db).signup(SignupInput(
        username="ada", email="ada@example.org", password="correct horse battery staple"))
    user.is_admin = True  # the door staff: the redeem API answers 404 to anybody else
    _row, secret = await TokenService(db).issue(user, "all", ["repo:write", "api", "market", "events"])
    await db.commit()
    return secret


def assert_error_shape(response: Any, shape: str, what: str) -> None:
    said = f"{what}: {response.status_code} {response.headers.get('content-type')} {response.text[:200]!r}"
    assert 400 <= response.status_code < 500, said
    media = response.headers["content-type"].split(";")[0]
    body = response.json()
    if shape == "mastodon":
        assert media == JSON and set(body) == {"error"} and body["error"], said
        return
    assert media == "application/problem+json", said
    assert body["status"] == response.status_code and body["detail"] and body["title"], said
    if shape == "gitea":  # Gitea's APIError, which its typed clients (tea, go-sdk) decode
        assert body["message"] == body["detail"] and body["url"].endswith("/api/swagger"), said


@pytest.mark.parametrize(("method", "path", "shape"), ENDPOINTS)
async def test_an_unreadable_body_gets_the_apis_own_4xx(client: Any, db_session: AsyncSession, method: str,
                                                        path: str, shape: str) -> None:
    from domains.events.booking_models import CheckIn

    token = await sign_in(client, "bob") if shape == "mastodon" else await _member_token(db_session)
    for what, body, content_type in BAD_BODIES:
        response = await client.request(method, path, content=body,
                                        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"})
        if shape == "mastodon" and what in MASTODON_IGNORED:
            assert response.status_code in (200, 422) and response.headers["content-type"] == JSON, what
            if response.status_code == 422:
                assert_error_shape(response, shape, what)
            continue
        assert_error_shape(response, shape, what)
        detail = response.json()["error" if shape == "mastodon" else "detail"]
        if what.startswith("not UTF-8"):
            assert "UTF-8" in detail, detail
        elif what == "malformed JSON":
            assert "not valid JSON" in detail, detail
        elif content_type != JSON:
            assert response.status_code == 415 and JSON in detail, detail
    await db_session.rollback()  # see what the app committed: nothing
    assert (await db_session.execute(select(func.count()).select_from(CheckIn))).scalar_one() == 0


async def test_the_redeem_apis_other_errors_are_json_too(client: Any, db_session: AsyncSession) -> None:
    """Pretix's API answers every error in JSON; so does ours, whatever the Accept header says."""
    token = await _member_token(db_session)
    url = "/events/no-such-event/checkin/redeem"
    bearer = {"Authorization": f"Bearer {token}"}
    for accept in ("*/*", "text/html,application/xhtml+xml"):  # a browser-ish Accept still gets JSON
        missing = await client.post(url, json={"secret": "x"}, headers={**bearer, "Accept": accept})
        assert missing.status_code == 404
        assert_error_shape(missing, "pretix", "no such event")
        anonymous = await client.post(url, json={"secret": "x"}, headers={"Accept": accept})
        assert anonymous.status_code == 401
        assert_error_shape(anonymous, "pretix", "no token")
        invalid = await client.post(url, json={"secret": "x", "type": "sideways"}, headers={**bearer, "Accept": accept})
        assert invalid.status_code == 400 and "type" in str(invalid.json().get("errors"))
        assert_error_shape(invalid, "pretix", "a type Pretix does not know")
    # The door page beside it is a person's (session) route: still sent to sign in, not given JSON.
    page = await client.get("/events/no-such-event/checkin", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/account/login")
