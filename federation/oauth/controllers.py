"""OAuth 2.0 / OpenID Connect endpoints: authorize (with consent), token, revoke, introspect,
userinfo, discovery, JWKS, dynamic registration and RP-initiated logout."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import anyio.to_thread
from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from litestar import MediaType, Request, Response, get, post, route
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import ClientException
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import parse_form
from app.limits import OAUTH_REGISTRATION, app_limiter, client_address
from app.security import requires_user
from app.sessions import rotate_session_id
from app.settings import Settings
from domains.account.models import User
from federation.oauth.deps import DEPENDENCIES
from federation.oauth.registration import register_client
from federation.oauth.schemas import ConsentForm, LogoutConfirmForm
from federation.oauth.scopes import SCOPE_TEXT, describe, never_text, split_scope
from federation.oauth.server import (
    ClientView,
    Context,
    LitestarOAuth2Request,
    OAuthResult,
    RoseAshAuthorizationServer,
    user_claims,
)
from federation.oauth.signing import JWS_ALGS, jwks, public_key_set, signing_keys
from federation.oauth.store import OAuthStore

NO_STORE = CacheControlHeader(no_store=True)
MACHINE = {"exclude_from_auth": True, "exclude_from_csrf": True}


class UnreadableBody(ClientException):
    """A POST body that is no parameters at all (malformed JSON, not UTF-8, not an object)."""


def _invalid_request(_: Request[Any, Any, Any], exc: UnreadableBody) -> Response[Any]:
    """RFC 6749 §5.2 (and RFC 7009 §2.2.1, RFC 7662 §2.3): the token, revocation and introspection
    endpoints answer a request they cannot read with their own error shape, ``invalid_request``."""
    return Response({"error": "invalid_request", "error_description": exc.detail}, status_code=400,
                    headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


# Route-level handlers for the machine endpoints (any other route keeps the app's problem+json).
OAUTH_ERRORS: Any = {UnreadableBody: _invalid_request}
# The consent page must not be framed (clickjacking an "Allow" click).
NO_FRAMING = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
              "Content-Security-Policy": "frame-ancestors 'none'"}
# Every page here names its media type itself: these routes also answer JSON and redirects, and a
# Template answer takes the route's media type, which once sent the consent page out as JSON.
PAGE = MediaType.HTML
# Form fields of ours that are not OAuth parameters.
CONSENT_FIELDS = {"_csrf_token", "decision"}


async def oauth_request(request: Request[Any, Any, Any], settings: Settings, *,
                        drop: set[str] | None = None) -> LitestarOAuth2Request:
    query = [(k, v) for k, v in request.query_params.multi_items()]
    form: list[tuple[str, str]] = []
    if request.method == "POST" and request.content_type[0] == "application/json":
        # Mastodon apps (Elk, masto.js) send the token and revocation requests as JSON; RFC 6749
        # names form encoding, so a JSON object of strings is read as the same parameters.
        try:
            body = await request.json()  # app.strict_input: size, depth, UTF-8, NUL -> 400
        except ClientException as exc:
            if exc.status_code != 400:
                raise  # 413 is HTTP's answer
            raise UnreadableBody(exc.detail) from exc
        if not isinstance(body, dict):
            raise UnreadableBody("The JSON body must be an object of parameters.")
        form = [(k, v if isinstance(v, str) else str(v)) for k, v in body.items()
                if isinstance(v, str | int) and not isinstance(v, bool) and k not in (drop or set())]
    elif request.method == "POST":
        data = await request.form()
        form = [(k, v) for k, v in data.multi_items() if isinstance(v, str) and k not in (drop or set())]
    uri = settings.base_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return LitestarOAuth2Request(request.method, uri, request.headers, query, form)


def to_response(result: OAuthResult) -> Response[Any]:
    headers = {name: value for name, value in result.headers if name.lower() != "content-type"}
    headers.setdefault("Cache-Control", "no-store")
    media = MediaType.JSON if isinstance(result.body, dict) else MediaType.TEXT
    for name, value in result.headers:
        if name.lower() == "content-type":
            media = value  # type: ignore[assignment]
    return Response(result.body if result.body != "" else b"", status_code=result.status, headers=headers,
                    media_type=media)


async def make_context(store: OAuthStore, settings: Settings, *, keys: bool = False,
                       sid: str | None = None) -> Context:
    return Context(
        store=store,
        issuer=settings.base_url,
        keys=await signing_keys(store.session, settings.secret_key) if keys else {},
        sid=sid,
    )


def error_page(error: OAuth2Error, status: int = 400) -> Template:
    return Template("oauth/error.html", status_code=status, headers={"Cache-Control": "no-store"}, media_type=PAGE,
                    context={
        "error": error.error, "description": error.get_error_description() or error.description or "",
    })


def error_redirect(server: RoseAshAuthorizationServer, oreq: LitestarOAuth2Request, error: OAuth2Error,
                   issuer: str) -> Response[Any] | Template:
    result: OAuthResult = server.handle_error_response(oreq, error)
    if result.location:
        result.location = add_params_to_uri(result.location, {"iss": issuer})
        if result.location.startswith(OOB + "?"):
            return out_of_band(result.location)
    return to_response(result)


def _auth_time(request: Request[Any, Any, Any]) -> int | None:
    """When this browser session last checked the password (federation/oauth/sso.py records it)."""
    from federation.oauth.sso import AUTH_TIME_KEY

    session = request.scope.get("session")
    value = session.get(AUTH_TIME_KEY) if isinstance(session, dict) else None
    return int(value) if isinstance(value, int | float) else None


def _sid(request: Request[Any, Any, Any]) -> str | None:
    session = request.scope.get("session")
    if not isinstance(session, dict):
        return None
    sid = session.get("oauth_sid")
    if not sid:
        import secrets

        sid = secrets.token_urlsafe(16)
        request.session["oauth_sid"] = sid
    return str(sid)


# --- authorization endpoint ----------------------------------------------------------------------


@route("/oauth/authorize", http_method=["GET", "POST"], name="oauth:authorize", cache_control=NO_STORE,
       media_type=MediaType.HTML,  # its Template answers carry their own too (see PAGE)
       dependencies=DEPENDENCIES)
async def authorize(request: Request[Any, Any, Any], oauth_store: OAuthStore, settings: Settings) -> Any:
    """GET: validate, sign in if needed, then consent (or skip it); POST: the consent decision."""
    user: User | None = request.user if isinstance(request.user, User) else None
    oreq = await oauth_request(request, settings, drop=CONSENT_FIELDS)
    ctx = await make_context(oauth_store, settings, sid=_sid(request) if user is not None else None)
    auth_time = _auth_time(request) if user is not None else None
    ctx.auth_time = auth_time
    server = RoseAshAuthorizationServer(ctx)

    def validate() -> Any:
        try:
            return server.get_consent_grant(oreq, end_user=user)
        except OAuth2Error as exc:
            return exc

    grant = await anyio.to_thread.run_sync(validate)
    if isinstance(grant, OAuth2Error):
        # Never redirect to a redirect_uri that was not validated against the client.
        if grant.redirect_uri:
            return error_redirect(server, oreq, grant, settings.base_url)
        return error_page(grant)

    prompts = set(split_scope(oreq.payload.data.get("prompt")))
    client: ClientView = grant.client
    if user is None:
        if "none" in prompts:
            from authlib.oidc.core import LoginRequiredError

            return error_redirect(server, oreq, LoginRequiredError(redirect_uri=grant.redirect_uri,
                                                                   state=oreq.payload.state), settings.base_url)
        target = request.url.path + "?" + urlencode(list(oreq.payload.datalist.items()), doseq=True)
        return Redirect(f"/account/login?next={quote(target)}", status_code=303)

    max_age = oreq.payload.data.get("max_age", "")
    too_old = max_age.isdigit() and (auth_time is None or time.time() - auth_time > int(max_age))
    if ("login" in prompts or too_old) and request.method == "GET":
        # Re-authenticate: the sign-in page comes back here without prompt=login or max_age.
        again = [(k, v) for k, v in oreq.payload.datalist.items() if k not in {"prompt", "max_age"}]
        remaining = " ".join(p for p in split_scope(oreq.payload.data.get("prompt")) if p != "login")
        if remaining:
            again.append(("prompt", [remaining]))
        target = request.url.path + "?" + urlencode(again, doseq=True)
        return Redirect(f"/account/login?next={quote(target)}", status_code=303)

    scopes = split_scope(oreq.scope)
    if request.method == "GET":
        consent = await ctx.store.consent(user, client.row)
        covered = consent is not None and set(scopes) <= set(consent.scopes)
        if not client.row.is_first_party and (not covered or "consent" in prompts):
            if "none" in prompts:
                from authlib.oidc.core import ConsentRequiredError

                return error_redirect(server, oreq, ConsentRequiredError(redirect_uri=grant.redirect_uri,
                                                                         state=oreq.payload.state), settings.base_url)
            return Template("oauth/consent.html", headers=NO_FRAMING, media_type=PAGE, context={
                "client": client.row,
                "scopes": describe(oreq.scope), "never": never_text(oreq.scope),
                "params": [(k, v) for k, values in oreq.payload.datalist.items() for v in values],
                "redirect_host": urlsplit(grant.redirect_uri or "").netloc,
            })
        grant_user: User | None = user
    else:
        approved = (await parse_form(request, ConsentForm)).decision == "allow"
        grant_user = user if approved else None
        if approved and not client.row.is_first_party:
            await ctx.store.grant_consent(user, client.row, scopes)

    result: OAuthResult = await anyio.to_thread.run_sync(
        lambda: server.create_authorization_response(request=oreq, grant_user=grant_user, grant=grant)
    )
    if result.status == 302 and (result.location or "").startswith(OOB + "?"):
        return out_of_band(result.location or "")
    if result.status == 302:
        # 303 after the consent POST, so the browser follows with a GET.
        result.status = 303 if request.method == "POST" else 302
    return to_response(result)


# Out-of-band redirect URI (the OAuth 2.0 for native apps draft, kept by Mastodon): no redirect,
# the page shows the code for the member to paste into the command-line app.
OOB = "urn:ietf:wg:oauth:2.0:oob"


def out_of_band(location: str) -> Template:
    params = dict(parse_qsl(location.partition("?")[2]))
    return Template("oauth/oob.html", headers=NO_FRAMING, media_type=PAGE,
                    status_code=200 if params.get("code") else 400,
                    context={"code": params.get("code", ""), "error": params.get("error", ""),
                             "description": params.get("error_description", "")})


# --- token, revocation, introspection -------------------------------------------------------------


@post("/oauth/token", name="oauth:token", opt=MACHINE, status_code=200, dependencies=DEPENDENCIES,
      exception_handlers=OAUTH_ERRORS)
async def token(request: Request[Any, Any, Any], oauth_store: OAuthStore, settings: Settings) -> Response[Any]:
    oreq = await oauth_request(request, settings)
    ctx = await make_context(oauth_store, settings, keys=True)
    server = RoseAshAuthorizationServer(ctx)
    result: OAuthResult = await anyio.to_thread.run_sync(server.create_token_response, oreq)
    if result.status == 200 and isinstance(result.body, dict) and "access_token" in result.body:
        result.body["created_at"] = int(time.time())  # Mastodon's Token entity carries it
    return to_response(result)


@post("/oauth/revoke", name="oauth:revoke", opt=MACHINE, status_code=200, dependencies=DEPENDENCIES,
      exception_handlers=OAUTH_ERRORS)
async def revoke(request: Request[Any, Any, Any], oauth_store: OAuthStore, settings: Settings) -> Response[Any]:
    oreq = await oauth_request(request, settings)
    server = RoseAshAuthorizationServer(await make_context(oauth_store, settings))
    result: OAuthResult = await anyio.to_thread.run_sync(
        lambda: server.create_endpoint_response("revocation", oreq))
    return to_response(result)


@post("/oauth/introspect", name="oauth:introspect", opt=MACHINE, status_code=200, dependencies=DEPENDENCIES,
      exception_handlers=OAUTH_ERRORS)
async def introspect(request: Request[Any, Any, Any], oauth_store: OAuthStore,
                     settings: Settings) -> Response[Any]:
    oreq = await oauth_request(request, settings)
    server = RoseAshAuthorizationServer(await make_context(oauth_store, settings))
    result: OAuthResult = await anyio.to_thread.run_sync(
        lambda: server.create_endpoint_response("introspection", oreq))
    return to_response(result)


# --- userinfo ------------------------------------------------------------------------------------


def _bearer_error(status: int, error: str, description: str) -> Response[Any]:
    return Response(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{description}"',
                 "Cache-Control": "no-store"},
    )


@route("/oauth/userinfo", http_method=["GET", "POST"], name="oauth:userinfo", opt=MACHINE, status_code=200,
       dependencies=DEPENDENCIES)
async def userinfo(request: Request[Any, Any, Any], oauth_store: OAuthStore, settings: Settings) -> Response[Any]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return Response({"error": "invalid_request"}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="Rose Ash"', "Cache-Control": "no-store"})
    found = await oauth_store.authenticate_access_token(value.strip())
    if found is None or found[2] is None:
        return _bearer_error(401, "invalid_token", "The access token is invalid, expired or revoked.")
    row, user = found[0], found[2]
    if "openid" not in split_scope(row.scope):
        return _bearer_error(403, "insufficient_scope", "The access token lacks the openid scope.")
    return Response(user_claims(user, row.scope, settings.base_url), headers={"Cache-Control": "no-store"})


# --- discovery and keys ----------------------------------------------------------------------------


async def registration_open(store: OAuthStore, settings: Settings) -> bool:
    if not settings.oauth_dynamic_registration:
        return False
    return await store.get_setting("dynamic_registration") != "off"


async def server_metadata(store: OAuthStore, settings: Settings) -> dict[str, Any]:
    base = settings.base_url
    meta: dict[str, Any] = {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/oauth/jwks.json",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "end_session_endpoint": f"{base}/oauth/logout",
        "scopes_supported": list(SCOPE_TEXT),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(JWS_ALGS),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "name",
                             "preferred_username", "nickname", "profile", "updated_at", "email", "email_verified"],
        "prompt_values_supported": ["none", "login", "consent"],
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
        "service_documentation": f"{base}/",
    }
    if await registration_open(store, settings):
        meta["registration_endpoint"] = f"{base}/oauth/register"
    return meta


DISCOVERY_CACHE = CacheControlHeader(public=True, max_age=300)


@get("/.well-known/oauth-authorization-server", name="oauth:metadata", opt=MACHINE,
     cache_control=DISCOVERY_CACHE, dependencies=DEPENDENCIES)
async def oauth_metadata(oauth_store: OAuthStore, settings: Settings) -> dict[str, Any]:
    return await server_metadata(oauth_store, settings)


@get("/.well-known/openid-configuration", name="oauth:openid-configuration", opt=MACHINE,
     cache_control=DISCOVERY_CACHE, dependencies=DEPENDENCIES)
async def openid_configuration(oauth_store: OAuthStore, settings: Settings) -> dict[str, Any]:
    return await server_metadata(oauth_store, settings)


@get("/oauth/jwks.json", name="oauth:jwks", opt=MACHINE, cache_control=CacheControlHeader(public=True, max_age=300))
async def jwks_document(db_session: AsyncSession, settings: Settings) -> Response[Any]:
    return Response(await jwks(db_session, settings.secret_key), media_type="application/jwk-set+json")


# --- dynamic client registration (RFC 7591) --------------------------------------------------------


@post("/oauth/register", name="oauth:register", opt=MACHINE, status_code=201, dependencies=DEPENDENCIES)
async def register(request: Request[Any, Any, Any], oauth_store: OAuthStore, settings: Settings) -> Response[Any]:
    if not await registration_open(oauth_store, settings):
        return Response({"error": "access_denied", "error_description": "Dynamic client registration is off."},
                        status_code=403, headers={"Cache-Control": "no-store"})
    limits = app_limiter(request)
    if not await limits.hit(OAUTH_REGISTRATION, client_address(request)):
        return Response({"error": "too_many_requests", "error_description": "Too many registrations; try later."},
                        status_code=429, headers={"Retry-After": limits.retry_after(OAUTH_REGISTRATION),
                                                  "Cache-Control": "no-store"})
    try:
        body = await request.json()  # app.strict_input: application/json, size, depth, UTF-8, NUL
    except ClientException as exc:
        if exc.status_code != 400:
            raise  # 413 and 415 are HTTP's answers, problem+json like every JSON route
        return Response({"error": "invalid_client_metadata", "error_description": exc.detail},
                        status_code=400, headers={"Cache-Control": "no-store"})  # RFC 7591 §3.2.2
    status, payload = await register_client(oauth_store, body)
    return Response(payload, status_code=status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


# --- RP-initiated logout ---------------------------------------------------------------------------


async def _sign_out(request: Request[Any, Any, Any]) -> None:
    from federation.oauth.sso import AS_SID_KEY, SSO_SID_KEY, end_sso_session

    session = request.session if request.scope.get("session") else {}
    # Every host's session tied to this sign-in ends too (federation/oauth/sso.py).
    await end_sso_session(request.app, session.get(AS_SID_KEY) or session.get(SSO_SID_KEY))
    request.set_session({})
    rotate_session_id(request)


@route("/oauth/logout", http_method=["GET", "POST"], name="oauth:logout", cache_control=NO_STORE,
       opt={"exclude_from_csrf": True}, status_code=200, media_type=MediaType.HTML, dependencies=DEPENDENCIES)
async def logout(request: Request[Any, Any, Any], db_session: AsyncSession, oauth_store: OAuthStore,
                 settings: Settings) -> Any:
    """OIDC RP-Initiated Logout 1.0 (GET, or a cross-site POST form; hence no CSRF here). With a
    valid ``id_token_hint`` for the signed-in user the sign-out happens at once; otherwise the user
    is sent to a confirmation page whose form is CSRF-protected."""
    return await _end_session(request, db_session, oauth_store, settings)


@get("/oauth/logout/confirm", name="oauth:logout-confirm-page", guards=[requires_user], cache_control=NO_STORE,
     dependencies=DEPENDENCIES)
async def logout_confirm_page(oauth_store: OAuthStore, client_id: str = "", redirect_uri: str = "") -> Template:
    client = await oauth_store.get_client(client_id) if client_id else None
    shown = redirect_uri if await _is_registered_logout_uri(oauth_store, redirect_uri) else ""
    return Template("oauth/logout_confirm.html", headers={"Cache-Control": "no-store"}, media_type=PAGE,
                    context={"client": client, "redirect_uri": shown})


async def _end_session(request: Request[Any, Any, Any], db_session: AsyncSession, store: OAuthStore,
                       settings: Settings) -> Any:
    from federation.oauth.logout import validate_end_session

    user: User | None = request.user if isinstance(request.user, User) else None
    oreq = await oauth_request(request, settings)
    keyset = await public_key_set(db_session, settings.secret_key)
    ctx = await make_context(store, settings)
    try:
        ended = await anyio.to_thread.run_sync(lambda: validate_end_session(ctx, keyset, oreq))
    except OAuth2Error as exc:
        return error_page(exc)
    hint_matches = ended.id_token_claims is not None and user is not None and \
        ended.id_token_claims.get("sub") == str(user.id)
    if user is not None and not hint_matches:
        confirm = {"client_id": ended.client.client_id if ended.client else "",
                   "redirect_uri": ended.redirect_uri or ""}
        return Redirect("/oauth/logout/confirm?" + urlencode({k: v for k, v in confirm.items() if v}),
                        status_code=303)
    frontchannel = await _frontchannel_targets(store, user, request)
    if user is not None:
        await _sign_out(request)
    return _after_logout(frontchannel, ended.redirect_uri)


@post("/oauth/logout/confirm", name="oauth:logout-confirm", guards=[requires_user], cache_control=NO_STORE,
      media_type=MediaType.HTML, dependencies=DEPENDENCIES)
async def logout_confirm(request: Request[Any, Any, Any], oauth_store: OAuthStore) -> Any:
    redirect_uri = (await parse_form(request, LogoutConfirmForm)).redirect_uri
    user = request.user
    frontchannel = await _frontchannel_targets(oauth_store, user, request)
    await _sign_out(request)
    # Only a URI the logout endpoint validated is echoed back; check it again rather than trust the form.
    return _after_logout(frontchannel, redirect_uri if await _is_registered_logout_uri(oauth_store, redirect_uri)
                         else None)


async def _is_registered_logout_uri(store: OAuthStore, uri: str) -> bool:
    if not uri:
        return False
    base = uri.split("?", 1)[0]
    return any(base in client.post_logout_redirect_uris for client in await store.list_clients())


async def _frontchannel_targets(store: OAuthStore, user: User | None,
                                request: Request[Any, Any, Any]) -> list[str]:
    """Front-channel logout URIs of the apps this browser session signed in to (OIDC Front-Channel 1.0)."""
    if user is None:
        return []
    from federation.oauth.sso import frontchannel_logout_uris

    sid = request.session.get("oauth_sid") if request.scope.get("session") else None
    settings: Settings = request.app.state.settings
    return await frontchannel_logout_uris(store, user, sid, issuer=settings.base_url)


def _after_logout(frontchannel: list[str], redirect_uri: str | None) -> Any:
    if not frontchannel and redirect_uri:
        return Redirect(redirect_uri, status_code=303)
    return Template("oauth/logged_out.html", headers={"Cache-Control": "no-store"}, media_type=PAGE, context={
        "frontchannel": frontchannel, "redirect_uri": redirect_uri or "",
    })
