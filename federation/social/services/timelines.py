"""Timelines (home, local, federated), a note with its replies, and what a member does to notes:
compose, like, boost and delete."""

from __future__ import annotations

import re
from typing import Any, Literal
from uuid import UUID

from litestar.exceptions import NotFoundException
from sqlalchemy import Select, exists, or_, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, Announce, APObject, Follow, MediaAttachment, Notification
from federation.activitypub.moderation import hidden_from, limited_unfollowed, muted_by, visible_note
from federation.activitypub.outbox import Outbox
from federation.social import paging
from federation.social.paging import EPOCH, Cursor, cut, newer_than, older_than
from federation.social.schemas import ComposeForm, NotePage, NoteView, TimelinePage
from federation.social.services.notifications import Notifications
from federation.social.services.views import note_views

Tab = Literal["home", "local", "federated"]
NoteAction = Literal["like", "unlike", "boost", "unboost", "delete_note"]
SUGGESTIONS = 5  # members an empty timeline suggests following
# ``@bob``, a member of this instance by username alone: not the first half of ``@bob@host``, not
# inside a word, URL or address; a trailing full stop is punctuation, not part of the name.
SHORT_MENTION = re.compile(r"(?<![\w/@.])@([A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*)(?![A-Za-z0-9_@-]|\.[A-Za-z0-9_])")


async def expand_short_mentions(session: AsyncSession, text: str, domain: str) -> str:
    """Write ``@bob`` as ``@bob@<this host>`` when bob is a member here, so the outbox resolves,
    links and notifies it as any full handle; unknown names stay plain text."""
    names = {m.group(1) for m in SHORT_MENTION.finditer(text)}
    if not names:
        return text
    known = set((await session.scalars(select(Actor.username).where(
        Actor.local, Actor.user_id.is_not(None), Actor.username.in_(names)))).all())
    return SHORT_MENTION.sub(lambda m: f"@{m.group(1)}@{domain}" if m.group(1) in known else m.group(0), text)


class Timelines:
    """The member's view of notes, over this request's :class:`Federation`."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.session = fed.session

    async def page(self, user: User, tab: Tab, cursor: Cursor | None, *, size: int = 0,
                   newer: Cursor | None = None, oldest_first: bool = False,
                   count_unread: bool = True) -> TimelinePage:
        """A page of the timeline, newest first, older than ``cursor``. The Mastodon API also asks
        for ``size`` notes newer than ``newer`` (``since_id``), or (``oldest_first``, its
        ``min_id``) the ``size`` notes right after ``newer``, still shown newest first."""
        session = self.session
        size = size or paging.TIMELINE_SIZE
        newest_first = (APObject.published.asc(), APObject.id.asc()) if oldest_first else \
            (APObject.published.desc(), APObject.id.desc())
        more = size + 1  # one beyond the page tells whether an older page exists
        me = await self.fed.local_actor_for_user(user)
        following = select(Follow.followee).where(Follow.follower == me.uri, Follow.state == "accepted")
        hidden = hidden_from(me.uri)  # accounts the member blocks, and those blocking the member
        # Limited domains matter to the federated tab and the unread count only: home and local
        # (the API's home asks no unread count) skip the query.
        limited = await limited_unfollowed(session, me.uri) if tab == "federated" or count_unread else None
        base = select(APObject).where(APObject.deleted.is_(False), APObject.attributed_to.not_in(hidden))
        if (older := older_than(APObject.published, APObject.id, cursor)) is not None:
            base = base.where(older)
        if (after := newer_than(APObject.published, APObject.id, newer)) is not None:
            base = base.where(after)
        boosters: dict[str, str] = {}
        if tab == "home":
            # The member and the accounts they follow. A subquery, not a list read first: under
            # the OR PostgreSQL hashes it once per statement (the plan a literal list gets) and
            # the statement carries no bind parameter per account followed.
            def by_author(column: Any) -> Any:
                return or_(column == me.uri, column.in_(following))

            # Muted accounts stay off home only (Mastodon): their notes and their boosts.
            base = base.where(APObject.attributed_to.not_in(muted_by(me.uri)))
            objs = list((await session.scalars(base.where(
                by_author(APObject.attributed_to), APObject.visibility != "direct"
            ).order_by(*newest_first).limit(more))).all())
            if len(objs) == more:
                # The page ends within these notes: a direct or boosted note past the last of them
                # could not be on it, so the query for those reads only this window (an index range
                # on ``published``), not every direct or boosted note ever stored.
                edge = Cursor(objs[-1].published or EPOCH, objs[-1].id)
                window = older_than(APObject.published, APObject.id, edge) if oldest_first else \
                    newer_than(APObject.published, APObject.id, edge)
                assert window is not None
                base = base.where(window)
            # Direct notes (the member's own, and those that told them: a mention or reply) and
            # notes boosted by the accounts followed (only public notes can be boosted), in one
            # statement: the newest ``more`` of the two together hold every one of either that
            # could reach the page. Boosts sort by the note's own date, as the rest of the
            # timeline does, so one key pages it all.
            told = select(Notification.object_id).where(Notification.user_id == user.id,
                                                        Notification.kind.in_(("mention", "reply")))
            boosting = by_author(Announce.actor) & Announce.actor.not_in(hidden) & \
                Announce.actor.not_in(muted_by(me.uri))
            extra = list((await session.scalars(base.where(or_(
                (APObject.visibility == "direct") & or_(APObject.attributed_to == me.uri, APObject.ap_id.in_(told)),
                # EXISTS, not IN: under the OR, IN leaves PostgreSQL only a hash of every boost by
                # the accounts followed; EXISTS also lets it probe the announce index for each note
                # in the window, which it picks once boosts are many.
                APObject.visibility.in_(("public", "unlisted")) & exists().where(
                    Announce.object_id == APObject.ap_id, boosting),
            )).order_by(*newest_first).limit(more))).all())
            # Those not direct are there because they were boosted: who boosted each, newest boost first.
            if boosted := [o.ap_id for o in extra if o.visibility != "direct"]:
                for oid, actor in (await session.execute(select(Announce.object_id, Announce.actor).where(
                        boosting, Announce.object_id.in_(boosted)
                ).order_by(Announce.created_at.desc()))).tuples():
                    boosters.setdefault(oid, actor)
            seen: dict[str, APObject] = {}
            for o in [*objs, *extra]:
                seen.setdefault(o.ap_id, o)
            candidates = sorted(seen.values(), key=lambda o: (o.published or EPOCH, o.id), reverse=not oldest_first)
        elif tab == "local":
            candidates = list(await session.scalars(base.where(
                APObject.local, APObject.visibility == "public").order_by(*newest_first).limit(more)))
        else:
            if limited is not None:
                base = base.where(APObject.attributed_to.not_in(limited))
            candidates = list(await session.scalars(base.where(
                APObject.visibility == "public").order_by(*newest_first).limit(more)))
        shown, token = cut(candidates, size, lambda o: (o.published or EPOCH, o.id))
        if oldest_first:
            shown, token = shown[::-1], ""
        notes = await note_views(session, me, shown, boosters)
        # The API's timelines show no unread count: they skip its query (``count_unread=False``).
        unread = await Notifications(session, self.fed.urls).unread(user, me.uri, limited) if count_unread else 0
        suggestions = await self.suggestions(me, following, hidden) if not notes and cursor is None else []
        return TimelinePage(me=me, notes=notes, unread=unread, older=token, suggestions=suggestions)

    async def suggestions(self, me: Actor, following: Select[Any], hidden: Select[Any]) -> list[Actor]:
        """Members of this instance the member doesn't follow yet, newest first: what an empty
        timeline offers instead of a dead end."""
        return list((await self.session.scalars(select(Actor).where(
            Actor.local, Actor.user_id.is_not(None), Actor.uri != me.uri, Actor.uri.not_in(following),
            Actor.uri.not_in(hidden),
        ).order_by(Actor.id.desc()).limit(SUGGESTIONS))).all())

    async def visible(self, me: Actor, oid: UUID) -> APObject:
        """A note the member may see; any other is 404, as if it did not exist."""
        obj = await visible_note(self.session, oid, me)
        if obj is None:
            raise NotFoundException()
        return obj

    async def note(self, user: User, oid: UUID) -> NotePage:
        """A note and its public replies, oldest reply first."""
        me = await self.fed.local_actor_for_user(user)
        obj = await self.visible(me, oid)
        # Replies from accounts the member blocks, or that block the member, stay out (as on timelines).
        replies = list((await self.session.scalars(select(APObject).where(
            APObject.in_reply_to == obj.ap_id, APObject.deleted.is_(False),
            APObject.visibility.in_(("public", "unlisted")),
            APObject.attributed_to.not_in(hidden_from(me.uri))).order_by(APObject.published))).all())
        views = await note_views(self.session, me, [obj, *replies])
        return NotePage(me=me, note=views[0], replies=views[1:])

    async def compose(self, user: User, form: ComposeForm, *,
                      attachment: list[dict[str, Any]] | None = None) -> APObject:
        """Post a note (``attachment``: AS2 documents of the member's uploads); raises OutboxError
        or FetchError with a message for the member."""
        async def work() -> APObject:
            me = await self.fed.local_actor_for_user(user)
            content = await expand_short_mentions(self.session, form.content, me.domain)
            # The stored content keeps the full ``@bob@host`` handle: it is the note's ActivityPub
            # document (its URL, the outbox, every Update). Pages here shorten it (NoteView.content_html).
            return await Outbox(self.fed).post_note(me, content, visibility=form.visibility, summary=form.summary,
                                                    in_reply_to=form.in_reply_to, attachment=attachment)

        # Mentions and the replied-to author may need fetching: settle orders that before writes.
        return await self.fed.settle(work, keep=[user])

    async def act(self, user: User, oid: UUID, action: NoteAction) -> tuple[Actor, APObject]:
        """Like, unlike, boost, unboost or delete a note the member may see; raises OutboxError or
        FetchError with a message for the member."""
        async def work() -> tuple[Actor, APObject]:
            me = await self.fed.local_actor_for_user(user)
            obj = await self.visible(me, oid)
            await getattr(Outbox(self.fed), action)(me, obj)
            if action == "delete_note":
                # A deleted note's images go with it: their rows leave (so /social/media/ answers
                # 404 for them) and the media sweep removes files no row names any more.
                await self.session.execute(sql_delete(MediaAttachment).where(MediaAttachment.object_id == obj.id))
            return me, obj

        return await self.fed.settle(work, keep=[user])

    async def view(self, me: Actor, obj: APObject) -> NoteView:
        """One note as the member sees it now (after an action)."""
        await self.session.flush()
        return (await note_views(self.session, me, [obj]))[0]

