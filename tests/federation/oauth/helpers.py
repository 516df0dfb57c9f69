"""Shared helpers for the OAuth tests: register clients, drive authorize + consent, PKCE."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from federation.oauth.store import OAuthStore

REDIRECT = "https://rp.example.test/callback"
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


@dataclass
class Client:
    client_id: str
    secret: str | None
    redirect_uri: str = REDIRECT

    @property
    def basic(self) -> tuple[str, str]:
        assert self.secret is not None
        return (self.client_id, self.secret)


async def make_client(db_session: AsyncSession, *, public: bool = False, first_party: bool = False,
                      scope: str = "openid profile email api repo:read",
                      redirect_uris: list[str] | None = None, **kwargs: Any) -> Client:
    uris = redirect_uris or [REDIRECT]
    client, secret = await OAuthStore(db_session).create_client(
        name="Test RP", redirect_uris=uris, public=public, scope=scope, first_party=first_party, **kwargs)
    await db_session.commit()
    return Client(client.client_id, secret, uris[0])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(client: Client, challenge: str, *, scope: str = "openid profile email api",
                     state: str = "st-123", nonce: str | None = "", **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
        "scope": scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
    }
    if nonce == "":
        nonce = secrets.token_urlsafe(8)
    if nonce:
        params["nonce"] = nonce
    params.update(extra)
    return params


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def authorize(http: Any, params: dict[str, str], *, approve: bool = True) -> Any:
    """GET /oauth/authorize; if a consent page comes back, submit it. Returns the final response."""
    response = await http.get("/oauth/authorize?" + urlencode(params))
    if response.status_code == 200 and 'action="/oauth/authorize"' in response.text:
        match = CSRF_FIELD.search(response.text)
        assert match
        form = {**params, "_csrf_token": match.group(1), "decision": "allow" if approve else "deny"}
        response = await http.post("/oauth/authorize", data=form)
    return response


async def get_code(http: Any, client: Client, **kwargs: Any) -> tuple[str, str]:
    """Run authorize (consenting) and return (code, verifier)."""
    verifier, challenge = pkce()
    response = await authorize(http, authorize_params(client, challenge, **kwargs))
    assert response.status_code in (302, 303), response.text
    query = query_of(response.headers["location"])
    assert "code" in query, query
    return query["code"], verifier


async def exchange(http: Any, client: Client, code: str, verifier: str | None, **extra: str) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    if client.secret:
        return await http.post("/oauth/token", data=data, auth=client.basic)
    return await http.post("/oauth/token", data={**data, "client_id": client.client_id})
