"""Who is asking: the kernel's view of a member, and the port through which it looks one up.

The kernel authenticates requests (app/security.py) but owns no accounts. It reads a member
through :class:`UserRead`, the attributes every guard needs, and finds one through an
:class:`IdentityProvider` that the composition root builds from the installed domains
(app/factory.py: the account domain for sessions and personal tokens, OAuth for its tokens).

The shared read model itself is ``domains.account.models.User``: it satisfies ``UserRead``, it is
what ``request.user`` holds, and it is the one model another domain may import from account
(ARCHITECTURE.md "Layers"). A msgspec copy would have to be rebuilt on every request and could
not be the target of the posts', repositories' and grants' relationships, so the contract is the
model, named here and in domains/account/__init__.py, and narrowed to this protocol for the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["IdentityProvider", "TokenGrant", "UserRead"]


class UserRead(Protocol):
    """The member as the kernel's guards and logs read it (``domains.account.models.User``)."""

    @property
    def username(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...

    @property
    def can_author(self) -> bool: ...

    @property
    def can_sell(self) -> bool: ...

    @property
    def session_epoch(self) -> int: ...


@dataclass(frozen=True)
class TokenGrant:
    """A member reached through a bearer secret, with what the secret allows."""

    user: UserRead
    scopes: frozenset[str]
    token_id: str


class IdentityProvider(Protocol):
    """Looks members up for the authentication middleware; every method reads only."""

    async def user_for_session(self, db: AsyncSession, user_id: str) -> UserRead | None:
        """The active member a session cookie names, or None."""

    async def user_for_token(self, db: AsyncSession, secret: str) -> TokenGrant | None:
        """The member behind a personal access token (``rat_…``), or None if unknown or revoked."""

    async def user_for_oauth_token(self, db: AsyncSession, secret: str) -> TokenGrant | None:
        """The member behind an OAuth access token (``roa_…``); None also for a token that acts
        for no member (client credentials)."""
