"""In-process OAuth 2.0 / OIDC flows over SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from sqlalchemy.ext.asyncio import AsyncSession

from federation.oauth.server import LitestarOAuth2Request  # noqa: F401  (import check)
from tests.federation.oauth.helpers import (
    authorize,
    authorize_params,
    exchange,
    get_code,
    make_client,
    pkce,
    query_of,
)
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio
ISSUER = "http://127.0.0.1:8000"


async def _id_claims(client: Any, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set((await client.get("/oauth/jwks.json")).json())
    return dict(jwt.decode(id_token, keys, algorithms=["RS256", "EdDSA"]).claims)


async def test_code_flow_with_pkce_consent_id_token_and_userinfo(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session)
    verifier, challenge = pkce()
    params = authorize_params(rp, challenge, nonce="n-456")
    page = await client.get("/oauth/authorize", params=params)
    assert page.status_code == 200
    assert "Test RP" in page.text and "See your email address" in page.text
    assert "Use the JSON API as you" in page.text
    assert "It can never use the Rose Ash website as you" in page.text
    assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]

    response = await authorize(client, params)
    assert response.status_code == 303
    query = query_of(response.headers["location"])
    assert response.headers["location"].startswith(rp.redirect_uri + "?")
    assert query["state"] == "st-123" and query["iss"] == ISSUER

    tokens = await exchange(client, rp, query["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"].startswith("roa_") and body["refresh_token"].startswith("ror_")
    assert tokens.headers["cache-control"] == "no-store"
    claims = await _id_claims(client, body["id_token"])
    assert claims["iss"] == ISSUER and claims["aud"] == rp.client_id and claims["nonce"] == "n-456"
    assert claims["preferred_username"] == "alice" and claims["email"] == "alice@example.org"
    assert "at_hash" in claims and "sid" in claims

    info = await client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json()["sub"] == claims["sub"] and info.json()["preferred_username"] == "alice"

    # Consent is remembered: the second authorization skips the screen.
    _v, challenge2 = pkce()
    again = await client.get("/oauth/authorize", params=authorize_params(rp, challenge2, nonce="n-789"))
    assert again.status_code == 302 and "code=" in again.headers["location"]


async def test_at_hash_matches_and_eddsa_client(client: Any, db_session: AsyncSession) -> None:
    import base64
    import hashlib

    await signup(client, "bob")
    rp = await make_client(db_session, first_party=True, id_token_alg="EdDSA")
    code, verifier = await get_code(client, rp)
    body = (await exchange(client, rp, code, verifier)).json()
    header = extract_compact(body["id_token"].encode()).headers()
    assert header["alg"] == "EdDSA" and header["kid"]
    claims = await _id_claims(client, body["id_token"])
    digest = hashlib.sha512(body["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:32]).rstrip(b"=").decode()


async def test_first_party_skips_consent(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "carol")
    rp = await make_client(db_session, first_party=True)
    _v, challenge = pkce()
    response = await client.get("/oauth/authorize", params=authorize_params(rp, challenge))
    assert response.status_code == 302
    assert "code=" in response.headers["location"]


async def test_signed_out_user_is_sent_to_sign_in_and_back(client: Any, db_session: AsyncSession) -> None:
    rp = await make_client(db_session)
    _v, challenge = pkce()
    response = await client.get("/oauth/authorize", params=authorize_params(rp, challenge))
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/account/login?next=/oauth/authorize%3F")
    none = await client.get("/oauth/authorize", params=authorize_params(rp, challenge, prompt="none"))
    assert none.status_code == 302 and query_of(none.headers["location"])["error"] == "login_required"


async def test_deny_returns_access_denied(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "dave")
    rp = await make_client(db_session)
    _v, challenge = pkce()
    response = await authorize(client, authorize_params(rp, challenge), approve=False)
    assert response.status_code == 303
    query = query_of(response.headers["location"])
    assert query["error"] == "access_denied" and query["state"] == "st-123" and query["iss"] == ISSUER


async def test_refresh_rotation_and_reuse_revokes_family(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "erin")
    rp = await make_client(db_session, public=True)
    code, verifier = await get_code(client, rp)
    first = (await exchange(client, rp, code, verifier)).json()

    refreshed = await client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": rp.client_id})
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    api = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert api.status_code == 200

    # The old refresh token again: refused, and the whole family (the new tokens too) is revoked.
    reused = await client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": rp.client_id})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert "access_token" not in reused.json()
    dead = await client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": second["refresh_token"], "client_id": rp.client_id})
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    api = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert api.status_code == 401


async def test_client_credentials(client: Any, db_session: AsyncSession) -> None:
    rp = await make_client(db_session)
    ok = await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "api"}, auth=rp.basic)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["scope"] == "api" and "refresh_token" not in body
    # It acts for no user, so user APIs refuse it.
    api = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert api.status_code == 401
    openid = await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "openid"},
                               auth=rp.basic)
    assert openid.status_code == 400 and openid.json()["error"] == "invalid_scope"
    public = await make_client(db_session, public=True)
    refused = await client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                      "client_id": public.client_id})
    assert refused.status_code in (400, 401) and refused.json()["error"] in {"invalid_client", "unauthorized_client"}


async def test_introspection_and_revocation(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "frank")
    rp = await make_client(db_session)
    code, verifier = await get_code(client, rp)
    body = (await exchange(client, rp, code, verifier)).json()

    active = await client.post("/oauth/introspect", data={"token": body["access_token"]}, auth=rp.basic)
    assert active.status_code == 200
    info = active.json()
    assert info["active"] is True and info["client_id"] == rp.client_id and info["username"] == "frank"
    assert set(info["scope"].split()) == {"openid", "profile", "email", "api"}

    # Public clients may not introspect; another confidential client sees nothing of others' tokens.
    public = await make_client(db_session, public=True)
    denied = await client.post("/oauth/introspect", data={"token": body["access_token"],
                                                          "client_id": public.client_id})
    assert denied.status_code in (400, 401) and denied.json()["error"] == "invalid_client"
    other = await make_client(db_session)
    hidden = await client.post("/oauth/introspect", data={"token": body["access_token"]}, auth=other.basic)
    assert hidden.json() == {"active": False}

    revoked = await client.post("/oauth/revoke", data={"token": body["refresh_token"],
                                                       "token_type_hint": "refresh_token"}, auth=rp.basic)
    assert revoked.status_code == 200
    after = await client.post("/oauth/introspect", data={"token": body["access_token"]}, auth=rp.basic)
    assert after.json() == {"active": False}
    api = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert api.status_code == 401
    # RFC 7009: an unknown token is not an error.
    unknown = await client.post("/oauth/revoke", data={"token": "nonsense"}, auth=rp.basic)
    assert unknown.status_code == 200


async def test_access_token_scopes_on_the_api(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "gina")
    rp = await make_client(db_session, first_party=True)
    code, verifier = await get_code(client, rp, scope="openid api")
    with_api = (await exchange(client, rp, code, verifier)).json()["access_token"]
    code, verifier = await get_code(client, rp, scope="openid profile")
    without = (await exchange(client, rp, code, verifier)).json()["access_token"]
    client.cookies.clear()
    ok = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {with_api}"})
    assert ok.status_code == 200 and ok.json()["username"] == "gina"
    ok_token = await client.get("/api/v1/user", headers={"Authorization": f"token {with_api}"})
    assert ok_token.status_code == 200
    refused = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {without}"})
    assert refused.status_code == 403
    bogus = await client.get("/api/v1/user", headers={"Authorization": "Bearer roa_nope"})
    assert bogus.status_code == 401
    no_openid = await client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {with_api}"})
    assert no_openid.status_code == 200
    code, verifier = await get_code_signed_in(client, rp)
    only_api = (await exchange(client, rp, code, verifier)).json()["access_token"]
    insufficient = await client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {only_api}"})
    assert insufficient.status_code == 403 and 'error="insufficient_scope"' in insufficient.headers["www-authenticate"]


async def get_code_signed_in(client: Any, rp: Any) -> tuple[str, str]:
    from tests.helpers.web import login

    await login(client, "gina")
    return await get_code(client, rp, scope="api", nonce=None)


async def test_discovery_documents_and_jwks(client: Any) -> None:
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
    from authlib.oidc.discovery import OpenIDProviderMetadata

    oauth = (await client.get("/.well-known/oauth-authorization-server")).json()
    AuthorizationServerMetadata(oauth).validate()
    oidc = (await client.get("/.well-known/openid-configuration")).json()
    OpenIDProviderMetadata(oidc).validate()
    assert oidc["issuer"] == ISSUER and oidc["code_challenge_methods_supported"] == ["S256"]
    assert oidc["authorization_response_iss_parameter_supported"] is True
    assert "implicit" not in oidc["grant_types_supported"] and "password" not in oidc["grant_types_supported"]
    keys = (await client.get("/oauth/jwks.json")).json()["keys"]
    assert {k["kty"] for k in keys} == {"RSA", "OKP"} and all(k.get("kid") for k in keys)
    assert not any("d" in k for k in keys)


async def test_key_rotation_keeps_old_keys_published(client: Any, db_session: AsyncSession, settings: Any) -> None:
    from federation.oauth.signing import rotate

    await signup(client, "hank")
    rp = await make_client(db_session, first_party=True)
    code, verifier = await get_code(client, rp)
    old_token = (await exchange(client, rp, code, verifier)).json()["id_token"]
    before = {k["kid"] for k in (await client.get("/oauth/jwks.json")).json()["keys"]}
    new = await rotate(db_session, settings.secret_key)
    await db_session.commit()
    after = {k["kid"] for k in (await client.get("/oauth/jwks.json")).json()["keys"]}
    assert before < after and set(new) <= after
    await _id_claims(client, old_token)  # still verifies
    code, verifier = await get_code(client, rp)
    new_token = (await exchange(client, rp, code, verifier)).json()["id_token"]
    assert extract_compact(new_token.encode()).headers()["kid"] in new


async def test_prompt_login_asks_for_the_password_again(client: Any, db_session: AsyncSession) -> None:
    from urllib.parse import parse_qs, urlsplit

    from tests.helpers.web import post_form

    await signup(client, "ivan")
    rp = await make_client(db_session, first_party=True)
    _v, challenge = pkce()
    response = await client.get("/oauth/authorize", params=authorize_params(rp, challenge, prompt="login"))
    assert response.status_code == 303 and response.headers["location"].startswith("/account/login?next=")
    next_path = parse_qs(urlsplit(response.headers["location"]).query)["next"][0]
    assert "prompt" not in next_path
    signed_in = await post_form(client, "/account/login", {
        "login": "ivan", "password": "correct horse battery staple", "next": next_path})
    back = await client.get(signed_in.headers["location"])
    assert back.status_code == 302 and "code=" in back.headers["location"]


async def test_auth_time_and_max_age(client: Any, db_session: AsyncSession) -> None:
    import time
    from urllib.parse import parse_qs, urlsplit

    import anyio

    from tests.helpers.web import post_form

    started = int(time.time())
    await signup(client, "judy")
    rp = await make_client(db_session, first_party=True)
    code, verifier = await get_code(client, rp)
    claims = await _id_claims(client, (await exchange(client, rp, code, verifier)).json()["id_token"])
    assert started <= claims["auth_time"] <= int(time.time())

    await anyio.sleep(1.2)
    _v, challenge = pkce()
    response = await client.get("/oauth/authorize", params=authorize_params(rp, challenge, max_age="1"))
    assert response.status_code == 303 and response.headers["location"].startswith("/account/login?next=")
    next_path = parse_qs(urlsplit(response.headers["location"]).query)["next"][0]
    signed_in = await post_form(client, "/account/login", {
        "login": "judy", "password": "correct horse battery staple", "next": next_path})
    back = await client.get(signed_in.headers["location"])
    assert back.status_code == 302
    query = query_of(back.headers["location"])
    fresh = await _id_claims(client, (await exchange(client, rp, query["code"], _v)).json()["id_token"])
    assert fresh["auth_time"] > claims["auth_time"]


async def test_consent_page_says_what_every_scope_lets_the_app_do(client: Any, db_session: AsyncSession) -> None:
    """Each requested scope is explained in plain words, including the git scopes (issue 11 item 1)."""
    import html
    import re

    from federation.oauth.scopes import SCOPE_TEXT

    await signup(client, "alice")
    every = " ".join(SCOPE_TEXT)
    rp = await make_client(db_session, scope=every)
    _verifier, challenge = pkce()
    page = await client.get("/oauth/authorize", params=authorize_params(rp, challenge, scope=every))
    assert page.status_code == 200
    shown = dict(re.findall(r'<li data-scope="([^"]+)">([^<]+)</li>', page.text))
    assert set(shown) == set(SCOPE_TEXT)
    for scope, text in SCOPE_TEXT.items():
        assert html.unescape(shown[scope]) == text + "."
    assert "push commits" in shown["repo:write"] and "private ones included" in shown["repo:read"]
    # Asking for less shows less.
    page = await client.get("/oauth/authorize", params=authorize_params(rp, challenge, scope="openid"))
    assert re.findall(r'<li data-scope="([^"]+)">', page.text) == ["openid"]
