"""Dynamic registration (RFC 7591), RP-initiated logout, the admin and account pages, the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from tests.federation.oauth.helpers import CSRF_FIELD, Client, exchange, get_code, make_client, query_of
from tests.helpers.web import login, post_form, signup

pytestmark = pytest.mark.anyio


async def make_admin(client: Any, db_session: AsyncSession, username: str = "rooty") -> None:
    await signup(client, username)
    await db_session.execute(update(User).where(User.username == username).values(is_admin=True))
    await db_session.commit()


async def test_dynamic_registration_then_sign_in(client: Any, db_session: AsyncSession) -> None:
    meta = (await client.get("/.well-known/openid-configuration")).json()
    assert meta["registration_endpoint"] == "http://127.0.0.1:8000/oauth/register"
    created = await client.post("/oauth/register", json={
        "client_name": "Pocket app", "redirect_uris": ["com.example.pocket:/cb"],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert "client_secret" not in body and body["token_endpoint_auth_method"] == "none"

    await signup(client, "alice")
    rp = Client(body["client_id"], None, "com.example.pocket:/cb")
    code, verifier = await get_code(client, rp, scope="openid profile")
    tokens = await exchange(client, rp, code, verifier)
    assert tokens.status_code == 200 and tokens.json()["refresh_token"]

    confidential = await client.post("/oauth/register", json={"redirect_uris": ["https://app.example.test/cb"]})
    assert confidential.status_code == 201 and confidential.json()["client_secret"].startswith("ros_")


@pytest.mark.parametrize(("metadata", "error"), [
    ({"redirect_uris": ["http://app.example.test/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://app.example.test/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://a.test/cb"], "grant_types": ["implicit"]}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://a.test/cb"], "grant_types": ["password"]}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://a.test/cb"], "response_types": ["token"]}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://a.test/cb"], "scope": "openid everything"}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://a.test/cb"], "token_endpoint_auth_method": "none",
      "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
])
async def test_registration_refuses_bad_metadata(client: Any, metadata: dict[str, Any], error: str) -> None:
    response = await client.post("/oauth/register", json=metadata)
    assert response.status_code == 400 and response.json()["error"] == error


async def test_registration_is_rate_limited(client: Any, settings: Any, db_session: AsyncSession) -> None:
    for _ in range(settings.oauth_registration_rate_limit):
        ok = await client.post("/oauth/register", json={"redirect_uris": ["https://a.test/cb"]})
        assert ok.status_code == 201
    limited = await client.post("/oauth/register", json={"redirect_uris": ["https://a.test/cb"]})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0 and "client_id" not in limited.text
    from federation.oauth.models import OAuthClient

    db_session.expire_all()
    made = (await db_session.execute(select(func.count()).select_from(OAuthClient))).scalar_one()
    assert made == settings.oauth_registration_rate_limit  # the refused one registered nothing


async def test_admin_can_turn_registration_off_and_manage_clients(client: Any, db_session: AsyncSession) -> None:
    await make_admin(client, db_session)
    page = await client.get("/oauth/admin/clients/")
    assert page.status_code == 200
    off = await post_form(client, "/oauth/admin/clients/registration", {}, page="/oauth/admin/clients/")
    assert off.status_code == 303
    assert (await client.post("/oauth/register", json={"redirect_uris": ["https://a.test/cb"]})).status_code == 403
    assert "registration_endpoint" not in (await client.get("/.well-known/openid-configuration")).json()

    created = await post_form(client, "/oauth/admin/clients/", {
        "name": "Blog", "redirect_uris": "https://blog.example.test/cb\n", "scopes": ["openid", "profile"],
        "first_party": "on", "alg": "EdDSA"}, page="/oauth/admin/clients/")
    assert created.status_code == 303
    shown = await client.get(created.headers["location"])
    assert 'id="new-client-secret"' in shown.text and "Blog" in shown.text
    assert 'id="new-client-secret"' not in (await client.get(created.headers["location"])).text  # shown once

    bad = await post_form(client, "/oauth/admin/clients/", {
        "name": "Bad", "redirect_uris": "http://evil.example.test/cb", "scopes": ["openid"]},
        page="/oauth/admin/clients/")
    assert bad.status_code == 422

    edited = await post_form(client, created.headers["location"], {
        "name": "Blog 2", "redirect_uris": "https://blog.example.test/cb", "scopes": ["openid"], "alg": "RS256",
        "disabled": "on"}, page=created.headers["location"])
    assert edited.status_code == 303
    assert "Blog 2" in (await client.get("/oauth/admin/clients/")).text


async def test_members_cannot_reach_the_admin_pages(client: Any) -> None:
    await signup(client, "alice")
    assert (await client.get("/oauth/admin/clients/")).status_code == 403


async def test_rp_initiated_logout_with_id_token_hint(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session, first_party=True, post_logout_redirect_uris=["https://rp.example.test/bye"])
    code, verifier = await get_code(client, rp)
    id_token = (await exchange(client, rp, code, verifier)).json()["id_token"]
    response = await client.get("/oauth/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": "https://rp.example.test/bye", "state": "s1"})
    assert response.status_code == 303
    assert response.headers["location"] == "https://rp.example.test/bye?state=s1"
    assert (await client.get("/account")).status_code == 303  # signed out: sent to the sign-in page


async def test_logout_without_hint_asks_and_never_redirects_to_unregistered_uri(
        client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session, post_logout_redirect_uris=["https://rp.example.test/bye"])
    redirected = await client.get("/oauth/logout", params={"client_id": rp.client_id,
                                                           "post_logout_redirect_uri": "https://evil.test/"})
    assert redirected.status_code == 303 and "evil" not in redirected.headers["location"]
    asked = await client.get(redirected.headers["location"])
    assert asked.status_code == 200 and 'action="/oauth/logout/confirm"' in asked.text
    match = CSRF_FIELD.search(asked.text)
    assert match
    done = await client.post("/oauth/logout/confirm", data={"_csrf_token": match.group(1),
                                                            "redirect_uri": "https://evil.test/"})
    assert done.status_code == 200 and "You are signed out" in done.text
    assert (await client.get("/account")).status_code == 303


async def test_account_applications_page_and_revoke(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    tokens = (await exchange(client, rp, code, verifier)).json()
    page = await client.get("/account/settings/applications")
    assert page.status_code == 200 and "Test RP" in page.text and "See your email address" in page.text
    import re

    action = re.search(r'action="(/account/settings/applications/[^"]+/revoke)"', page.text)
    assert action
    # Without JavaScript the Revoke button opens a confirmation page, whose form carries the CSRF token.
    confirm = await client.get(action.group(1))
    assert confirm.status_code == 200 and "Revoke access for “Test RP”?" in confirm.text
    revoked = await post_form(client, action.group(1), {}, page=action.group(1))
    assert revoked.status_code == 303
    api = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert api.status_code == 401
    # Consent is forgotten: the next authorization asks again.
    from tests.federation.oauth.helpers import authorize_params, pkce

    _v, challenge = pkce()
    again = await client.get("/oauth/authorize", params=authorize_params(rp, challenge))
    assert again.status_code == 200 and 'name="decision"' in again.text
    await login(client, "alice")


def test_cli_create_client_prints_json(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from app import create_app
    from app.settings import Settings
    from federation.oauth.cli import oauth_group

    settings = Settings.from_env({}, data_dir=tmp_path, secret_key="cli-secret-key-0123456789abcdef")
    app = create_app(settings)

    import asyncio

    from advanced_alchemy.base import metadata_registry

    from app.db import make_engine

    async def create_tables() -> None:
        engine = make_engine(settings.database_url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata_registry.get(None).create_all)
        await engine.dispose()

    asyncio.run(create_tables())

    class Obj:
        pass

    obj = Obj()
    obj.app = app  # type: ignore[attr-defined]
    runner = CliRunner()
    result = runner.invoke(oauth_group, ["create-client", "--name", "N", "--redirect-uri", "https://n.test/cb",
                                         "--public"], obj=obj)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["client_secret"] is None and data["token_endpoint_auth_method"] == "none"
    result = runner.invoke(oauth_group, ["create-client", "--name", "C", "--redirect-uri", "https://n.test/cb"],
                           obj=obj)
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["client_secret"].startswith("ros_") and "client_credentials" in data["grant_types"]
    bad = runner.invoke(oauth_group, ["create-client", "--name", "B", "--redirect-uri", "http://evil.test/cb"],
                        obj=obj)
    assert bad.exit_code == 1
    assert query_of("https://x.test/?a=1") == {"a": "1"}


async def test_logout_by_post_goes_to_the_confirmation_page(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session, post_logout_redirect_uris=["https://rp.example.test/bye"])
    response = await client.post("/oauth/logout", data={"client_id": rp.client_id, "state": "x",
                                                        "post_logout_redirect_uri": "https://rp.example.test/bye"})
    assert response.status_code == 303 and response.headers["location"].startswith("/oauth/logout/confirm?")
    asked = await client.get(response.headers["location"])
    assert asked.status_code == 200 and CSRF_FIELD.search(asked.text)
    # Without an id_token_hint nothing proves the RP asked, so it is not redirected to (authlib's rule).
    assert "rp.example.test/bye" not in asked.text


async def test_front_channel_logout_iframes_for_apps_of_this_session(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session, first_party=True, frontchannel_logout_uri="https://rp.example.test/fc",
                           post_logout_redirect_uris=["https://rp.example.test/bye"])
    code, verifier = await get_code(client, rp)
    id_token = (await exchange(client, rp, code, verifier)).json()["id_token"]
    from joserfc.jws import extract_compact

    sid = json.loads(extract_compact(id_token.encode()).payload)["sid"]
    done = await client.get("/oauth/logout", params={"id_token_hint": id_token,
                                                     "post_logout_redirect_uri": "https://rp.example.test/bye"})
    assert done.status_code == 200
    assert f'src="https://rp.example.test/fc?sid={sid}&amp;iss=http%3A%2F%2F127.0.0.1%3A8000"' in done.text
    assert 'href="https://rp.example.test/bye"' in done.text
