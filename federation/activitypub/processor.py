"""The inbox processor: the ``ap.inbox`` job applies one stored, verified activity.

Follow / Accept / Reject / Undo (Follow, Like, Announce, Block, Join) / Create / Update / Delete
(Tombstone) of Note and Article / Like / Announce / Block / Flag / Delete of an actor / Join and
Leave of a local event (handled by federation/activitypub/events.py).

Who may say what (design/federation.md §3 step 9): the inbox refuses any activity whose signer is
not its actor, except Create, Update and Announce, which relays and forwarders pass on. For
those (``trusted`` False) nothing the forwarder sent is believed: a Create or Update stores only
the object fetched from its own origin, and an Announce counts only if the activity itself, fetched
by its id from the named actor's origin, is that actor's Announce of that object. An object
embedded by its own actor is used only when it is on the actor's origin; anything else is fetched.
Mentions count once per account and at most :data:`~federation.activitypub.outbox.MAX_MENTIONS`.

Blocks: everything from a blocked domain is dropped. A member's block of an account is that
member's alone: the account's follows of the member are rejected, its likes and boosts of the
member's notes dropped and its mentions and replies do not notify the member, while the
instance keeps processing its activities for everyone else.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import delete, or_, select

from app.jobs import JobContext, PermanentFailure, job_handler
from app.safe_http import FetchError
from federation.activitypub import hashtags
from federation.activitypub.as2 import as_list, id_of, ids_of, page_url, parse_time
from federation.activitypub.contexts import PUBLIC
from federation.activitypub.core import Federation
from federation.activitypub.models import (
    Activity,
    Actor,
    Announce,
    APObject,
    Block,
    Follow,
    Like,
    Notification,
    Report,
)
from federation.activitypub.moderation import MAX_COMMENT, Moderation, blocked_hosts, blocks
from federation.activitypub.outbox import MAX_MENTIONS
from federation.activitypub.sanitize import plain_text, sanitize_html
from federation.activitypub.urls import host_of, http_url

log = logging.getLogger("rose_ash.federation.inbox")

OBJECT_TYPES = frozenset({"Note", "Article", "Page", "Question", "Event"})
# What an Undo can take back: the table, who did it, and what it was about.
UNDOABLE: dict[str, tuple[Any, Any, Any]] = {
    "Follow": (Follow, Follow.follower, Follow.followee),
    "Like": (Like, Like.actor, Like.object_id),
    "Announce": (Announce, Announce.actor, Announce.object_id),
    "Block": (Block, Block.actor, Block.target),
}


class InboxPayload(msgspec.Struct, frozen=True):
    activity_id: str


async def notify(fed: Federation, local_actor_uri: str, kind: str, actor: str, object_id: str = "") -> None:
    """Tell a member; never about an account they block."""
    target = await fed.local_actor(local_actor_uri)
    if target is None or target.user_id is None or actor == local_actor_uri:
        return
    if await blocks(fed.session, target.uri, actor):
        return
    fed.session.add(Notification(user_id=target.user_id, kind=kind, actor=actor, object_id=object_id))
    await fed.session.flush()


async def accept_local_follow(fed: Federation, follow: Follow, target: Actor) -> None:
    """A follow of a local actor: auto-accept unless the account is locked or the follower's
    domain is limited (Mastodon makes such follows requests, whatever the account's setting).

    A member's follow of a member who blocks them (or whom they block) is refused (a remote
    follower of a member who blocks it is rejected by :meth:`Processor.on_Follow`).
    """
    from federation.activitypub.outbox import Outbox, OutboxError

    if fed.urls.is_local(follow.follower) and (await blocks(fed.session, target.uri, follow.follower) or
                                               await blocks(fed.session, follow.follower, target.uri)):
        await fed.session.delete(follow)
        await fed.session.flush()
        raise OutboxError("You can't follow this account.", 403)
    if target.manually_approves or (not fed.urls.is_local(follow.follower) and await blocked_hosts(
            fed.session, {host_of(follow.follower)}, "limit")):
        follow.state = "pending"
        await notify(fed, target.uri, "follow_request", follow.follower)
        return
    await Outbox(fed).answer_follow(target, follow, accept=True)
    await notify(fed, target.uri, "follow", follow.follower)


def visibility_of(to: list[str], cc: list[str], followers_url: str) -> str:
    if PUBLIC in to or "as:Public" in to or "Public" in to:
        return "public"
    if PUBLIC in cc or "as:Public" in cc or "Public" in cc:
        return "unlisted"
    if followers_url and followers_url in to + cc:
        return "followers"
    return "direct"


class Processor:
    def __init__(self, fed: Federation, activity: Activity) -> None:
        self.fed = fed
        self.session = fed.session
        self.activity = activity
        self.raw: dict[str, Any] = activity.raw
        self.actor_uri = activity.actor_uri

    async def run(self) -> None:
        kind = self.raw.get("type")
        handler = getattr(self, f"on_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            log.info("ignoring %s activity %s", kind, self.activity.ap_id)
            return
        if await self.fed.domain_blocked(self.actor_uri):
            log.info("dropping %s from blocked domain %s", kind, host_of(self.actor_uri))
            return
        await handler()

    async def _blocked_by(self, local_uri: str) -> bool:
        """Whether the local actor ``local_uri`` blocks this activity's actor (their block only)."""
        if await blocks(self.session, local_uri, self.actor_uri):
            log.info("dropping %s %s for %s, who blocks %s", self.raw.get("type"), self.activity.ap_id, local_uri,
                     self.actor_uri)
            return True
        return False

    async def _actor(self) -> Actor:
        return await self.fed.remote_actor(self.actor_uri)

    def _embedded(self) -> dict[str, Any]:
        obj = self.raw.get("object")
        return obj if isinstance(obj, dict) else {}

    # --- follows --------------------------------------------------------------------------

    async def on_Follow(self) -> None:
        target_uri = id_of(self.raw.get("object"))
        target = await self.fed.local_actor(target_uri)
        if target is None:
            return
        follower = await self._actor()
        if await self._blocked_by(target.uri):
            await Moderation(self.fed).reject_follow(target, follower, self.activity.ap_id)
            return
        follow = await self.session.scalar(
            select(Follow).where(Follow.follower == follower.uri, Follow.followee == target.uri))
        if follow is None:
            follow = Follow(follower=follower.uri, followee=target.uri, state="pending",
                            activity_id=self.activity.ap_id)
            self.session.add(follow)
            await self.session.flush()
        else:
            follow.activity_id = self.activity.ap_id
            if follow.state == "accepted":
                from federation.activitypub.outbox import Outbox

                await Outbox(self.fed).answer_follow(target, follow, accept=True)
                return
        await accept_local_follow(self.fed, follow, target)

    async def _my_follow(self) -> Follow | None:
        obj = self.raw.get("object")
        if isinstance(obj, dict) and obj.get("type") not in (None, "Follow"):
            return None  # the answer to something else (an event's Join): never touches a follow
        follow_id = id_of(obj)
        query = select(Follow).where(Follow.followee == self.actor_uri)
        if follow_id:
            found = await self.session.scalar(query.where(Follow.activity_id == follow_id))
            if found is not None:
                return found
        inner_actor = id_of(obj.get("actor")) if isinstance(obj, dict) else ""
        if inner_actor and self.fed.urls.is_local(inner_actor):
            found_by_actor: Follow | None = await self.session.scalar(query.where(Follow.follower == inner_actor))
            return found_by_actor
        return None

    async def on_Accept(self) -> None:
        follow = await self._my_follow()
        if follow is not None:
            follow.state = "accepted"

    async def on_Reject(self) -> None:
        follow = await self._my_follow()
        if follow is not None:
            await self.session.delete(follow)

    async def on_Undo(self) -> None:
        obj = self.raw.get("object")
        inner_id = id_of(obj)
        inner_type = obj.get("type") if isinstance(obj, dict) else None
        if isinstance(obj, dict) and id_of(obj.get("actor")) not in ("", self.actor_uri):
            raise PermanentFailure("Undo of someone else's activity")
        target = id_of(obj.get("object")) if isinstance(obj, dict) else ""
        if inner_type == "Join":  # withdrawing from an event, as a Leave (federation/activitypub/events.py)
            from federation.activitypub.events import leave_event

            await leave_event(self.fed, self.actor_uri, target, inner_id)
            return
        for kind, (model, by, what) in UNDOABLE.items():
            if inner_type in (None, kind):
                cond = model.activity_id == inner_id
                if target:
                    cond = or_(cond, what == target)
                await self.session.execute(delete(model).where(by == self.actor_uri, cond))

    # --- events (Mobilizon's participation: federation/activitypub/events.py) ---------------

    async def on_Join(self) -> None:
        from federation.activitypub.events import join_event

        await join_event(self.fed, self.activity)

    async def on_Leave(self) -> None:
        from federation.activitypub.events import leave_event

        await leave_event(self.fed, self.actor_uri, id_of(self.raw.get("object")), "")

    # --- objects --------------------------------------------------------------------------

    async def _trusted_object(self) -> dict[str, Any]:
        """The object as we may believe it: embedded if the actor signed, else from its origin."""
        obj = self.raw.get("object")
        oid = id_of(obj)
        if not oid:
            raise PermanentFailure("activity without an object id")
        if isinstance(obj, dict) and self.activity.trusted and host_of(oid) == host_of(self.actor_uri):
            return obj
        try:
            return await self.fed.fetch_object(oid)
        except FetchError as exc:
            raise PermanentFailure(f"cannot fetch {oid} from its origin: {exc}") from exc

    async def on_Create(self) -> None:
        data = await self._trusted_object()
        if data.get("type") not in OBJECT_TYPES:
            return
        await self.store_object(data)

    async def on_Update(self) -> None:
        data = await self._trusted_object()
        if data.get("type") in OBJECT_TYPES:
            existing = await self.session.scalar(select(APObject).where(APObject.ap_id == data.get("id")))
            if existing is None or existing.attributed_to == self.actor_uri:
                await self.store_object(data)
        elif data.get("type") in {"Person", "Service", "Application", "Group", "Organization"} and \
                data.get("id") == self.actor_uri:
            await self.fed.store_actor(data, self.actor_uri)

    async def store_object(self, data: dict[str, Any]) -> APObject | None:
        oid = id_of(data)
        author = id_of(as_list(data.get("attributedTo"))[0]) if data.get("attributedTo") else ""
        if not http_url(oid) or not http_url(author) or host_of(author) != host_of(oid):
            raise PermanentFailure("object without an http(s) id and a same-origin author")
        if self.activity.trusted and author != self.actor_uri and self.raw.get("type") in ("Create", "Update"):
            raise PermanentFailure("Create/Update of an object attributed to someone else")
        author_actor = await self.fed.remote_actor(author)
        to, cc = ids_of(data.get("to")), ids_of(data.get("cc"))
        # Each distinct account once, and at most as many as our own posts may mention: 200 copies
        # of one Mention tag are one mention, not 200 notifications.
        tagged = (id_of(t) for t in as_list(data.get("tag")) if isinstance(t, dict) and t.get("type") == "Mention")
        mentions = list(dict.fromkeys(m for m in tagged if http_url(m)))[:MAX_MENTIONS]
        obj = await self.session.scalar(select(APObject).where(APObject.ap_id == oid))
        if obj is None:
            obj = APObject(ap_id=oid, local=False)
            self.session.add(obj)
            is_new = True
        else:
            if obj.local:
                return obj
            is_new = False
        obj.type = str(data.get("type"))
        obj.attributed_to = author
        obj.content = sanitize_html(data.get("content"))
        obj.summary = plain_text(data.get("summary"), 500)
        obj.name = plain_text(data.get("name"), 500)
        obj.url = page_url(data, oid)
        obj.in_reply_to = id_of(data.get("inReplyTo"))
        obj.to, obj.cc = to, cc
        obj.mentions = mentions
        obj.visibility = visibility_of(to, cc, author_actor.followers_url)
        obj.published = parse_time(data.get("published")) or datetime.now(UTC)
        obj.updated = parse_time(data.get("updated"))
        obj.deleted = False
        obj.raw = data
        await self.session.flush()
        await hashtags.index(self.session, obj, hashtags.tags_in_document(data.get("tag")))
        if is_new:
            notified: set[str] = set()
            if obj.in_reply_to and self.fed.urls.is_local(obj.in_reply_to):
                parent = await self.session.scalar(select(APObject).where(APObject.ap_id == obj.in_reply_to))
                if parent is not None:
                    await notify(self.fed, parent.attributed_to, "reply", author, oid)
                    notified.add(parent.attributed_to)
            for m in obj.mentions:
                if self.fed.urls.is_local(m) and m not in notified:
                    await notify(self.fed, m, "mention", author, oid)
        return obj

    async def on_Delete(self) -> None:
        oid = id_of(self.raw.get("object"))
        if oid == self.actor_uri:
            actor = await self.session.scalar(select(Actor).where(Actor.uri == self.actor_uri))
            if actor is not None and not actor.local:
                actor.gone = True
                await self.session.execute(delete(Follow).where(
                    or_(Follow.follower == actor.uri, Follow.followee == actor.uri)))
                objs = (await self.session.scalars(select(APObject).where(APObject.attributed_to == actor.uri))).all()
                for o in objs:
                    o.deleted, o.content = True, ""
            return
        obj = await self.session.scalar(select(APObject).where(APObject.ap_id == oid))
        if obj is None or obj.local:
            return
        if obj.attributed_to != self.actor_uri:
            raise PermanentFailure("Delete of an object attributed to someone else")
        obj.deleted, obj.content, obj.summary = True, "", ""
        obj.updated = datetime.now(UTC)

    async def on_Like(self) -> None:
        oid = id_of(self.raw.get("object"))
        if self.fed.urls.local_repo(oid) is not None:  # a star (ForgeFed; Forgejo adds a startTime)
            from federation.activitypub.forgefed import star

            await star(self.fed, oid, self.actor_uri, self.activity.ap_id)
            return
        obj = await self.session.scalar(select(APObject).where(APObject.ap_id == oid))
        if obj is None or not obj.local or await self._blocked_by(obj.attributed_to):
            return
        exists = await self.session.scalar(select(Like).where(Like.actor == self.actor_uri, Like.object_id == oid))
        if exists is None:
            self.session.add(Like(actor=self.actor_uri, object_id=oid, activity_id=self.activity.ap_id))
            await notify(self.fed, obj.attributed_to, "like", self.actor_uri, oid)

    async def _from_its_actor(self) -> None:
        """Believe that the actor did this activity, or raise :class:`PermanentFailure`.

        Signed by the actor itself (and the id on the actor's origin, which the inbox checked):
        yes. Otherwise someone else signed it (a relay, a forwarder, or a forger naming another
        actor), so the activity is fetched by its id from the actor's origin and must say the
        same thing there (design/federation.md §3 step 9; FEP-fe34 same-origin rule).
        """
        if self.activity.trusted and host_of(self.activity.ap_id) == host_of(self.actor_uri):
            return
        aid = self.activity.ap_id
        if host_of(aid) != host_of(self.actor_uri):
            raise PermanentFailure(f"{self.raw.get('type')} {aid} signed by {self.activity.signer} is not on its "
                                   f"actor's origin {host_of(self.actor_uri)}")
        try:
            served = await self.fed.fetch_object(aid)
        except FetchError as exc:
            raise PermanentFailure(f"cannot confirm {aid} at its origin: {exc}") from exc
        if served.get("id") != aid or served.get("type") != self.raw.get("type") or \
                id_of(served.get("actor")) != self.actor_uri or \
                id_of(served.get("object")) != id_of(self.raw.get("object")):
            raise PermanentFailure(f"{aid} as its origin serves it does not match what {self.activity.signer} sent")

    async def on_Announce(self) -> None:
        oid = id_of(self.raw.get("object"))
        if not oid:
            return
        await self._from_its_actor()
        obj = await self.session.scalar(select(APObject).where(APObject.ap_id == oid))
        if obj is not None and obj.local and await self._blocked_by(obj.attributed_to):
            return
        if obj is None and not self.fed.urls.is_local(oid):
            try:
                data = await self.fed.fetch_object(oid)
            except FetchError as exc:
                log.info("cannot fetch boosted %s: %s", oid, exc)
                return
            if data.get("type") not in OBJECT_TYPES:
                return
            saved, self.activity.trusted = self.activity.trusted, False
            try:
                obj = await self.store_object(data)
            finally:
                self.activity.trusted = saved
        if obj is None or obj.deleted or obj.visibility not in ("public", "unlisted"):
            return  # only public notes can be boosted; a "boost" of a private one would spread it
        exists = await self.session.scalar(select(Announce).where(Announce.actor == self.actor_uri,
                                                                  Announce.object_id == oid))
        if exists is None:
            self.session.add(Announce(actor=self.actor_uri, object_id=oid, activity_id=self.activity.ap_id,
                                      published=parse_time(self.raw.get("published")) or datetime.now(UTC)))
            if obj.local:
                await notify(self.fed, obj.attributed_to, "boost", self.actor_uri, oid)

    async def on_Block(self) -> None:
        target = id_of(self.raw.get("object"))
        if not self.fed.urls.is_local(target):
            return
        exists = await self.session.scalar(select(Block).where(Block.actor == self.actor_uri, Block.target == target))
        if exists is None:
            self.session.add(Block(actor=self.actor_uri, target=target, activity_id=self.activity.ap_id))
        await self.session.execute(delete(Follow).where(or_(
            (Follow.follower == self.actor_uri) & (Follow.followee == target),
            (Follow.follower == target) & (Follow.followee == self.actor_uri))))

    async def on_Flag(self) -> None:
        """A report about our members (and their notes) for our moderators.

        Mastodon sends ``object`` = [the reported account, its reported notes...] from its
        instance actor and the comment as ``content``. One report per local account: those
        named, and the authors of the named local notes; anything else is ignored.
        """
        ids = [i for i in dict.fromkeys(ids_of(self.raw.get("object"))) if self.fed.urls.is_local(i)]
        if not ids:
            return
        reported: dict[str, list[str]] = {}
        for uri in ids:
            found = self.fed.urls.local_actor(uri)
            if found is not None and found[0] == "user":
                account = await self.fed.local_actor(uri)
                if account is not None:
                    reported.setdefault(account.uri, [])
        notes = (await self.session.scalars(select(APObject).where(APObject.ap_id.in_(ids), APObject.local))).all()
        for note in notes:
            reported.setdefault(note.attributed_to, []).append(note.ap_id)
        comment = plain_text(self.raw.get("content"), MAX_COMMENT)
        for target, object_ids in reported.items():
            self.session.add(Report(origin="remote", activity_id=self.activity.ap_id, reporter=self.actor_uri,
                                    target=target, object_ids=object_ids, comment=comment))
        await self.session.flush()


async def _apply(fed: Federation, activity_id: UUID) -> None:
    """One attempt at applying the activity; :meth:`Federation.settle` may run it again."""
    activity = await fed.session.get(Activity, activity_id)
    if activity is None or activity.state != "received":
        return
    try:
        async with fed.session.begin_nested():  # a refused activity leaves no partial changes
            await Processor(fed, activity).run()
    except PermanentFailure as exc:
        activity.state, activity.error = "rejected", str(exc)[:2000]
        log.warning("inbox activity %s rejected: %s", activity.ap_id, exc)
        return
    activity.state = "processed"


@job_handler("ap.inbox", max_attempts=5)
async def process_inbox(ctx: JobContext, payload: InboxPayload) -> None:
    client = ctx.services.get("federation_client") if ctx.services else None
    async with ctx.sessionmaker() as session:
        fed = Federation(session, ctx.settings, client)
        try:
            await fed.settle(lambda: _apply(fed, UUID(payload.activity_id)))
            await session.commit()
        except FetchError as exc:
            await session.rollback()
            if not ctx.is_last_attempt:
                raise
            async with session.begin():
                activity = await session.get(Activity, UUID(payload.activity_id))
                if activity is not None and activity.state == "received":
                    activity.state, activity.error = "rejected", str(exc)[:2000]
        finally:
            await fed.aclose()
