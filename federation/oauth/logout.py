"""OIDC RP-Initiated Logout through authlib's ``EndSessionEndpoint`` (validation only; the
handler ends the session)."""

from __future__ import annotations

from typing import Any

from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from joserfc.jwk import KeySet

from federation.oauth.server import Context, LitestarOAuth2Request, RoseAshAuthorizationServer


class EndSession(EndSessionEndpoint):  # type: ignore[misc]
    def __init__(self, server: Any, keyset: KeySet) -> None:
        super().__init__(server)
        self.keyset = keyset

    def get_server_jwks(self) -> KeySet:
        return self.keyset

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        return None  # the Litestar handler clears the session


def validate_end_session(ctx: Context, keyset: KeySet, oreq: LitestarOAuth2Request) -> EndSessionRequest:
    """Run in a worker thread: checks id_token_hint (signature, issuer; expiry ignored), client and
    post_logout_redirect_uri (exact match with a registered one). Raises OAuth2Error."""
    server = RoseAshAuthorizationServer(ctx)
    endpoint = EndSession(server, keyset)
    result: EndSessionRequest = endpoint.validate_request(oreq)
    claims = result.id_token_claims
    if claims is not None and claims.get("iss") != ctx.issuer:
        from authlib.oauth2.rfc6749 import InvalidRequestError

        raise InvalidRequestError("id_token_hint was not issued here.")
    return result
