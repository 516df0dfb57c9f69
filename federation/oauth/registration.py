"""RFC 7591 dynamic client registration: validate the metadata, create the client, answer 201."""

from __future__ import annotations

import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit

from federation.oauth.scopes import SCOPE_TEXT, split_scope
from federation.oauth.store import OAuthStore

AUTH_METHODS = {"client_secret_basic", "client_secret_post", "none"}
GRANT_TYPES = {"authorization_code", "refresh_token", "client_credentials"}


def _problem(error: str, description: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": error, "error_description": description}


def redirect_uri_problem(uri: Any) -> str | None:
    """RFC 9700 §4.1.1 / RFC 8252: https, or http on loopback, or a private-use scheme; no fragment."""
    if not isinstance(uri, str) or not uri or len(uri) > 2000:
        return "must be a non-empty string"
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "is not a URI"
    if parts.fragment:
        return "must not contain a fragment"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        if host == "localhost":
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        return "http is only allowed for loopback addresses"
    if "." in parts.scheme and parts.scheme not in {"http", "https"}:
        return None  # a native app's private-use scheme, e.g. com.example.app:/callback
    return "must use https (or http on a loopback address)"


async def register_client(store: OAuthStore, body: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict):
        return _problem("invalid_client_metadata", "The body must be a JSON object.")
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        return _problem("invalid_redirect_uri", "redirect_uris must be a non-empty array.")
    for uri in uris:
        if problem := redirect_uri_problem(uri):
            return _problem("invalid_redirect_uri", f"redirect_uri {problem}.")
    logout_uris = body.get("post_logout_redirect_uris", [])
    if not isinstance(logout_uris, list) or any(redirect_uri_problem(u) for u in logout_uris):
        return _problem("invalid_client_metadata", "post_logout_redirect_uris must be valid redirect URIs.")
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        return _problem("invalid_client_metadata", "Unsupported token_endpoint_auth_method.")
    grant_types = body.get("grant_types", ["authorization_code"])
    if not isinstance(grant_types, list) or not set(grant_types) <= GRANT_TYPES:
        return _problem("invalid_client_metadata", "Unsupported grant_types (implicit and password are not offered).")
    if method == "none" and "client_credentials" in grant_types:
        return _problem("invalid_client_metadata", "A public client cannot use client_credentials.")
    response_types = body.get("response_types", ["code"])
    if response_types != ["code"]:
        return _problem("invalid_client_metadata", "Only response_types [\"code\"] is supported.")
    scope = body.get("scope", "openid profile email")
    if not isinstance(scope, str) or any(s not in SCOPE_TEXT for s in split_scope(scope)):
        return _problem("invalid_client_metadata", "Unknown scope.")
    name = body.get("client_name", "")
    if not isinstance(name, str) or len(name) > 100:
        return _problem("invalid_client_metadata", "client_name must be a string of at most 100 characters.")
    alg = body.get("id_token_signed_response_alg", "RS256")
    if alg not in {"RS256", "EdDSA"}:
        return _problem("invalid_client_metadata", "id_token_signed_response_alg must be RS256 or EdDSA.")
    client, secret = await store.create_client(
        name=name.strip() or "Unnamed application",
        redirect_uris=uris,
        public=method == "none",
        scope=" ".join(split_scope(scope)),
        grant_types=list(dict.fromkeys(grant_types)),
        post_logout_redirect_uris=logout_uris,
        id_token_alg=alg,
        dynamic=True,
    )
    if method == "client_secret_post":
        client.token_endpoint_auth_method = method
    payload: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(time.time()),
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": client.scope,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
    }
    if secret is not None:
        payload["client_secret"] = secret
        payload["client_secret_expires_at"] = 0
    return 201, payload
