"""OAuth tables: clients, authorization codes, tokens (with refresh-token families) and consents.

No secret is stored in the clear: client secrets, authorization codes, access tokens and refresh
tokens are kept as SHA-256 digests (each carries at least 256 bits of randomness, so a fast hash
is enough, as for personal access tokens).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column


class OAuthClient(UUIDv7AuditBase):
    """A registered application (relying party)."""

    __tablename__ = "oauth_client"

    client_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(100))
    # SHA-256 hex digest of the client secret; None for public clients.
    secret_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # "client_secret_basic", "client_secret_post" or "none" (public).
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="client_secret_basic")
    redirect_uris: Mapped[list[str]] = mapped_column(JsonB, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JsonB, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JsonB, default=list)
    # Space-separated scopes the client may ask for.
    scope: Mapped[str] = mapped_column(Text, default="")
    # First-party apps (the co-op's own domains) skip the consent screen.
    is_first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    # "RS256" or "EdDSA".
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="RS256")
    # Front-channel logout (OIDC Front-Channel Logout 1.0): loaded in an iframe on sign-out.
    frontchannel_logout_uri: Mapped[str | None] = mapped_column(String(2048), default=None)
    # Dynamically registered (RFC 7591) rather than by an administrator.
    is_dynamic: Mapped[bool] = mapped_column(Boolean, default=False)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("account_user.id", ondelete="SET NULL"), default=None
    )
    # Registered through the Mastodon client API (``POST /api/v1/apps``): its home page, and PKCE
    # only where the app offers it. Mastodon's apps (Elk, Mastodon.py, Tusky) are confidential
    # clients that never send a code_challenge; RFC 9700 §2.1.1 lets a confidential client rely on
    # its secret instead. Every other client keeps PKCE mandatory.
    website: Mapped[str | None] = mapped_column(String(2048), default=None)
    pkce_optional: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"


class OAuthAuthorizationCode(UUIDv7AuditBase):
    __tablename__ = "oauth_authorization_code"

    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_pk: Mapped[UUID] = mapped_column(ForeignKey("oauth_client.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(Text, default="")
    nonce: Mapped[str | None] = mapped_column(String(255), default=None)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10), default="S256")
    auth_time: Mapped[int] = mapped_column(default=0)
    sid: Mapped[str | None] = mapped_column(String(64), default=None)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # The token family the exchange created: a replayed code revokes it.
    family_id: Mapped[UUID | None] = mapped_column(default=None)


class OAuthToken(UUIDv7AuditBase):
    """One access token and (optionally) its refresh token.

    Every token issued by one authorization (a code exchange and all its refreshes) shares a
    ``family_id``. A refresh token works once (``refreshed_at`` is set when it is rotated);
    presenting it again revokes the whole family (RFC 9700 §4.14.2).
    """

    __tablename__ = "oauth_token"
    __table_args__ = (Index("ix_oauth_token_user_client", "user_id", "client_pk"),)

    client_pk: Mapped[UUID] = mapped_column(ForeignKey("oauth_client.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), default=None)
    family_id: Mapped[UUID] = mapped_column(index=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    scope: Mapped[str] = mapped_column(Text, default="")
    issued_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    access_expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    refresh_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class OAuthConsent(UUIDv7AuditBase):
    """The scopes a user granted a (third-party) client; listed under "applications you authorised"."""

    __tablename__ = "oauth_consent"
    __table_args__ = (UniqueConstraint("user_id", "client_pk", name="uq_oauth_consent_user_client"),)

    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    client_pk: Mapped[UUID] = mapped_column(ForeignKey("oauth_client.id", ondelete="CASCADE"))
    scopes: Mapped[list[str]] = mapped_column(JsonB, default=list)


class OAuthServerSetting(UUIDv7AuditBase):
    """Switches an administrator can flip at run time (e.g. dynamic client registration)."""

    __tablename__ = "oauth_server_setting"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    value: Mapped[str] = mapped_column(Text, default="")
