"""An OAuth access token is authenticated in one SQL statement (the token, its client and its
member together): every Mastodon API request pays it first. The refusals stay what they were."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from federation.oauth.models import OAuthClient, OAuthToken
from federation.oauth.store import OAuthStore, digest, new_access_token, new_refresh_token
from tests.federation.mastodon_api.test_mastodon_api import bearer, sign_in
from tests.federation.mastodon_api.test_timeline_queries import statements

pytestmark = pytest.mark.anyio

ME = "/api/v1/accounts/verify_credentials"


async def test_a_valid_token_costs_one_statement(client: Any) -> None:
    token = await sign_in(client, "alice")
    client.cookies.clear()
    await client.get(ME, headers=bearer(token))  # once, so last_used_at is fresh and not written again
    with statements() as seen:  # a route whose handler reads no member itself
        answer = await client.get("/api/v1/timelines/home", headers=bearer(token))
    assert answer.status_code == 200 and answer.json() == []
    lookups = [s for s in seen if "oauth_token" in s]
    assert len(lookups) == 1 and "account_user" in lookups[0], lookups
    # The member came with the token: no second statement reads the user by id.
    assert not [s for s in seen if s.lstrip().startswith("SELECT account_user.")], seen


async def _refused(client: Any, token: str) -> None:
    answer = await client.get(ME, headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert "error" in answer.json()


async def test_an_inactive_member_s_token_is_refused(client: Any, db_session: AsyncSession) -> None:
    token = await sign_in(client, "bob")
    client.cookies.clear()
    assert (await client.get(ME, headers=bearer(token))).status_code == 200
    await db_session.execute(update(User).where(User.username == "bob").values(is_active=False))
    await db_session.commit()
    await _refused(client, token)


async def test_revoked_expired_and_disabled_client_tokens_are_refused(client: Any, db_session: AsyncSession) -> None:
    token = await sign_in(client, "carol")
    client.cookies.clear()
    row = OAuthToken.access_token_hash == digest(token)
    await db_session.execute(update(OAuthToken).where(row).values(revoked_at=OAuthToken.issued_at))
    await db_session.commit()
    await _refused(client, token)

    second = await sign_in(client, "dora")
    client.cookies.clear()
    found = (await db_session.execute(update(OAuthToken).where(OAuthToken.access_token_hash == digest(second))
                                      .values(access_expires_at=OAuthToken.issued_at)
                                      .returning(OAuthToken.client_pk))).scalar_one()
    await db_session.commit()
    await _refused(client, second)

    third = await sign_in(client, "erin")
    client.cookies.clear()
    pk = (await db_session.execute(update(OAuthToken).where(OAuthToken.access_token_hash == digest(third))
                                   .values(last_used_at=None).returning(OAuthToken.client_pk))).scalar_one()
    assert pk != found
    await db_session.execute(update(OAuthClient).where(OAuthClient.id == pk).values(is_disabled=True))
    await db_session.commit()
    await _refused(client, third)


async def test_unknown_and_refresh_tokens_are_not_access_tokens(client: Any, db_session: AsyncSession) -> None:
    await _refused(client, "roa_" + "x" * 40)
    await _refused(client, "roa_" + "y" * 300)  # longer than any token: refused before any lookup
    await sign_in(client, "frank")
    user = (await db_session.scalars(select(User).where(User.username == "frank"))).one()
    store = OAuthStore(db_session)
    oauth_client, _secret = await store.create_client(
        name="lookup", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scope="read",
        grant_types=["authorization_code", "refresh_token"], dynamic=True)
    access, refresh = new_access_token(), new_refresh_token()
    await store.save_token(client=oauth_client, user=user, family_id=uuid.uuid4(), access_token=access,
                           refresh_token=refresh, scope="read", expires_in=3600)
    await db_session.commit()
    assert (await client.get(ME, headers=bearer(access))).status_code == 200
    await _refused(client, refresh)
