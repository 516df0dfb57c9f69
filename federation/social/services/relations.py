"""How the member and other accounts relate: follow, unfollow, answer follow requests, lock the
account, and the Following and Followers lists."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from litestar.exceptions import NotFoundException
from sqlalchemy import select

from domains.account.models import User
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, Follow, Mute
from federation.activitypub.moderation import blocks, muted_by
from federation.activitypub.outbox import Outbox
from federation.social import paging
from federation.social.paging import Cursor, cut, older_than
from federation.social.schemas import (
    FollowEntry,
    FollowPage,
    FollowResult,
    Relation,
    account_path,
)
from federation.social.services.lists import KeysetPage, keyset_page
from federation.social.services.views import actors_by_uri

Which = Literal["following", "followers"]


class Relations:
    """Follows between the member and other accounts, over this request's :class:`Federation`."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.session = fed.session

    async def relation(self, me: Actor, target: Actor) -> Relation:
        session = self.session
        mine = await session.scalar(select(Follow.state).where(Follow.follower == me.uri,
                                                               Follow.followee == target.uri))
        theirs = await session.scalar(select(Follow.id).where(
            Follow.follower == target.uri, Follow.followee == me.uri, Follow.state == "accepted"))
        mute = (await session.execute(select(Mute.notifications).where(
            Mute.actor == me.uri, Mute.target == target.uri, Mute.target.in_(muted_by(me.uri))))).first()
        return Relation(me=me, target=target, state=mine if mine in ("pending", "accepted") else "",
                        follows_me=theirs is not None, blocked=await blocks(session, me.uri, target.uri),
                        muted=mute is not None, muted_notifications=mute is not None and bool(mute[0]))

    async def follow(self, user: User, handle: str) -> FollowResult:
        """Follow by handle or actor URI; raises OutboxError or FetchError."""
        async def work() -> tuple[Actor, Actor, Follow]:
            me, target = await self.fed.local_actor_for_user(user), await self.fed.webfinger(handle)
            return me, target, await Outbox(self.fed).follow(me, target)

        me, target, follow = await self.fed.settle(work, keep=[user])
        message = f"Following {target.handle}." if follow.state == "accepted" else \
            f"Follow request sent to {target.handle}."
        return FollowResult(me=me, target=target, message=message)

    async def unfollow(self, user: User, actor_uri: str) -> FollowResult:
        """Unfollow, or withdraw a follow request (nothing to do for an account we don't know)."""
        me = await self.fed.local_actor_for_user(user)
        target = await self.session.scalar(select(Actor).where(Actor.uri == actor_uri))
        if target is None:
            return FollowResult(me=me, target=None, message="Unfollowed.")
        state = await self.session.scalar(select(Follow.state).where(Follow.follower == me.uri,
                                                                     Follow.followee == target.uri))
        message = "Follow request withdrawn." if state == "pending" else "Unfollowed."
        await Outbox(self.fed).unfollow(me, target)
        return FollowResult(me=me, target=target, message=message)

    async def answer(self, user: User, follow_id: UUID, *, accept: bool) -> None:
        """Approve or reject a follow request to the member; another's is 404."""
        async def work() -> None:
            me = await self.fed.local_actor_for_user(user)
            follow = await self.session.get(Follow, follow_id)
            if follow is None or follow.followee != me.uri:
                raise NotFoundException()
            await Outbox(self.fed).answer_follow(me, follow, accept=accept)

        # The follower may need re-fetching: settle orders that before the writes.
        await self.fed.settle(work, keep=[user])

    async def set_locked(self, user: User, locked: bool) -> None:
        """Whether follow requests wait for the member's answer."""
        me = await self.fed.local_actor_for_user(user)
        me.manually_approves = locked

    async def page(self, user: User, which: Which, cursor: Cursor | None) -> FollowPage:
        """Whom the member follows, or who follows the member, newest first."""
        session = self.session
        me = await self.fed.local_actor_for_user(user)
        mine, theirs = (Follow.follower, Follow.followee) if which == "following" else \
            (Follow.followee, Follow.follower)
        query = select(Follow).where(mine == me.uri)
        if (older := older_than(Follow.created_at, Follow.id, cursor)) is not None:
            query = query.where(older)
        rows, token = cut(list((await session.scalars(query.order_by(
            Follow.created_at.desc(), Follow.id.desc()).limit(paging.LIST_SIZE + 1))).all()),
            paging.LIST_SIZE, lambda f: (f.created_at, f.id))
        actors = await actors_by_uri(session, {getattr(f, theirs.key) for f in rows})
        entries = [FollowEntry(follow=f, actor=actors.get(uri), path=account_path(uri, actors.get(uri)))
                   for f in rows for uri in [getattr(f, theirs.key)]]
        return FollowPage(me=me, entries=entries, older=token)

    async def accounts_of(self, target: Actor, which: Which, *, before: UUID | None, after: UUID | None,
                          oldest_first: bool, size: int) -> KeysetPage[Follow]:
        """Whom any account follows, or who follows it, as far as we know (accepted follows we
        store: all of a member's, and a remote account's with members here), newest first. The
        cursors are follow row ids (the Mastodon API's ``max_id``/``min_id`` of these lists)."""
        mine, theirs = (Follow.follower, Follow.followee) if which == "following" else \
            (Follow.followee, Follow.follower)
        query = select(Follow).where(mine == target.uri, Follow.state == "accepted")
        page = await keyset_page(self.session, Follow, query, before=before, after=after,
                                 oldest_first=oldest_first, size=size)
        page.actors = await actors_by_uri(self.session, {getattr(f, theirs.key) for f in page.rows})
        page.actor_of = {f.id: getattr(f, theirs.key) for f in page.rows}
        return page
