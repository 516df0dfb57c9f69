"""Account lifecycle hooks: other parts of the app react to a member being saved.

The account domain does not know who listens. A listener runs **inside the transaction that
saves the member** (so it is written if and only if the member is) and must not do network
I/O. Federation uses it to give each member an ActivityPub actor and signing key at sign-up,
so that reading an actor document never has to write::

    from domains.account import hooks

    hooks.on_user_saved(make_actor)  # async def make_actor(session, user) -> None
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User

UserSaved = Callable[[AsyncSession, User], Awaitable[None]]

_listeners: list[UserSaved] = []


def on_user_saved(listener: UserSaved) -> UserSaved:
    """Register ``listener`` (idempotent); usable as a decorator."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


async def user_saved(session: AsyncSession, user: User) -> None:
    """Run every listener for a member just created or whose profile changed."""
    for listener in _listeners:
        await listener(session, user)
