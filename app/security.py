"""Authentication (session cookie or access token), guards and the CSRF/session configs.

Which credential counts is decided per route by its access declaration (app/access.py): the
session cookie on public and session routes, a token on token and git routes, neither on machine
routes. A token sent anywhere else authenticates nobody.

Members are looked up through the :class:`app.identity.IdentityProvider` the composition root
passes in: the kernel imports no domain.

One guard policy (ARCHITECTURE.md, Security): anonymous -> 401, signed in but not allowed -> 403,
a private thing the caller may not know exists -> 404. HTML callers of a 401 are redirected to the
sign-in page by the error handler.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from app.access import Access, Reach, access_of
from app.caching import note_identity_read
from app.identity import IdentityProvider, TokenGrant, UserRead
from app.sessions import LazySessionConfig
from app.settings import Settings

if TYPE_CHECKING:
    from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
    from litestar.handlers.base import BaseRouteHandler
    from litestar.types import ASGIApp

SESSION_USER_KEY = "uid"
# OAuth access tokens (federation/oauth) start with this; personal access tokens with "rat_".
OAUTH_ACCESS_PREFIX = "roa_"
SESSION_EPOCH_KEY = "epoch"

# Which paths skip cookie CSRF is declared by the domains (app/kit.py ``machine_routes`` and
# ``public_get_routes``) and collected by the composition root (app/installed.py).


class AuthInfo(msgspec.Struct, frozen=True):
    """How the caller proved who they are."""

    method: Literal["session", "token"]
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None

    def allows(self, scope: str) -> bool:
        """A session may do anything its user may; a token only what its scopes grant."""
        if self.method == "session":
            return True
        if scope in self.scopes:
            return True
        # repo:write implies repo:read, as with Gitea's scopes.
        return scope == "repo:read" and "repo:write" in self.scopes


def parse_authorization(header: str) -> str | None:
    """The secret from ``token X``, ``Bearer X`` or ``Basic base64(user:X)`` (git sends Basic)."""
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if not value:
        return None
    if scheme in {"token", "bearer"}:
        return value
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII bytes in the header
            return None
        _user, sep, password = decoded.partition(":")
        return password or None if sep else None
    return None


class AuthMiddleware(AbstractAuthenticationMiddleware):
    """Attach ``request.user`` (or None) and ``request.auth`` for every non-excluded route.

    It never refuses a request itself: guards decide. A bad Authorization header is the one
    exception, because a client that sends credentials must learn they were wrong (401).
    """

    def __init__(self, app: ASGIApp, alchemy: SQLAlchemyAsyncConfig, identity: IdentityProvider,
                 exclude: list[str]) -> None:
        super().__init__(app=app, exclude=exclude)
        self.alchemy = alchemy
        self.identity = identity

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        rule = access_of(connection.scope.get("route_handler"))
        reach = rule.reach if rule is not None else Reach.SESSION  # undeclared: the strictest reading
        if reach in (Reach.TOKEN, Reach.GIT):
            # Never the session cookie here (git, /api/): a page could otherwise drive them with it.
            return await self._token(connection)
        if reach is Reach.MACHINE:
            return AuthenticationResult(user=None, auth=None)
        # Public and session routes: the cookie only. An Authorization header is no credential here,
        # so a read-only or third-party token can never act as a full login on the HTML site.
        return await self._session(connection)

    async def _token(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header and connection.scope["path"].startswith("/api/v1/"):
            # Gitea also reads the token from ?token= or ?access_token= (discouraged: URLs are logged).
            query_token = connection.query_params.get("token") or connection.query_params.get("access_token")
            header = f"token {query_token}" if query_token else None
        if not header:
            return AuthenticationResult(user=None, auth=None)
        secret = parse_authorization(header)
        db = self.alchemy.provide_session(connection.app.state, connection.scope)
        if secret and secret.startswith(OAUTH_ACCESS_PREFIX):
            found = await self.identity.user_for_oauth_token(db, secret)
            if found is None:  # also client-credentials tokens, which act for no user
                basic = header.lower().startswith("basic")
                raise NotAuthorizedException(
                    "Invalid, expired or revoked access token.",
                    headers={"WWW-Authenticate": 'Basic realm="Rose Ash"' if basic
                             else 'Bearer realm="Rose Ash", error="invalid_token"'},
                )
            return _token_result(connection, found)
        found = await self.identity.user_for_token(db, secret) if secret else None
        if found is None:
            raise NotAuthorizedException(
                "Invalid or revoked access token.",
                headers={"WWW-Authenticate": 'Basic realm="Rose Ash"'},
            )
        return _token_result(connection, found)

    async def _session(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        if "session" not in connection.scope:
            return AuthenticationResult(user=None, auth=None)
        session = connection.session
        user_id = session.get(SESSION_USER_KEY) if session else None
        if not user_id:
            return AuthenticationResult(user=None, auth=None)
        db = self.alchemy.provide_session(connection.app.state, connection.scope)
        session_user = await self.identity.user_for_session(db, user_id)
        if session_user is None or session.get(SESSION_EPOCH_KEY, 0) != session_user.session_epoch:
            # An empty session, not Empty: the page still renders (flash messages read it) and the
            # session middleware deletes the stale one all the same.
            connection.set_session({})
            return AuthenticationResult(user=None, auth=None)
        connection.scope["rose_ash.username"] = session_user.username  # type: ignore[typeddict-unknown-key]
        return AuthenticationResult(user=session_user, auth=AuthInfo("session"))


def _token_result(connection: ASGIConnection[Any, Any, Any, Any], found: TokenGrant) -> AuthenticationResult:
    connection.scope["rose_ash.username"] = found.user.username  # type: ignore[typeddict-unknown-key]
    return AuthenticationResult(user=found.user, auth=AuthInfo("token", found.scopes, found.token_id))


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> UserRead | None:
    note_identity_read(connection.scope, "user")  # public answers must not depend on this
    user: UserRead | None = connection.scope.get("user")
    return user


def requires_user(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if current_user(connection) is None:
        raise NotAuthorizedException("Sign in to continue.")


def requires_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    user = current_user(connection)
    if user is None:
        raise NotAuthorizedException("Sign in to continue.")
    if not user.is_admin:
        raise PermissionDeniedException("Only administrators may do this.")


def _is_generated_options(handler: BaseRouteHandler) -> bool:
    """Litestar's own OPTIONS answer (an ``Allow`` header) inherits its path's opt but shows no data."""
    methods = getattr(handler, "http_methods", None)
    return methods == {"OPTIONS"} and handler.handler_name == "options_handler"


def _token_needed() -> NotAuthorizedException:
    return NotAuthorizedException(
        "An access token is required here.",
        headers={"WWW-Authenticate": 'Bearer realm="Rose Ash"'},
    )


async def access_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app-wide guard: hold every request to its route's access declaration (app/access.py).

    ``async`` although it never awaits: Litestar runs a sync guard in a worker thread, a thread
    hop on every request that cost about two thirds of a cached page's time (bench/pages.py).

    Anonymous where an account is needed -> 401 (HTML: the sign-in redirect); signed in without the
    role, or a token without the scope -> 403. Owner checks (403/404) stay with the handlers.
    """
    if _is_generated_options(handler):
        return
    rule = access_of(handler) or Access(reach=Reach.SESSION)  # undeclared: members only (and a failing test)
    if rule.reach in (Reach.PUBLIC, Reach.GIT, Reach.MACHINE):
        return
    user = current_user(connection)
    if rule.reach is Reach.SESSION:
        if user is None:
            raise NotAuthorizedException("Sign in to continue.")
        if rule.role == "admin" and not user.is_admin:
            raise PermissionDeniedException("Only administrators may do this.")
        if rule.role == "author" and not user.can_author:
            raise PermissionDeniedException("Only authors may write on the blog. Ask an administrator.")
        if rule.role == "producer" and not user.can_sell:
            raise PermissionDeniedException("Only producers may list goods on the market. Ask an administrator.")
        return
    if rule.oauth_only:
        return  # /oauth/userinfo checks its bearer token itself, with RFC 6750 §3.1 error codes
    auth = connection.scope.get("auth")
    if user is None or not isinstance(auth, AuthInfo):
        if rule.anonymous:
            return
        raise _token_needed()
    if not any(auth.allows(scope) for scope in rule.scopes):
        wanted = "' or '".join(sorted(rule.scopes))
        raise PermissionDeniedException(f"This token lacks the '{wanted}' scope.")


def make_csrf_config(settings: Settings, exclude: list[str]) -> CSRFConfig:
    """Cookie CSRF everywhere but ``exclude``: the installed domains' machine and public GET paths."""
    return CSRFConfig(
        secret=settings.secret_key,
        cookie_secure=settings.secure_cookies,
        cookie_samesite="lax",
        exclude=exclude,
    )


def make_session_config(settings: Settings) -> LazySessionConfig:
    return LazySessionConfig(
        key="rose_ash_session",
        store="sessions",
        max_age=14 * 24 * 3600,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        # Static files and git/machine endpoints never need a session.
        exclude=[r"^/static/", r"^/healthz$"],
    )
