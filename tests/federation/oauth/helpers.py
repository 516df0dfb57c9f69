"""Shared helpers for the OAuth tests: register clients, drive authorize + consent, PKCE."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from federation.oauth.store import OAuthStore

REDIRECT = "https://rp.example.test/callback"
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')  # for the other forms the tests post


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


@dataclass
class HtmlForm:
    """One <form> as a browser sees it: where it goes, how, the fields it sends and its buttons."""

    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)

    def submission(self, button: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        """What pressing ``button`` sends (HTML §4.10.21.4): every field, plus only that button."""
        if button is not None:
            assert button in self.buttons, f"no button {button} in the form; it has {self.buttons}"
        return [*self.fields, *([button] if button else [])]


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self._open: HtmlForm | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = HtmlForm(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._open)
            return
        if self._open is None or "name" not in a or "disabled" in a:
            return
        kind = a.get("type", "submit" if tag == "button" else "text").lower()
        if tag == "button" or kind == "submit":
            self._open.buttons.append((a["name"], a.get("value", "")))
        elif tag == "input" and kind not in {"checkbox", "radio", "file", "image", "reset", "button"}:
            self._open.fields.append((a["name"], a.get("value", "")))
        elif tag == "input" and kind in {"checkbox", "radio"} and "checked" in a:
            self._open.fields.append((a["name"], a.get("value", "on")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms_in(html: str) -> list[HtmlForm]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def consent_form(page: Any) -> HtmlForm | None:
    """The consent form on ``page`` (a response), or None when the page is not the consent screen."""
    if page.status_code != 200:
        return None
    posting = [f for f in forms_in(page.text) if ("decision", "allow") in f.buttons]
    assert len(posting) <= 1, "more than one consent form on the page"
    return posting[0] if posting else None


async def submit(http: Any, page: Any, form: HtmlForm, button: tuple[str, str] | None) -> Any:
    """Submit ``form`` exactly as a browser would after pressing ``button``: its action (resolved
    against the page's URL), its method, its fields and nothing the test made up."""
    target = urljoin(str(page.url), form.action or str(page.url))
    data = form.submission(button)
    if form.method == "post":
        # A list of pairs keeps repeated names and order, as a form-urlencoded browser body does.
        return await http.post(target, content=urlencode(data),
                               headers={"content-type": "application/x-www-form-urlencoded"})
    return await http.get(target.split("?", 1)[0] + "?" + urlencode(data))


async def authorize(http: Any, params: dict[str, str], *, approve: bool = True) -> Any:
    """GET /oauth/authorize; if the consent page comes back, press Allow (or Deny) on its form.

    The test's own ``params`` are never posted: only what the consent form carries, so a form that
    drops or garbles a field fails here as it would in a browser. Returns the final response."""
    page = await http.get("/oauth/authorize?" + urlencode(params))
    form = consent_form(page)
    if form is None:
        return page
    assert form.method == "post", form
    assert any(name == "_csrf_token" and value for name, value in form.fields), "consent form without CSRF"
    return await submit(http, page, form, ("decision", "allow" if approve else "deny"))


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
