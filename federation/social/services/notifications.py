"""A member's notifications: the page of them (marked read once shown) and the unread count."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from federation.activitypub.models import APObject, Notification
from federation.activitypub.moderation import hidden_from, limited_unfollowed, muted_by
from federation.activitypub.urls import Urls
from federation.social import paging
from federation.social.paging import Cursor, cut, newer_than, older_than
from federation.social.schemas import NotificationEntry, NotificationPage, account_path
from federation.social.services.views import actors_by_uri


def shown_to(user: User, me_uri: str, limited: Select[Any] | None) -> ColumnElement[bool]:
    """The member's notifications, less those from accounts hidden from them or muted with their
    notifications and, but for follow requests (which wait for an answer), from ``limited``
    (:func:`limited_unfollowed`)."""
    shown = and_(Notification.user_id == user.id, Notification.actor.not_in(hidden_from(me_uri)),
                 Notification.actor.not_in(muted_by(me_uri, notifications=True)))
    if limited is not None:
        shown = and_(shown, or_(Notification.actor.not_in(limited), Notification.kind == "follow_request"))
    return shown


class Notifications:
    def __init__(self, session: AsyncSession, urls: Urls) -> None:
        self.session = session
        self.urls = urls

    async def unread(self, user: User, me_uri: str, limited: Select[Any] | None) -> int:
        return await self.session.scalar(select(func.count()).select_from(Notification).where(
            shown_to(user, me_uri, limited), Notification.read.is_(False))) or 0

    async def page(self, user: User, cursor: Cursor | None, *, size: int = 0, newer: Cursor | None = None,
                   oldest_first: bool = False, kinds: frozenset[str] | None = None) -> NotificationPage:
        """A page of notifications, newest first; those shown are marked read. ``size``, ``newer``,
        ``oldest_first`` and ``kinds`` are the Mastodon API's paging and type filters
        (:meth:`federation.social.services.Timelines.page` says how)."""
        session = self.session
        size = size or paging.LIST_SIZE
        me_uri = self.urls.user(user.username)
        query = select(Notification).where(shown_to(user, me_uri, await limited_unfollowed(session, me_uri)))
        if (older := older_than(Notification.created_at, Notification.id, cursor)) is not None:
            query = query.where(older)
        if (after := newer_than(Notification.created_at, Notification.id, newer)) is not None:
            query = query.where(after)
        if kinds is not None:
            query = query.where(Notification.kind.in_(kinds))
        order = (Notification.created_at.asc(), Notification.id.asc()) if oldest_first else \
            (Notification.created_at.desc(), Notification.id.desc())
        rows, token = cut(list((await session.scalars(query.order_by(*order).limit(size + 1))).all()),
                          size, lambda n: (n.created_at, n.id))
        if oldest_first:
            rows, token = rows[::-1], ""
        actors = await actors_by_uri(session, {n.actor for n in rows})
        objects = {o.ap_id: o for o in (await session.scalars(select(APObject).where(
            APObject.ap_id.in_([n.object_id for n in rows if n.object_id])))).all()} if rows else {}
        entries = [NotificationEntry(notification=n, actor=actors.get(n.actor), object=objects.get(n.object_id),
                                     path=account_path(n.actor, actors.get(n.actor))) for n in rows]
        for n in rows:
            n.read = True
        return NotificationPage(entries=entries, older=token)
