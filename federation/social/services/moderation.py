"""Moderation as members and admins use it from the hub: a member's blocks and reports, and the
admins' domain blocks and reports queue (the rules live in :mod:`federation.activitypub.moderation`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from litestar.exceptions import NotFoundException
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, APObject, Block, DomainBlock, Mute, Report
from federation.activitypub.moderation import Moderation, ModerationError, muted_by, resolve_report, visible_note
from federation.social.schemas import BlockEntry, ReportsPage
from federation.social.services.lists import KeysetPage, keyset_page
from federation.social.services.views import actors_by_uri

MAX_MUTE_SECONDS = 10 * 365 * 24 * 3600  # a "duration" longer than this is a typo, not a wish

REPORT_STATES = ("open", "resolved", "all")


class MemberModeration:
    """A member's blocks and reports, over this request's :class:`Federation`."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.session = fed.session

    async def known_actor(self, uri: str) -> Actor:
        """An account we already know (a note's author, a follower...), else 404: an arbitrary URI
        from a form is never fetched (a handle is looked up with WebFinger instead)."""
        fed = self.fed
        local = await fed.local_actor(uri) if fed.urls.is_local(uri) else None
        found = local or await self.session.scalar(select(Actor).where(Actor.uri == uri, Actor.local.is_(False)))
        if found is None:
            raise NotFoundException("No such account.")
        return found

    async def blocks(self, user: User) -> list[BlockEntry]:
        me = await self.fed.local_actor_for_user(user)
        rows = list((await self.session.scalars(select(Block).where(Block.actor == me.uri).order_by(
            Block.created_at.desc()))).all())
        actors = await actors_by_uri(self.session, {b.target for b in rows})
        return [BlockEntry(block=b, actor=actors.get(b.target)) for b in rows]

    async def block(self, user: User, uri: str, handle: str) -> Actor:
        """Block an account we know by URI, or any by handle; raises ModerationError, OutboxError or
        FetchError."""
        async def work() -> Actor:
            me = await self.fed.local_actor_for_user(user)
            target = await self.known_actor(uri) if uri else await self.fed.webfinger(handle)
            await Moderation(self.fed).block(me, target)
            return target

        # The account may need fetching first: settle orders that before the writes.
        return await self.fed.settle(work, keep=[user])

    async def unblock(self, user: User, uri: str) -> Actor | None:
        """The account unblocked, or None if the member wasn't blocking it."""
        me = await self.fed.local_actor_for_user(user)
        target = await self.session.scalar(select(Actor).where(Actor.uri == uri))
        if target is None or not await Moderation(self.fed).unblock(me, target):
            return None
        return target

    async def blocks_page(self, user: User, *, before: UUID | None, after: UUID | None, oldest_first: bool,
                          size: int) -> KeysetPage[Block]:
        """The member's blocks, newest first, paged by block row ids (the Mastodon API's lists)."""
        me = await self.fed.local_actor_for_user(user)
        page = await keyset_page(self.session, Block, select(Block).where(Block.actor == me.uri), before=before,
                                 after=after, oldest_first=oldest_first, size=size)
        page.actors = await actors_by_uri(self.session, {b.target for b in page.rows})
        page.actor_of = {b.id: b.target for b in page.rows}
        return page

    async def mute(self, user: User, target: Actor, *, notifications: bool = True, seconds: int = 0) -> Mute:
        """Mute ``target`` for the member (again: the new settings replace the old), for good or for
        ``seconds``. Private: nothing is sent, follows stay. Raises ModerationError."""
        me = await self.fed.local_actor_for_user(user)
        if target.uri == me.uri:
            raise ModerationError("You can't mute yourself.")
        if not 0 <= seconds <= MAX_MUTE_SECONDS:
            raise ModerationError(f"duration must be from 0 (for good) to {MAX_MUTE_SECONDS} seconds.")
        expires = datetime.now(UTC) + timedelta(seconds=seconds) if seconds else None
        mute = await self.session.scalar(select(Mute).where(Mute.actor == me.uri, Mute.target == target.uri))
        if mute is None:
            mute = Mute(actor=me.uri, target=target.uri)
            self.session.add(mute)
        mute.notifications = notifications
        mute.expires_at = expires
        await self.session.flush()
        return mute

    async def unmute(self, user: User, target: Actor) -> bool:
        """Lift the member's mute of ``target``; False if there was none."""
        me = await self.fed.local_actor_for_user(user)
        done = await self.session.execute(delete(Mute).where(Mute.actor == me.uri, Mute.target == target.uri))
        return bool(getattr(done, "rowcount", 0))

    async def mutes_page(self, user: User, *, before: UUID | None, after: UUID | None, oldest_first: bool,
                         size: int) -> KeysetPage[Mute]:
        """The member's live mutes (expired ones are left out), newest first, paged by mute row ids."""
        me = await self.fed.local_actor_for_user(user)
        query = select(Mute).where(Mute.actor == me.uri, Mute.target.in_(muted_by(me.uri)))
        page = await keyset_page(self.session, Mute, query, before=before, after=after, oldest_first=oldest_first,
                                 size=size)
        page.actors = await actors_by_uri(self.session, {m.target for m in page.rows})
        page.actor_of = {m.id: m.target for m in page.rows}
        return page

    async def subject(self, user: User, note: str, actor: str) -> tuple[Actor, APObject | None]:
        """What is reported: a note the member may see (and its author), or an account."""
        me = await self.fed.local_actor_for_user(user)
        if note:
            try:
                oid = UUID(note)
            except ValueError:
                raise NotFoundException() from None
            obj = await visible_note(self.session, oid, me)
            if obj is None:
                raise NotFoundException()
            return await self.known_actor(obj.attributed_to), obj
        if actor:
            return await self.known_actor(actor), None
        raise NotFoundException("Say what to report.")

    async def report(self, user: User, target: Actor, obj: APObject | None, comment: str, *,
                     forward: bool) -> None:
        """Report to the moderators (and to the account's server); raises ModerationError."""
        me = await self.fed.local_actor_for_user(user)
        await Moderation(self.fed).report(me, target, [obj] if obj is not None else [], comment, forward=forward)


class ModerationQueue:
    """The admins' side: reports to review and domain blocks to lift."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def reports(self, state: str) -> ReportsPage:
        """The newest 200 reports in ``state`` (an unknown state shows the open ones)."""
        session = self.session
        if state not in REPORT_STATES:
            state = "open"
        query = select(Report).order_by(Report.created_at.desc()).limit(200)
        if state != "all":
            query = query.where(Report.state == state)
        rows = list((await session.scalars(query)).all())
        actors = await actors_by_uri(session, {r.target for r in rows} | {r.reporter for r in rows})
        object_ids = {i for r in rows for i in r.object_ids}
        objects = {o.ap_id: o for o in (await session.scalars(select(APObject).where(
            APObject.ap_id.in_(object_ids)))).all()} if object_ids else {}
        resolvers = {u.id: u for u in (await session.scalars(select(User).where(
            User.id.in_({r.resolved_by_id for r in rows if r.resolved_by_id})))).all()}
        return ReportsPage(state=state, reports=rows, actors=actors, objects=objects, resolvers=resolvers)

    async def resolve(self, report_id: UUID, user: User, *, resolved: bool = True) -> None:
        report = await self.session.get(Report, report_id)
        if report is None:
            raise NotFoundException("No such report.")
        await resolve_report(self.session, report, user.id, resolved=resolved)

    async def lift_domain_block(self, block_id: UUID) -> DomainBlock:
        """Remove a domain block; the block as it was (for the message)."""
        block = await self.session.get(DomainBlock, block_id)
        if block is None:
            raise NotFoundException("No such domain block.")
        await self.session.delete(block)
        return block
