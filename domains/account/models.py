"""Account tables: users, their personal access tokens and the one-time links mailed to them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship


class User(UUIDv7AuditBase):
    __tablename__ = "account_user"

    username: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    bio: Mapped[str] = mapped_column(Text, default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Blog roles, Ghost's: an author writes and publishes their own posts; an editor edits and
    # publishes every post and chooses any post's authors (administrators may do both).
    is_author: Mapped[bool] = mapped_column(Boolean, default=False)
    is_editor: Mapped[bool] = mapped_column(Boolean, default=False)
    # Market role: a producer manages the producer profiles they are a member of and their products.
    is_producer: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped when the password changes so other sessions of this user end.
    session_epoch: Mapped[int] = mapped_column(default=0)
    # When the member followed a link mailed to ``email`` (sign-up, reset, invite or an address
    # change). None: not confirmed; they can still sign in, and their account pages say so.
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    tokens: Mapped[list[AccessToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="raise"
    )

    @property
    def name(self) -> str:
        return self.display_name or self.username

    @property
    def can_author(self) -> bool:
        return self.is_active and (self.is_author or self.is_editor or self.is_admin)

    @property
    def can_edit_all_posts(self) -> bool:
        """Editors and administrators: edit and publish every post, assign any post's authors."""
        return self.is_active and (self.is_editor or self.is_admin)

    @property
    def can_sell(self) -> bool:
        """Producers (their own products) and administrators (everyone's) use the market's admin."""
        return self.is_active and (self.is_producer or self.is_admin)

    @property
    def role_names(self) -> list[str]:
        return [name for name, on in (("admin", self.is_admin), ("editor", self.is_editor),
                                      ("author", self.is_author), ("producer", self.is_producer),
                                      ("suspended", not self.is_active)) if on]


class AccessToken(UUIDv7AuditBase):
    """A personal access token. Only a SHA-256 digest of the secret is kept."""

    __tablename__ = "account_access_token"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, shown in lists so owners can tell tokens apart.
    token_hint: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JsonB, default=list)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    user: Mapped[User] = relationship(back_populates="tokens", lazy="raise")


class MailToken(UUIDv7AuditBase):
    """A one-time link mailed to a member (domains/account/tokens.py).

    Only the SHA-256 digest of the random secret is kept; the secret itself is only in the mail.
    ``purpose`` says what following the link does: ``reset`` and ``invite`` set a password,
    ``verify`` confirms the address, ``email_change`` makes ``new_email`` the member's address.
    A link is spent by one conditional UPDATE (``used_at`` set where it was NULL and the link has
    not expired), so two clicks racing can never both succeed.
    """

    __tablename__ = "account_mail_token"

    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    new_email: Mapped[str | None] = mapped_column(String(254), default=None)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
