"""authlib's framework-neutral authorization server behind a small Litestar adapter.

authlib is synchronous: it calls ``query_client``, ``save_token`` and the grant hooks as plain
functions. We run each authlib call in a worker thread (``anyio.to_thread``), and the hooks reach
the request's async database session back on the event loop through ``anyio.from_thread.run``;
the handler awaits the thread, so the session is never used by two tasks at once. A fresh
server object is built per request around a :class:`Context` (it is a handful of small objects).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.from_thread
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode, UserInfo

from domains.account.models import User
from federation.oauth.models import OAuthAuthorizationCode, OAuthClient
from federation.oauth.scopes import SCOPE_TEXT, USER_SCOPES, split_scope
from federation.oauth.signing import ID_TOKEN_TTL, SigningKey
from federation.oauth.store import (
    ACCESS_TTL,
    FoundToken,
    OAuthStore,
    new_access_token,
    new_family,
    new_refresh_token,
    now,
    secret_matches,
)

T = TypeVar("T")

CONFIDENTIAL_AUTH = ["client_secret_basic", "client_secret_post"]
ANY_AUTH = [*CONFIDENTIAL_AUTH, "none"]


# --- request/response adapters --------------------------------------------------------------


class FormPayload(OAuth2Payload):  # type: ignore[misc]
    """Query string plus form body, first value wins in ``data``; all values in ``datalist``."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class LitestarOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """An authlib request built from a Litestar request whose form was already awaited.

    ``headers`` must be Litestar's case-insensitive headers (authlib looks up ``Authorization``).
    The transport check of ``OAuth2Request.__init__`` is skipped: BASE_URL decides the scheme.
    """

    def __init__(self, method: str, uri: str, headers: Mapping[str, str],
                 query: Iterable[tuple[str, str]], form: Iterable[tuple[str, str]]) -> None:
        query, form = list(query), list(form)
        self.method = method
        self.uri = uri
        self.headers = headers
        self._body = None
        self.payload = FormPayload(query + form)
        self._args = {k: v for k, v in reversed(query)}
        self._form = {k: v for k, v in reversed(form)}
        self.client: ClientView | None = None
        self.auth_method: str | None = None
        self.user: User | None = None
        self.authorization_code: CodeView | None = None
        self.refresh_token: TokenView | None = None
        self.credential = None
        self._scope = None
        self.family_id = new_family()

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class OAuthResult:
    """What authlib's ``handle_response`` returns; ``location`` is settable (RFC 9207 needs it)."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "location":
                return value
        return None

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(n, v) for n, v in self.headers if n.lower() != "location"] + [("Location", value)]


# --- the request context ----------------------------------------------------------------------


@dataclass
class Context:
    store: OAuthStore
    issuer: str
    keys: Mapping[str, SigningKey]
    sid: str | None = None
    auth_time: int | None = None

    def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run an async store call on the event loop from authlib's worker thread."""
        return anyio.from_thread.run(fn, *args)

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return anyio.from_thread.run(fn)


# --- model views (authlib's mixins over our rows) -------------------------------------------


class ClientView(ClientMixin):  # type: ignore[misc]
    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id
        self.client_metadata = {"post_logout_redirect_uris": list(row.post_logout_redirect_uris)}
        self.id_token_signed_response_alg = row.id_token_signed_response_alg

    @property
    def is_public(self) -> bool:
        return self.row.is_public

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only when unambiguous; OIDC requests always carry redirect_uri anyway.
        uris = self.row.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        allowed = split_scope(self.row.scope)
        if not scope:
            return " ".join(allowed)
        wanted = split_scope(scope)
        if any(s not in allowed for s in wanted):
            return None  # -> invalid_scope: never silently narrow
        return " ".join(wanted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison (RFC 9700 §4.1.3): no prefix, path or query leeway.
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.is_public:
            return method == "none" and endpoint in {"token", "revocation"}
        return method in CONFIDENTIAL_AUTH

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and self.row.is_public:
            return False
        return grant_type in self.row.grant_types


class CodeView(AuthorizationCodeMixin):  # type: ignore[misc]
    def __init__(self, row: OAuthAuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return self.row.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None


class TokenView(TokenMixin):  # type: ignore[misc]
    def __init__(self, found: FoundToken) -> None:
        self.found = found
        self.row = found.row
        self.scope = found.row.scope

    def check_client(self, client: ClientView) -> bool:
        return self.row.client_pk == client.row.id

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return int((self.row.access_expires_at - self.row.issued_at).total_seconds())

    def is_expired(self) -> bool:
        expires = self.row.access_expires_at if self.found.matched == "access" else self.row.refresh_expires_at
        return expires is not None and expires <= now()

    def is_revoked(self) -> bool:
        if self.row.revoked_at is not None:
            return True
        return self.found.matched == "refresh" and self.row.refreshed_at is not None

    def get_user(self) -> None:
        return None

    def get_client(self) -> ClientView:
        return ClientView(self.found.client)


def _ctx(obj: Any) -> Context:
    ctx: Context = obj.server.ctx
    return ctx


# --- grants ------------------------------------------------------------------------------------


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 for every client, confidential ones too (RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") and not data.get("code_challenge_method") \
                and grant.request.client.row.pkce_optional:
            return  # a Mastodon API app without PKCE: its client secret authenticates the exchange
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' with code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        code = grant.request.authorization_code
        if code is not None and not code.code_challenge and not grant.request.form.get("code_verifier") \
                and grant.request.client.row.pkce_optional and not grant.request.client.is_public:
            return  # authorised without PKCE (above), and the secret was checked
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_AUTH

    def save_authorization_code(self, code: str, request: LitestarOAuth2Request) -> None:
        ctx = _ctx(self)
        data = request.payload.data
        assert request.client is not None and request.user is not None
        client_row, user = request.client.row, request.user
        ctx.call(lambda: ctx.store.save_code(
            code=code,
            client=client_row,
            user=user,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge") or "",
            code_challenge_method=data.get("code_challenge_method", "S256"),
            auth_time=ctx.auth_time or int(time.time()),
            sid=ctx.sid,
        ))

    def query_authorization_code(self, code: str, client: ClientView) -> CodeView | None:
        ctx = _ctx(self)
        row = ctx.run(ctx.store.find_code, code, client.row)
        return CodeView(row) if row is not None else None

    def delete_authorization_code(self, authorization_code: CodeView) -> None:
        ctx = _ctx(self)
        if not ctx.run(ctx.store.claim_code, authorization_code.row, self.request.family_id):
            raise InvalidGrantError("The authorization code was already used.")

    def authenticate_user(self, authorization_code: CodeView) -> User | None:
        ctx = _ctx(self)
        return ctx.run(ctx.store.get_user, authorization_code.row.user_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_AUTH
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> TokenView | None:
        ctx = _ctx(self)
        found = ctx.run(ctx.store.find_refresh_token, refresh_token)
        return TokenView(found) if found is not None else None

    def authenticate_user(self, refresh_token: TokenView) -> User | None:
        ctx = _ctx(self)
        return ctx.run(ctx.store.get_user, refresh_token.row.user_id)

    def revoke_old_credential(self, refresh_token: TokenView) -> None:
        ctx = _ctx(self)
        if not ctx.run(ctx.store.mark_refreshed, refresh_token.row):
            raise InvalidGrantError("The refresh token was already used.")


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if USER_SCOPES & set(split_scope(self.request.payload.scope)):
            from authlib.oauth2.rfc6749 import InvalidScopeError

            raise InvalidScopeError("Scopes about a user need a user: use the authorization code flow.")


class OpenIDCodeExtension(OpenIDCode):  # type: ignore[misc]
    def __init__(self, ctx: Context) -> None:
        super().__init__(require_nonce=False)
        self.ctx = ctx

    def exists_nonce(self, nonce: str, request: LitestarOAuth2Request) -> bool:
        return self.ctx.run(self.ctx.store.nonce_used, request.payload.client_id, nonce)

    def _key(self, client: ClientView) -> SigningKey:
        return self.ctx.keys.get(client.id_token_signed_response_alg) or self.ctx.keys["RS256"]

    def get_client_algorithm(self, client: ClientView) -> str:
        return self._key(client).alg

    def resolve_client_private_key(self, client: ClientView) -> Any:
        return self._key(client).key

    def get_encode_header(self, client: ClientView) -> dict[str, str]:
        key = self._key(client)
        return {"alg": key.alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: ClientView) -> dict[str, Any]:
        issued = int(time.time())
        return {"iss": self.ctx.issuer, "aud": client.get_client_id(), "iat": issued, "exp": issued + ID_TOKEN_TTL}

    def get_authorization_code_claims(self, authorization_code: CodeView) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if authorization_code.row.sid:
            claims["sid"] = authorization_code.row.sid
        return claims

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(user_claims(user, scope, self.ctx.issuer))


def user_claims(user: User, scope: str, issuer: str) -> dict[str, Any]:
    scopes = set(split_scope(scope))
    claims: dict[str, Any] = {"sub": str(user.id)}
    if "profile" in scopes:
        claims.update(
            name=user.name,
            preferred_username=user.username,
            nickname=user.username,
            profile=f"{issuer}/@{user.username}",
            updated_at=int(user.updated_at.timestamp()),
        )
    if "email" in scopes:
        claims.update(email=user.email, email_verified=False)
    return claims


# --- endpoints ---------------------------------------------------------------------------------


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ANY_AUTH

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        ctx: Context = self.server.ctx
        found = ctx.run(ctx.store.find_token, token_string, token_type_hint)
        return TokenView(found) if found is not None else None

    def revoke_token(self, token: TokenView, request: LitestarOAuth2Request) -> None:
        ctx: Context = self.server.ctx
        ctx.run(ctx.store.revoke, token.found)


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662 for confidential clients: their own tokens, or any token for first-party servers."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        ctx: Context = self.server.ctx
        found = ctx.run(ctx.store.find_token, token_string, token_type_hint)
        return TokenView(found) if found is not None else None

    def check_permission(self, token: TokenView, client: ClientView, request: LitestarOAuth2Request) -> bool:
        if client.is_public:
            return False
        return token.check_client(client) or client.row.is_first_party

    def introspect_token(self, token: TokenView) -> dict[str, Any]:
        ctx: Context = self.server.ctx
        row = token.row
        user = ctx.run(ctx.store.get_user, row.user_id)
        expires = row.access_expires_at if token.found.matched == "access" else row.refresh_expires_at
        payload: dict[str, Any] = {
            "active": True,
            "scope": row.scope,
            "client_id": token.found.client.client_id,
            "token_type": "Bearer" if token.found.matched == "access" else "refresh_token",
            "iat": int(row.issued_at.timestamp()),
            "iss": ctx.issuer,
            "aud": token.found.client.client_id,
        }
        if expires is not None:
            payload["exp"] = int(expires.timestamp())
        if user is not None:
            payload["sub"] = str(user.id)
            payload["username"] = user.username
        return payload


class Issuer(IssuerParameter):  # type: ignore[misc]
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


# --- the server --------------------------------------------------------------------------------


class RoseAshAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, ctx: Context) -> None:
        super().__init__(scopes_supported=list(SCOPE_TEXT))
        self.ctx = ctx
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: new_access_token(),
                refresh_token_generator=lambda **_: new_refresh_token(),
                expires_generator=lambda client, grant_type: int(ACCESS_TTL.total_seconds()),
            ),
        )
        self.register_grant(AuthorizationCodeGrant, [S256Challenge(required=True), OpenIDCodeExtension(ctx)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_extension(Issuer(ctx.issuer))

    def query_client(self, client_id: str) -> ClientView | None:
        row = self.ctx.run(self.ctx.store.get_client, client_id)
        return ClientView(row) if row is not None else None

    def save_token(self, token: dict[str, Any], request: LitestarOAuth2Request) -> None:
        assert request.client is not None
        # A refresh continues its family; a code exchange starts a new one.
        family = request.refresh_token.row.family_id if request.refresh_token is not None else request.family_id
        client_row, user = request.client.row, request.user
        self.ctx.call(lambda: self.ctx.store.save_token(
            client=client_row,
            user=user,
            family_id=family,
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            scope=token.get("scope", ""),
            expires_in=int(token.get("expires_in", ACCESS_TTL.total_seconds())),
        ))

    def create_oauth2_request(self, request: LitestarOAuth2Request) -> LitestarOAuth2Request:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: Iterable[tuple[str, str]]) -> OAuthResult:
        return OAuthResult(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None
