"""Personal access tokens: created once-visible, stored hashed, scoped, revocable."""

from __future__ import annotations

import base64
import re

import pytest
from sqlalchemy import select, text

from domains.account.models import AccessToken
from tests.helpers.web import post_form, signup

pytestmark = pytest.mark.anyio

TOKEN_RE = re.compile(r'<code class="secret" id="new-token">(rat_[A-Za-z0-9_-]+)</code>')


async def create_token(client, name: str = "laptop", scopes: tuple[str, ...] = ("api",)) -> str:  # type: ignore[no-untyped-def]
    response = await post_form(client, "/account/settings/tokens", {"name": name, "scopes": list(scopes)},
                               page="/account/settings/tokens")
    assert response.status_code == 303
    page = await client.get("/account/settings/tokens")
    match = TOKEN_RE.search(page.text)
    assert match, "the new token is shown on the page after creation"
    # Shown once: the next visit no longer has it.
    again = await client.get("/account/settings/tokens")
    assert match.group(1) not in again.text
    return match.group(1)


async def test_token_is_shown_once_and_stored_hashed(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "alice")
    secret = await create_token(client, "laptop", ("api", "repo:read"))
    rows = (await db_session.execute(text("SELECT * FROM account_access_token"))).mappings().all()
    assert len(rows) == 1
    assert secret not in str(dict(rows[0]))
    token = (await db_session.execute(select(AccessToken))).scalar_one()
    assert token.scopes == ["api", "repo:read"]
    page = await client.get("/account/settings/tokens")
    assert "laptop" in page.text and token.token_hint in page.text


@pytest.mark.parametrize("scheme", ["token", "Bearer", "Basic"])
async def test_token_authenticates_api_calls(client, scheme: str) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "bob")
    secret = await create_token(client)
    client.cookies.clear()
    value = base64.b64encode(f"bob:{secret}".encode()).decode() if scheme == "Basic" else secret
    response = await client.get("/api/v1/user", headers={"Authorization": f"{scheme} {value}"})
    assert response.status_code == 200
    assert response.json()["username"] == "bob"


async def test_api_ignores_session_cookie_and_rejects_bad_tokens(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "carol")
    # Signed in by cookie, but the API only honours tokens (it is CSRF-exempt).
    anonymous = await client.get("/api/v1/user")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    bogus = await client.get("/api/v1/user", headers={"Authorization": "token rat_not-a-real-token"})
    assert bogus.status_code == 401
    assert "basic" in bogus.headers.get("www-authenticate", "").lower()
    garbage = await client.get("/api/v1/user", headers={"Authorization": "Basic !!!notbase64"})
    assert garbage.status_code == 401


async def test_token_without_scope_is_forbidden(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "dave")
    secret = await create_token(client, "git only", ("repo:read",))
    response = await client.get("/api/v1/user", headers={"Authorization": f"token {secret}"})
    assert response.status_code == 403
    assert "api" in response.json()["detail"]


async def test_revoked_token_stops_working(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "erin")
    secret = await create_token(client)
    assert (await client.get("/api/v1/user", headers={"Authorization": f"token {secret}"})).status_code == 200
    token = (await db_session.execute(select(AccessToken))).scalar_one()
    revoked = await post_form(client, f"/account/settings/tokens/{token.id}/revoke", {},
                              page="/account/settings/tokens")
    assert revoked.status_code == 303
    assert (await client.get("/api/v1/user", headers={"Authorization": f"token {secret}"})).status_code == 401
    twice = await post_form(client, f"/account/settings/tokens/{token.id}/revoke", {},
                            page="/account/settings/tokens")
    assert twice.status_code == 404
    page = await client.get("/account/settings/tokens")
    assert "revoked" in page.text


async def test_cannot_revoke_someone_elses_token(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "frank")
    secret = await create_token(client)
    token = (await db_session.execute(select(AccessToken))).scalar_one()
    client.cookies.clear()
    await signup(client, "grace")
    response = await post_form(client, f"/account/settings/tokens/{token.id}/revoke", {},
                               page="/account/settings/tokens")
    assert response.status_code == 404
    assert (await client.get("/api/v1/user", headers={"Authorization": f"token {secret}"})).status_code == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "scopes": ["api"]}, "Give the token a name"),
        ({"name": "x"}, "Choose at least one scope"),
        ({"name": "x", "scopes": ["root"]}, "Unknown scope"),
    ],
)
async def test_token_form_bad_input(client, db_session, data, message) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "heidi")
    response = await post_form(client, "/account/settings/tokens", data, page="/account/settings/tokens")
    assert response.status_code == 422
    assert message in response.text
    assert (await db_session.execute(select(AccessToken))).first() is None
