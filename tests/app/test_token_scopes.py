"""Tokens stay inside their scopes (issue 11, item 1): the reproductions, as regression tests.

A personal access token or an OAuth access token authenticates only where a scope governs it
(git, ``/api/``, ``/oauth/userinfo``). Everywhere else the request is anonymous, so the token
holder cannot read a form's CSRF token as the member and post it back.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select, update

from domains.account.models import AccessToken, User
from federation.activitypub.models import DomainBlock
from federation.oauth.models import OAuthClient
from tests.federation.oauth.helpers import exchange, get_code, make_client
from tests.helpers.web import csrf_token, post_form, signup

pytestmark = pytest.mark.anyio

TOKEN_RE = re.compile(r'<code class="secret" id="new-token">(rat_[A-Za-z0-9_-]+)</code>')


async def issue_token(client: Any, scopes: tuple[str, ...], name: str = "laptop") -> str:
    """A personal access token made through the member's own settings page (signed in by cookie)."""
    made = await post_form(client, "/account/settings/tokens", {"name": name, "scopes": list(scopes)},
                           page="/account/settings/tokens")
    assert made.status_code == 303
    match = TOKEN_RE.search((await client.get("/account/settings/tokens")).text)
    assert match
    return match.group(1)


async def as_stranger(client: Any, secret: str) -> dict[str, str]:
    """Drop the member's cookies; keep an anonymous CSRF pair, as a token thief would have."""
    client.cookies.clear()
    return {"Authorization": f"token {secret}", "X-CSRFToken": await csrf_token(client)}


def is_sign_in(response: Any) -> bool:
    """The house answer to anonymous on a member page: 303 to the sign-in page (GET) or 401."""
    if response.status_code == 401:
        return True
    return response.status_code == 303 and response.headers["location"].startswith("/account/login")


async def count(db_session: Any, model: Any) -> int:
    db_session.expire_all()
    return int((await db_session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_read_token_cannot_see_or_create_tokens(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "alice")
    secret = await issue_token(client, ("repo:read",))
    assert await count(db_session, AccessToken) == 1
    headers = await as_stranger(client, secret)

    page = await client.get("/account/settings/tokens", headers=headers)
    assert is_sign_in(page)
    assert "laptop" not in page.text
    minted = await client.post("/account/settings/tokens", headers=headers,
                               data={"name": "stolen", "scopes": ["repo:write", "api"]})
    assert is_sign_in(minted)
    assert await count(db_session, AccessToken) == 1
    # Nor is the token anybody on the member's other pages.
    for path in ("/account", "/account/settings/profile", "/social/", "/forge/new"):
        assert is_sign_in(await client.get(path, headers=headers)), path
    # Where its scope governs (git, the API) it still works as before.
    repos = await client.get("/api/v1/user/repos", headers={"Authorization": f"token {secret}"})
    assert repos.status_code == 200


async def test_openid_only_oauth_token_reaches_userinfo_and_nothing_else(  # type: ignore[no-untyped-def]
        client, db_session) -> None:
    await signup(client, "alice")
    rp = await make_client(db_session, scope="openid profile email api repo:read repo:write")
    code, verifier = await get_code(client, rp, scope="openid")
    issued = await exchange(client, rp, code, verifier)
    assert issued.status_code == 200, issued.text
    assert issued.json()["scope"] == "openid"
    access = issued.json()["access_token"]
    await post_form(client, "/forge/new", {"name": "secret-plans", "visibility": "private"}, page="/forge/new")
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {access}"}

    info = await client.get("/oauth/userinfo", headers=bearer)
    assert info.status_code == 200 and info.json()["sub"], (info.text, issued.json())
    # Token routes need their scope.
    assert (await client.get("/api/v1/user", headers=bearer)).status_code == 403
    assert (await client.get("/api/v1/user/repos", headers=bearer)).status_code == 403
    assert (await client.get("/api/v1/repos/alice/secret-plans", headers=bearer)).status_code == 403
    git = await client.get("/forge/alice/secret-plans/info/refs?service=git-upload-pack",
                           headers={"Authorization": f"Bearer {access}"})
    assert git.status_code == 404  # without repo:read a private repository is absent to the token
    # Every other route: anonymous.
    for path in ("/account", "/account/settings/tokens", "/account/settings/applications", "/social/",
                 "/blog/admin", "/forge/alice/secret-plans/settings"):
        assert is_sign_in(await client.get(path, headers=bearer)), path
    hidden = await client.get("/forge/alice/secret-plans", headers=bearer)
    assert hidden.status_code in (303, 401, 404) and "secret-plans" not in hidden.text


async def test_admins_read_token_cannot_administer(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "ada")
    await db_session.execute(update(User).where(User.username == "ada").values(is_admin=True))
    await db_session.commit()
    secret = await issue_token(client, ("repo:read",))
    me = (await db_session.execute(select(User.id).where(User.username == "ada"))).scalar_one()
    clients_before = await count(db_session, OAuthClient)
    headers = await as_stranger(client, secret)

    blocked = await client.post("/social/admin/domain-blocks", headers=headers,
                                data={"domain": "evil.example", "reason": "token", "severity": "suspend"})
    assert is_sign_in(blocked)
    assert await count(db_session, DomainBlock) == 0
    roles = await client.post(f"/account/admin/users/{me}/roles", headers=headers, data={"is_active": "on"})
    assert is_sign_in(roles)
    db_session.expire_all()
    assert (await db_session.execute(select(User.is_admin).where(User.id == me))).scalar_one() is True
    for path in ("/oauth/admin/clients", "/social/admin/domain-blocks", "/account/admin/users"):
        assert is_sign_in(await client.get(path, headers=headers)), path
    made = await client.post("/oauth/admin/clients", headers=headers,
                             data={"name": "Evil", "redirect_uris": "https://evil.example/cb", "scopes": "openid"})
    assert is_sign_in(made)
    assert await count(db_session, OAuthClient) == clients_before


async def test_bad_token_on_a_page_is_simply_no_credential(client) -> None:  # type: ignore[no-untyped-def]
    """On pages a token is not a credential at all, so a wrong one changes nothing either; on the API
    and git it is refused with a challenge."""
    home = await client.get("/account/login", headers={"Authorization": "token rat_not-a-real-token"})
    assert home.status_code == 200
    api = await client.get("/api/v1/user", headers={"Authorization": "token rat_not-a-real-token"})
    assert api.status_code == 401 and api.headers["www-authenticate"].startswith("Basic")
    none = await client.get("/api/v1/user")
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")


async def test_undecodable_basic_credentials_are_a_401_not_a_500(client) -> None:  # type: ignore[no-untyped-def]
    """Bytes that are not ASCII in a Basic header once escaped base64's binascii.Error (a 500)."""
    for value in (b"Basic \xff\xff==", b"Basic /w==", b"Bearer \xc3\x28"):
        for path in ("/api/v1/user", "/forge/nobody/nothing/info/refs?service=git-upload-pack"):
            answer = await client.get(path, headers={"Authorization": value})
            assert answer.status_code == 401 and "www-authenticate" in answer.headers, (value, path)
