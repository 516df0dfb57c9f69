"""Finding things on the hub: who liked or boosted a note, the notes carrying a hashtag, and
search over accounts, notes and hashtags. Every answer keeps the hub's rules: blocks either way
hide an account and its notes, limited domains stay out of the wide views, and a note is found
only where the member may see it (:func:`federation.activitypub.moderation.may_see`)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from sqlalchemy import Select, distinct, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from federation.activitypub.core import Federation
from federation.activitypub.hashtags import normalize
from federation.activitypub.models import Actor, Announce, APObject, Follow, Hashtag, Like, Notification
from federation.activitypub.moderation import hidden_from, limited_unfollowed, may_see
from federation.social.paging import Cursor, newer_than, older_than
from federation.social.schemas import NoteView
from federation.social.services.timelines import Timelines
from federation.social.services.views import note_views

Reaction = Literal["like", "boost"]
SEARCH_SCAN = 200  # notes matched by text before the visibility rule picks the page (bounded work)


def like_pattern(text: str) -> str:
    """``text`` as a literal inside an ILIKE pattern (``%`` and ``_`` are not wildcards here)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Discovery:
    """Reactions, hashtags and search for one member, over this request's :class:`Federation`."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.session: AsyncSession = fed.session
        self.timelines = Timelines(fed)

    async def me(self, user: User) -> Actor:
        return await self.fed.local_actor_for_user(user)

    async def reactors(self, user: User, oid: UUID, kind: Reaction, *, before: UUID | None = None,
                       size: int = 40) -> tuple[list[tuple[UUID, Actor]], Actor]:
        """Who liked (or boosted) a note the member may see, newest first, as (row id, actor):
        the row ids are the paging cursor (UUIDv7, so ordered by time). 404 for a hidden note."""
        me = await self.me(user)
        obj = await self.timelines.visible(me, oid)
        row: Any = Like if kind == "like" else Announce
        query = select(row.id, Actor).join(Actor, Actor.uri == row.actor).where(
            row.object_id == obj.ap_id, row.actor.not_in(hidden_from(me.uri)), Actor.gone.is_(False))
        if before is not None:
            query = query.where(row.id < before)
        rows = (await self.session.execute(query.order_by(row.id.desc()).limit(size))).tuples().all()
        return [(rid, actor) for rid, actor in rows], me

    async def tagged(self, user: User, tag: str, cursor: Cursor | None, *, size: int, newer: Cursor | None = None,
                     oldest_first: bool = False, local_only: bool = False) -> tuple[Actor, list[NoteView]]:
        """Public notes, local and received, carrying ``tag``; newest first, keyset paged as the
        other timelines are. Only public notes, as Mastodon's tag timeline."""
        me = await self.me(user)
        name = normalize(tag)
        if not name:
            return me, []
        order = (APObject.published.asc(), APObject.id.asc()) if oldest_first else \
            (APObject.published.desc(), APObject.id.desc())
        query = select(APObject).join(Hashtag, Hashtag.object_id == APObject.id).where(
            Hashtag.name == name, APObject.deleted.is_(False), APObject.visibility == "public",
            APObject.attributed_to.not_in(hidden_from(me.uri)))
        if local_only:
            query = query.where(APObject.local)
        if (limited := await limited_unfollowed(self.session, me.uri)) is not None:
            query = query.where(APObject.attributed_to.not_in(limited))
        if (older := older_than(APObject.published, APObject.id, cursor)) is not None:
            query = query.where(older)
        if (after := newer_than(APObject.published, APObject.id, newer)) is not None:
            query = query.where(after)
        objs = list((await self.session.scalars(query.order_by(*order).limit(size))).all())
        if oldest_first:
            objs.reverse()
        return me, await note_views(self.session, me, objs)

    async def accounts(self, user: User, q: str, *, size: int, offset: int = 0) -> list[Actor]:
        """Accounts by username or display name: this instance's members, and the remote accounts
        we know by their ``user@host`` (never fetched here: resolving is the caller's choice)."""
        me = await self.me(user)
        wanted = q.strip().removeprefix("@")
        name, _, host = wanted.partition("@")
        if not name:
            return []
        pattern = like_pattern(name.lower())
        query: Select[Any] = select(Actor).where(Actor.gone.is_(False), Actor.uri.not_in(hidden_from(me.uri)))
        if host:
            query = query.where(func.lower(Actor.username) == name.lower(), Actor.domain == host.lower())
        else:
            query = query.where(Actor.local, Actor.user_id.is_not(None), or_(
                func.lower(Actor.username).like(pattern + "%", escape="\\"),
                func.lower(Actor.name).like("%" + pattern + "%", escape="\\")))
        # Exact usernames first, then the rest by name: what a member typing a handle expects.
        exact = func.lower(Actor.username) == name.lower()
        query = query.order_by(exact.desc(), Actor.username, Actor.id).offset(offset).limit(size)
        return list((await self.session.scalars(query)).all())

    async def statuses(self, user: User, q: str, *, size: int, offset: int = 0) -> tuple[Actor, list[NoteView]]:
        """Notes whose text contains ``q`` that the member may see, newest first. The database
        narrows by text and visibility (public notes, the member's own, followers-only notes of
        accounts followed, notes mentioning the member); :func:`may_see` decides each."""
        me = await self.me(user)
        words = q.strip()
        if not words:
            return me, []
        following = select(Follow.followee).where(Follow.follower == me.uri, Follow.state == "accepted")
        pattern = "%" + like_pattern(words.lower()) + "%"
        query = select(APObject).where(
            APObject.deleted.is_(False), func.lower(APObject.content).like(pattern, escape="\\"),
            APObject.attributed_to.not_in(hidden_from(me.uri)),
            or_(APObject.visibility.in_(("public", "unlisted")), APObject.attributed_to == me.uri,
                (APObject.visibility == "followers") & APObject.attributed_to.in_(following),
                APObject.ap_id.in_(select(Notification.object_id).where(
                    Notification.user_id == user.id, Notification.kind.in_(("mention", "reply"))))))
        if (limited := await limited_unfollowed(self.session, me.uri)) is not None:
            query = query.where(or_(APObject.attributed_to.not_in(limited), APObject.attributed_to == me.uri))
        candidates = (await self.session.scalars(query.order_by(
            APObject.published.desc(), APObject.id.desc()).limit(SEARCH_SCAN))).all()
        followed = set((await self.session.scalars(following)).all())
        shown = [o for o in candidates if may_see(o, me, o.attributed_to in followed)][offset:offset + size]
        return me, await note_views(self.session, me, shown)

    async def hashtags(self, user: User, q: str, *, size: int, offset: int = 0) -> list[tuple[str, int]]:
        """Hashtags in use starting with ``q`` (``#`` optional), with how many notes carry each.

        Only tags of notes anybody may read count: public and unlisted, not deleted, by accounts
        not hidden from the member (blocks, mutes, limited domains), so a followers-only or direct
        note's tag is never revealed by a search (Mastodon's trends count the same notes)."""
        me = await self.me(user)
        name = normalize(q)
        if not name:
            return []
        count = func.count(distinct(Hashtag.object_id))
        query = select(Hashtag.name, count).join(APObject, APObject.id == Hashtag.object_id).where(
            Hashtag.name.like(like_pattern(name) + "%", escape="\\"), APObject.deleted.is_(False),
            APObject.visibility.in_(("public", "unlisted")), APObject.attributed_to.not_in(hidden_from(me.uri)))
        if (limited := await limited_unfollowed(self.session, me.uri)) is not None:
            query = query.where(or_(APObject.attributed_to.not_in(limited), APObject.attributed_to == me.uri))
        rows = (await self.session.execute(query.group_by(Hashtag.name).order_by(
            (Hashtag.name == name).desc(), count.desc(), Hashtag.name).offset(offset).limit(size))).tuples().all()
        return [(n, int(c)) for n, c in rows]
