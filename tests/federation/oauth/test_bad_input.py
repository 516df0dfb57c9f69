"""The issue's bad-input list: each answered with the exact RFC error and status, nothing issued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.oauth.models import OAuthAuthorizationCode, OAuthToken
from tests.federation.oauth.helpers import (
    REDIRECT,
    authorize_params,
    exchange,
    get_code,
    make_client,
    pkce,
    query_of,
)
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio


async def token_count(db: AsyncSession) -> int:
    await db.rollback()  # see the app's committed writes
    return int((await db.execute(select(func.count()).select_from(OAuthToken))).scalar_one())


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example.test/callback",
    REDIRECT + "/extra",
    REDIRECT + "?x=1",
    REDIRECT.replace("https", "http"),
    REDIRECT + "/",
])
async def test_wrong_redirect_uri_is_never_redirected_to(client: Any, db_session: AsyncSession,
                                                        redirect_uri: str) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    _v, challenge = pkce()
    params = {**authorize_params(rp, challenge), "redirect_uri": redirect_uri}
    response = await client.get("/oauth/authorize", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert 'id="oauth-error">invalid_request<' in response.text
    assert await token_count(db_session) == 0


async def test_unknown_client_is_not_redirected(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    _v, challenge = pkce()
    params = {**authorize_params(rp, challenge), "client_id": "no-such-client"}
    response = await client.get("/oauth/authorize", params=params)
    assert response.status_code == 400 and "location" not in response.headers
    assert 'id="oauth-error">invalid_client<' in response.text


async def test_a_client_id_with_a_nul_is_a_400(client: Any, db_session: AsyncSession) -> None:
    # PostgreSQL refuses NUL in text: the client lookup answered 500 on every endpoint that takes a client_id.
    await signup(client, "alice")
    rp = await make_client(db_session)
    _v, challenge = pkce()
    # A NUL in a query or form is malformed input, refused before any handler (app/strict_input.py).
    response = await client.get("/oauth/authorize", params={**authorize_params(rp, challenge), "client_id": "a\x00b"})
    assert response.status_code == 400 and "location" not in response.headers
    assert "NUL" in response.text
    for path in ("/oauth/logout", "/oauth/logout/confirm"):
        assert (await client.get(path, params={"client_id": "a\x00b"})).status_code == 400, path
    revoked = await client.post("/oauth/revoke", data={"client_id": "a\x00b", "token": "x"})
    assert revoked.status_code == 400, revoked.status_code
    assert await token_count(db_session) == 0


@pytest.mark.parametrize(("change", "error"), [
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"scope": "openid admin:everything"}, "invalid_scope"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
async def test_bad_authorization_requests_redirect_with_error(client: Any, db_session: AsyncSession,
                                                              change: dict[str, str | None], error: str) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    _v, challenge = pkce()
    params = {**authorize_params(rp, challenge), **change}
    params = {k: v for k, v in params.items() if v is not None}
    response = await client.get("/oauth/authorize", params=params)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = query_of(location)
    assert query["error"] == error and query["state"] == "st-123"
    assert query["iss"] == "http://127.0.0.1:8000" and "code" not in query
    assert (await db_session.execute(select(func.count()).select_from(OAuthAuthorizationCode))).scalar_one() == 0


async def test_missing_pkce_verifier(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    for public in (False, True):  # PKCE is required of confidential clients too
        rp = await make_client(db_session, public=public)
        code, _verifier = await get_code(client, rp)
        response = await exchange(client, rp, code, None)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert "access_token" not in response.json()
    assert await token_count(db_session) == 0


async def test_wrong_pkce_verifier(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    code, _verifier = await get_code(client, rp)
    other, _ = pkce()
    response = await exchange(client, rp, code, other)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert await token_count(db_session) == 0


async def test_replayed_code_fails_and_revokes_what_the_first_issued(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    first = await exchange(client, rp, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    again = await exchange(client, rp, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "access_token" not in again.json()
    assert await token_count(db_session) == 1
    introspected = await client.post("/oauth/introspect", data={"token": tokens["access_token"]}, auth=rp.basic)
    assert introspected.json() == {"active": False}
    refresh = await client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                      "refresh_token": tokens["refresh_token"]}, auth=rp.basic)
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    api = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert api.status_code == 401


async def test_expired_code(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    await db_session.execute(update(OAuthAuthorizationCode).values(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    await db_session.commit()
    response = await exchange(client, rp, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert await token_count(db_session) == 0


async def test_code_bound_to_client_and_redirect_uri(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session, redirect_uris=[REDIRECT, REDIRECT + "2"])
    other = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    stolen = await exchange(client, other, code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    wrong_uri = await client.post("/oauth/token", auth=rp.basic, data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT + "2"})
    assert wrong_uri.status_code == 400 and wrong_uri.json()["error"] == "invalid_grant"
    assert await token_count(db_session) == 0


async def test_wrong_client_secret(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    response = await client.post("/oauth/token", auth=(rp.client_id, "ros_wrong"), data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": rp.redirect_uri})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    post = await client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": rp.client_id, "client_secret": "ros_wrong"})
    assert post.status_code == 401 and post.json()["error"] == "invalid_client"
    introspect = await client.post("/oauth/introspect", data={"token": "x"}, auth=(rp.client_id, "bad"))
    assert introspect.status_code == 401 and introspect.json()["error"] == "invalid_client"
    assert await token_count(db_session) == 0
    # The code was not spent by the failed attempt's client.
    ok = await exchange(client, rp, code, verifier)
    assert ok.status_code == 200


async def test_unknown_scope_at_the_token_endpoint(client: Any, db_session: AsyncSession) -> None:
    rp = await make_client(db_session)
    response = await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "root"},
                                 auth=rp.basic)
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    narrow = await make_client(db_session, scope="openid")
    not_allowed = await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "api"},
                                    auth=narrow.basic)
    assert not_allowed.status_code == 400 and not_allowed.json()["error"] == "invalid_scope"
    assert await token_count(db_session) == 0


async def test_reused_refresh_token(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    tokens = (await exchange(client, rp, code, verifier)).json()
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert (await client.post("/oauth/token", data=data, auth=rp.basic)).status_code == 200
    before = await token_count(db_session)
    reused = await client.post("/oauth/token", data=data, auth=rp.basic)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert await token_count(db_session) == before
    live = (await db_session.execute(select(func.count()).select_from(OAuthToken)
                                     .where(OAuthToken.revoked_at.is_(None)))).scalar_one()
    assert live == 0


async def test_no_implicit_or_password_grant(client: Any, db_session: AsyncSession) -> None:
    rp = await make_client(db_session)
    password = await client.post("/oauth/token", auth=rp.basic, data={
        "grant_type": "password", "username": "alice", "password": "correct horse battery staple"})
    assert password.status_code == 400 and password.json()["error"] == "unsupported_grant_type"
    assert await token_count(db_session) == 0


async def test_prune_keeps_live_and_rotated_refresh_tokens(client: Any, db_session: AsyncSession) -> None:
    from federation.oauth.store import OAuthStore

    await signup(client, "alice")
    rp = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    tokens = (await exchange(client, rp, code, verifier)).json()
    await db_session.rollback()
    await db_session.execute(update(OAuthAuthorizationCode).values(
        expires_at=datetime.now(UTC) - timedelta(days=2)))
    await db_session.execute(update(OAuthToken).values(access_expires_at=datetime.now(UTC) - timedelta(days=2)))
    await db_session.commit()
    assert await OAuthStore(db_session).prune() == (1, 0)  # the refresh token still lives
    await db_session.execute(update(OAuthToken).values(refresh_expires_at=datetime.now(UTC) - timedelta(days=2)))
    assert await OAuthStore(db_session).prune() == (0, 1)
    await db_session.commit()
    dead = await client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                   "refresh_token": tokens["refresh_token"]}, auth=rp.basic)
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
@pytest.mark.parametrize("body", [b'{"grant_type": "authorization_code",', b'["grant_type"]', b'"\xff\xfe"', b"\xff{}"])
async def test_an_unreadable_json_body_is_invalid_request(client: Any, db_session: AsyncSession, path: str,
                                                         body: bytes) -> None:
    """RFC 6749 §5.2: the machine endpoints answer in their own error shape, never problem+json or
    HTML, and nothing is issued."""
    before = await token_count(db_session)
    got = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert got.status_code == 400
    assert got.headers["content-type"].startswith("application/json")
    assert got.json()["error"] == "invalid_request" and got.json()["error_description"]
    assert got.headers["cache-control"] == "no-store"
    assert await token_count(db_session) == before
