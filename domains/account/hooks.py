"""Account lifecycle events: other parts of the app react to a member being saved.

The account domain does not know who listens: it emits :class:`MemberSaved` on the
:data:`member_saved` topic (:class:`app.events.Topic`) whenever a member is created or their
profile changes. Durable consumers subscribe a job kind (``member_saved.subscribe(kind)``: one
job each, written with the member). Federation gives each member an ActivityPub actor and
signing key **inside the transaction that saves the member** (so reading an actor document never
has to write), through the explicitly in-transaction variant; a listener of that kind must not
do network I/O::

    from domains.account import hooks

    hooks.on_user_saved(make_actor)  # async def make_actor(session, user) -> None
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import Topic
from domains.account.models import User

__all__ = ["MemberSaved", "SignInListener", "UserSavedListener", "member_created", "member_saved", "member_verified",
           "on_member_created", "on_member_verified", "on_sign_in", "on_user_saved", "signing_in", "user_created",
           "user_saved", "user_verified"]


class MemberSaved(msgspec.Struct, frozen=True):
    """A member was created or their profile changed (ids only: re-read the member)."""

    user_id: UUID


member_saved: Topic[MemberSaved] = Topic("account.member-saved", MemberSaved)
# Only when a member signs up (or is created by ``rose-ash users create``), not on later edits:
# e.g. newsletters put new members on their ``subscribe_on_signup`` lists.
member_created: Topic[MemberSaved] = Topic("account.member-created", MemberSaved)
# When a member's address becomes confirmed (verification link, reset/invitation link, address
# change): only then may anything be done in that mailbox's name, e.g. newsletters adopt the
# address's subscriptions and add the ``subscribe_on_signup`` lists.
member_verified: Topic[MemberSaved] = Topic("account.member-verified", MemberSaved)

UserSavedListener = Callable[[AsyncSession, User], Awaitable[None]]

# The in-transaction adapters made per (topic, listener), so registering a listener twice is a no-op.
_adapters: dict[tuple[str, UserSavedListener], Callable[[AsyncSession, MemberSaved], Awaitable[None]]] = {}


def _in_transaction(topic: Topic[MemberSaved], listener: UserSavedListener) -> UserSavedListener:
    """Run ``listener(session, user)`` inside the transaction that emits on ``topic`` (idempotent)."""
    if (topic.name, listener) in _adapters:
        return listener

    async def adapter(session: AsyncSession, event: MemberSaved) -> None:
        user = await session.get(User, event.user_id)
        if user is not None:
            await listener(session, user)

    _adapters[(topic.name, listener)] = adapter
    topic.subscribe_in_transaction(adapter)
    return listener


def on_user_saved(listener: UserSavedListener) -> UserSavedListener:
    """Run ``listener(session, user)`` inside the transaction that saves a member (idempotent;
    usable as a decorator). The in-transaction variant of :data:`member_saved`."""
    return _in_transaction(member_saved, listener)


def on_member_created(listener: UserSavedListener) -> UserSavedListener:
    """Run ``listener(session, user)`` inside the transaction that signs a member up (idempotent)."""
    return _in_transaction(member_created, listener)


def on_member_verified(listener: UserSavedListener) -> UserSavedListener:
    """Run ``listener(session, user)`` inside the transaction that confirms a member's address (idempotent)."""
    return _in_transaction(member_verified, listener)


async def user_created(session: AsyncSession, user: User) -> None:
    """Emit :data:`member_created` for a member who just signed up."""
    await member_created.emit(session, MemberSaved(user_id=user.id))


async def user_saved(session: AsyncSession, user: User) -> None:
    """Emit :data:`member_saved` for a member just created or whose profile changed."""
    await member_saved.emit(session, MemberSaved(user_id=user.id))


async def user_verified(session: AsyncSession, user: User) -> None:
    """Emit :data:`member_verified` for a member whose address was just confirmed."""
    await member_verified.emit(session, MemberSaved(user_id=user.id))


# Sign-in: what another domain does with the visitor's anonymous session as it becomes a member's
# (the cart merges the session's cart into the member's). A listener gets the request's database
# session, the member and the session data before it is replaced, and returns keys to carry into
# the new session (or None). It runs in the sign-in request's transaction.
SignInListener = Callable[[AsyncSession, User, Mapping[str, Any]], Awaitable[dict[str, Any] | None]]
_sign_in_listeners: list[SignInListener] = []


def on_sign_in(listener: SignInListener) -> SignInListener:
    """Call ``listener`` whenever a browser signs in (idempotent; usable as a decorator)."""
    if listener not in _sign_in_listeners:
        _sign_in_listeners.append(listener)
    return listener


async def signing_in(session: AsyncSession, user: User, old: Mapping[str, Any]) -> dict[str, Any]:
    """Run the sign-in listeners; the keys they carry into the new session."""
    carried: dict[str, Any] = {}
    for listener in _sign_in_listeners:
        carried.update(await listener(session, user, old) or {})
    return carried
