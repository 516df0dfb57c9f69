"""Single sign-on helpers: which apps a browser session signed in to (for front-channel logout)."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import select

from domains.account.models import User
from federation.oauth.models import OAuthAuthorizationCode, OAuthClient
from federation.oauth.store import OAuthStore


async def frontchannel_logout_uris(store: OAuthStore, user: User, sid: str | None, issuer: str | None) -> list[str]:
    """The front-channel logout URI of every client this session (``sid``) signed in to."""
    if not sid:
        return []
    rows = (
        await store.session.execute(
            select(OAuthClient.frontchannel_logout_uri)
            .join(OAuthAuthorizationCode, OAuthAuthorizationCode.client_pk == OAuthClient.id)
            .where(
                OAuthAuthorizationCode.user_id == user.id,
                OAuthAuthorizationCode.sid == sid,
                OAuthClient.frontchannel_logout_uri.is_not(None),
            )
            .distinct()
        )
    ).scalars().all()
    uris: list[str] = []
    for uri in rows:
        if not uri:
            continue
        params = {"sid": sid, **({"iss": issuer} if issuer else {})}
        uris.append(uri + ("&" if "?" in uri else "?") + urlencode(params))
    return uris
