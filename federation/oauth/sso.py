"""Single sign-on across the co-op's hosts (``ROSE_ASH_DOMAIN_HOSTS``).

Each configured host (say ``blog.coop.test``) keeps its own first-party session cookie and signs
its visitors in through the authorization server on BASE_URL's host with the code flow and PKCE,
as a pre-registered first-party public client (``sso-<name>``, created on first use) — no
third-party cookies are involved, so Safari's ITP does not get in the way.

Sign-out propagates through an "ended" marker keyed by the SSO session id (``sid``, the id-token
claim): the authorization server's session keeps it as ``oauth_sid``, each host's session as
``sso_sid``. Signing out anywhere (``POST /account/logout`` on any host, or RP-initiated logout)
records the marker, and :class:`SSOMiddleware` clears every session that carries an ended sid on
its next request: back-channel logout, delivered in process because every host is this app.
Third-party clients with a front-channel logout URI get it loaded in an iframe on sign-out.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio.to_thread
from litestar import Request, get
from litestar.datastructures import CacheControlHeader, MutableScopeHeaders
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import safe_next
from app.security import SESSION_EPOCH_KEY, SESSION_USER_KEY
from app.sessions import rotate_session_id
from app.settings import Settings
from domains.account.models import User
from federation.oauth.deps import DEPENDENCIES
from federation.oauth.models import OAuthAuthorizationCode, OAuthClient
from federation.oauth.store import OAuthStore

if TYPE_CHECKING:
    from litestar.stores.base import Store
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

ENDED_TTL = 14 * 24 * 3600  # as long as a session lives
PENDING_KEY = "sso_pending"
SSO_SID_KEY = "sso_sid"
AS_SID_KEY = "oauth_sid"
AUTH_TIME_KEY = "auth_time"
NO_STORE = CacheControlHeader(no_store=True)


def satellite_name(settings: Settings, host_header: str) -> str | None:
    """The domain name (e.g. ``blog``) if the request came to one of the configured hosts, port
    included (``ROSE_ASH_DOMAIN_HOSTS`` entries are ``name=host[:port]``)."""
    host = host_header.strip().lower()
    for name, configured in settings.domain_hosts:
        if configured == host:
            return name
    return None


def sso_callback_uri(settings: Settings, name: str) -> str:
    """The ``sso-<name>`` client's one redirect URI, from configuration alone: the request's Host
    never becomes part of it (a crafted Host once registered an attacker's callback)."""
    host = dict(settings.domain_hosts)[name]
    return f"{settings.scheme}://{host}/oauth/sso/callback"


def _sso_store(app: Any) -> Store:
    store: Store = app.stores.get("sso")
    return store


async def end_sso_session(app: Any, sid: str | None) -> None:
    if sid:
        await _sso_store(app).set(f"ended:{sid}", b"1", expires_in=ENDED_TTL)


async def sso_session_ended(app: Any, sid: str | None) -> bool:
    return bool(sid) and await _sso_store(app).exists(f"ended:{sid}")


def _session_sid(session: Any) -> str | None:
    if not isinstance(session, dict):
        return None
    sid = session.get(SSO_SID_KEY) or session.get(AS_SID_KEY)
    return str(sid) if sid else None


class SSOMiddleware:
    """Ends sessions whose SSO session was signed out elsewhere; sends sign-in on a configured host
    through the authorization server; records sign-outs. Sits inside the session middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, asgi_scope: Scope, receive: Receive, send: Send) -> None:
        scope: Any = asgi_scope
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        litestar_app = scope["app"]
        settings: Settings = litestar_app.state.settings
        session = scope.get("session")
        sid = _session_sid(session)
        if sid and await sso_session_ended(litestar_app, sid):
            scope["session"] = {}
            sid = None
        name = None
        if settings.domain_hosts:
            host = b""
            for header, value in scope["headers"]:
                if header == b"host":
                    host = value  # the last line, as a dict of the headers would keep
            name = satellite_name(settings, host.decode("latin-1"))
        path, method = scope["path"], scope["method"]
        if name is not None and path == "/account/login" and method == "GET":
            query = scope.get("query_string", b"").decode("latin-1")
            from urllib.parse import parse_qs

            target = safe_next(parse_qs(query).get("next", [""])[0], "/")
            await _redirect(send, "/oauth/sso/login?" + urlencode({"next": target}))
            return
        if path in ("/account/login", "/account/signup") and method == "POST":
            before = session if isinstance(session, dict) else {}
            old_user, old_sid = before.get(SESSION_USER_KEY), before.get(AS_SID_KEY)

            async def note_auth_time(message: Message) -> None:
                # Runs before the session middleware stores the session: record when the password
                # was last checked (the ID token's auth_time, max_age), and keep the SSO session id
                # when the same person signs in again (prompt=login), so sign-out still reaches
                # the hosts signed in under it.
                current = scope.get("session")
                if message["type"] == "http.response.start" and message["status"] == 303 \
                        and isinstance(current, dict) and current.get(SESSION_USER_KEY):
                    current[AUTH_TIME_KEY] = int(time.time())
                    if old_sid and old_user == current.get(SESSION_USER_KEY):
                        current.setdefault(AS_SID_KEY, old_sid)
                await send(message)

            await self.app(scope, receive, note_auth_time)
            return
        if path == "/account/logout" and method == "POST" and sid:
            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start" and message["status"] == 303:
                    await end_sso_session(litestar_app, sid)
                await send(message)

            await self.app(scope, receive, send_wrapper)
            return
        await self.app(scope, receive, send)


async def _redirect(send: Send, location: str) -> None:
    start: Any = {"type": "http.response.start", "status": 303, "headers": []}
    headers = MutableScopeHeaders(start)
    headers["location"] = location
    headers["cache-control"] = "no-store"
    headers["content-length"] = "0"
    await send(start)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- the relying-party side on a configured host -----------------------------------------------------


async def ensure_sso_client(store: OAuthStore, settings: Settings, name: str) -> OAuthClient:
    """The first-party client of a configured host, its redirect URIs exactly the configured one
    (a changed port replaces the old URI, and rows a request once added are dropped)."""
    client_id = f"sso-{name}"
    redirect_uris = [sso_callback_uri(settings, name)]
    client = (await store.session.execute(select(OAuthClient).where(OAuthClient.client_id == client_id))).scalar()
    if client is None:
        client, _ = await store.create_client(
            name=f"Rose Ash {name}", redirect_uris=redirect_uris, public=True, scope="openid profile",
            grant_types=["authorization_code"], first_party=True,
        )
        client.client_id = client_id
        await store.session.flush()
    elif client.redirect_uris != redirect_uris:
        client.redirect_uris = redirect_uris
        await store.session.flush()
    return client


def _satellite(request: Request[Any, Any, Any], settings: Settings) -> str:
    name = satellite_name(settings, request.headers.get("host", ""))
    if name is None:
        raise NotFoundException("Single sign-on starts on one of the co-op's own hosts.")
    return name


@get("/oauth/sso/login", name="oauth:sso-login", cache_control=NO_STORE, dependencies=DEPENDENCIES)
async def sso_login(request: Request[Any, Any, Any], oauth_store: OAuthStore, settings: Settings,
                    next: str | None = None) -> Redirect:
    """On a configured host: start the code flow (PKCE, state, nonce) at the authorization server."""
    import base64
    import hashlib

    name = _satellite(request, settings)
    client = await ensure_sso_client(oauth_store, settings, name)
    redirect_uri = client.redirect_uris[0]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    request.session[PENDING_KEY] = {"state": state, "verifier": verifier, "nonce": nonce,
                                    "next": safe_next(next, "/")}
    query = urlencode({
        "response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri,
        "scope": "openid profile", "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    return Redirect(f"{settings.base_url}/oauth/authorize?{query}", status_code=303)


@get("/oauth/sso/callback", name="oauth:sso-callback", cache_control=NO_STORE, dependencies=DEPENDENCIES)
async def sso_callback(request: Request[Any, Any, Any], db_session: AsyncSession, oauth_store: OAuthStore,
                       settings: Settings,
                       code: str = "", iss: str = "", error: str = "",
                       oauth_state: str = Parameter(query="state", default="")) -> Any:
    """On a configured host: check state and iss, redeem the code in process, check the ID token,
    and start this host's own session for the user."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    from federation.oauth.controllers import make_context
    from federation.oauth.server import LitestarOAuth2Request, OAuthResult, RoseAshAuthorizationServer
    from federation.oauth.signing import public_key_set

    name = _satellite(request, settings)
    pending = request.session.pop(PENDING_KEY, None) if request.session else None
    state = oauth_state
    if not isinstance(pending, dict) or not state or not secrets.compare_digest(str(pending.get("state")), state):
        return _sso_failed("The sign-in response did not match a sign-in started here.")
    if iss != settings.base_url:
        return _sso_failed("The sign-in response came from an unexpected issuer.")
    if error or not code:
        return Redirect(str(pending.get("next", "/")), status_code=303)  # e.g. access_denied: stay signed out
    client_id = f"sso-{name}"
    oreq = LitestarOAuth2Request("POST", f"{settings.base_url}/oauth/token", {}, [], [
        ("grant_type", "authorization_code"), ("code", code), ("client_id", client_id),
        ("redirect_uri", sso_callback_uri(settings, name)), ("code_verifier", str(pending["verifier"])),
    ])
    server = RoseAshAuthorizationServer(await make_context(oauth_store, settings, keys=True))
    result: OAuthResult = await anyio.to_thread.run_sync(server.create_token_response, oreq)
    if result.status != 200 or not isinstance(result.body, dict) or "id_token" not in result.body:
        return _sso_failed("The authorization server refused the sign-in.")
    try:
        keys = await public_key_set(db_session, settings.secret_key)
        claims = jwt.decode(result.body["id_token"], keys, algorithms=["RS256", "EdDSA"]).claims
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": settings.base_url},
                              aud={"essential": True, "value": client_id},
                              nonce={"essential": True, "value": pending["nonce"]}).validate(claims)
    except (JoseError, ValueError):
        return _sso_failed("The identity token did not check out.")
    user = await oauth_store.get_user(_uuid(claims.get("sub")))
    if user is None:
        return _sso_failed("That account is not active.")
    rotate_session_id(request)
    request.set_session({SESSION_USER_KEY: str(user.id), SESSION_EPOCH_KEY: user.session_epoch,
                         SSO_SID_KEY: claims.get("sid")})
    return Redirect(str(pending.get("next", "/")), status_code=303)


def _uuid(value: Any) -> Any:
    from uuid import UUID

    try:
        return UUID(str(value))
    except ValueError:
        return None


def _sso_failed(message: str) -> Template:
    return Template("oauth/error.html", status_code=400, headers={"Cache-Control": "no-store"},
                    context={"error": "sso_failed", "description": message})


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
