"""What local actors do: follow, accept, post, reply, like, boost, delete — each an activity
stored with direction ``out`` and delivered durably to the right inboxes."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction, load_only

from app.safe_http import FetchError
from federation.activitypub import hashtags
from federation.activitypub.as2 import iso, public_addressing
from federation.activitypub.contexts import PUBLIC, emitted_context
from federation.activitypub.core import Federation
from federation.activitypub.delivery import deliver, inboxes_for
from federation.activitypub.models import Activity, Actor, Announce, APObject, Follow, Like
from federation.activitypub.sanitize import text_to_html
from federation.activitypub.urls import host_of

VISIBILITIES = ("public", "unlisted", "followers", "direct")
MENTION = re.compile(r"(?<![\w/])@([A-Za-z0-9_.-]+)@([A-Za-z0-9.-]+(?::\d+)?)")
MAX_NOTE = 5000
MAX_MENTIONS = 20
# An Event's Mobilizon fields (federation/activitypub/events.py builds them; kept across re-renders).
EVENT_FIELDS = ("startTime", "endTime", "timezone", "location", "joinMode", "maximumAttendeeCapacity",
                "remainingAttendeeCapacity", "participantCount", "ical:status", "category", "isOnline",
                "anonymousParticipationEnabled", "commentsEnabled", "repliesModerationOption", "draft",
                "mediaType", "attachment")
# session.info key: the Update(Person) activities queued in this unit of work, by actor URI.
PROFILE_UPDATES = "ap_profile_updates"


@event.listens_for(Session, "after_transaction_end")
def _forget_profile_updates(session: Session, transaction: SessionTransaction) -> None:
    """Queued Updates belong to their transaction: the next one sends its own."""
    if transaction.parent is None:
        session.info.pop(PROFILE_UPDATES, None)


# The columns delivery addressing reads (delivery.inboxes_for).
ADDRESSING = (Actor.uri, Actor.local, Actor.gone, Actor.inbox, Actor.shared_inbox)


class OutboxError(ValueError):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class Outbox:
    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.session = fed.session
        self.urls = fed.urls

    async def _record(self, actor: Actor, data: dict[str, Any]) -> Activity:
        aid = uuid.uuid4()
        data = {"@context": emitted_context(), "id": self.urls.activity(aid), **data, "actor": actor.uri}
        obj = data.get("object")
        activity = Activity(id=aid, ap_id=data["id"], direction="out", type=str(data.get("type")),
                            actor_uri=actor.uri, object_id=obj if isinstance(obj, str) else str(
                                (obj or {}).get("id", "")) if isinstance(obj, dict) else "",
                            object_type=str(obj.get("type", "")) if isinstance(obj, dict) else "",
                            raw=data, state="sent", trusted=True, verification="local")
        self.session.add(activity)
        await self.session.flush()
        return activity

    async def _followers(self, actor: Actor) -> list[Actor]:
        """The accepted followers, with just what addressing needs (not their stored documents:
        a post to thousands of followers would otherwise load and parse every actor's JSON)."""
        return list((await self.session.scalars(
            select(Actor).join(Follow, Follow.follower == Actor.uri)
            .where(Follow.followee == actor.uri, Follow.state == "accepted")
            .options(load_only(*ADDRESSING))
        )).all())

    async def _send(self, actor: Actor, activity: Activity, recipients: list[Actor]) -> None:
        inboxes = await inboxes_for(self.session, recipients)
        if inboxes:
            await deliver(self.session, activity, actor.uri, inboxes)

    # --- follows --------------------------------------------------------------------------

    async def follow(self, actor: Actor, target: Actor) -> Follow:
        if target.uri == actor.uri:
            raise OutboxError("You can't follow yourself.")
        from federation.activitypub.moderation import blocks

        if await blocks(self.session, actor.uri, target.uri):
            raise OutboxError("You block this account; unblock it first.")
        existing = await self.session.scalar(
            select(Follow).where(Follow.follower == actor.uri, Follow.followee == target.uri))
        if existing is not None and existing.state in ("pending", "accepted"):
            return existing
        if existing is not None:
            await self.session.delete(existing)
            await self.session.flush()
        activity = await self._record(actor, {"type": "Follow", "object": target.uri, "to": [target.uri]})
        follow = Follow(follower=actor.uri, followee=target.uri, state="pending", activity_id=activity.ap_id)
        self.session.add(follow)
        await self.session.flush()
        if target.local:
            from federation.activitypub.processor import accept_local_follow

            await accept_local_follow(self.fed, follow, target)
        else:
            await self._send(actor, activity, [target])
        return follow

    async def unfollow(self, actor: Actor, target: Actor) -> None:
        follow = await self.session.scalar(
            select(Follow).where(Follow.follower == actor.uri, Follow.followee == target.uri))
        if follow is None:
            return
        await self.undo(actor, target, follow, "Follow", follow.activity_id)

    async def undo(self, actor: Actor, target: Actor, row: object, kind: str, activity_id: str) -> None:
        """Take back ``actor``'s ``kind`` activity about ``target``: delete its row, send Undo."""
        undo = await self._record(actor, {"type": "Undo", "to": [target.uri], "object": {
            "id": activity_id, "type": kind, "actor": actor.uri, "object": target.uri}})
        await self.session.delete(row)
        await self.session.flush()
        if not target.local:
            await self._send(actor, undo, [target])

    async def answer_follow(self, actor: Actor, follow: Follow, accept: bool) -> None:
        """Accept or reject a follow request made to ``actor``."""
        try:
            follower = await self.fed.remote_actor(follow.follower)
        except FetchError:  # its server is down: answer from what we know (delivery retries later)
            known = await self.session.scalar(select(Actor).where(Actor.uri == follow.follower))
            if known is None:
                raise
            follower = known
        kind = "Accept" if accept else "Reject"
        activity = await self._record(actor, {"type": kind, "to": [follower.uri], "object": {
            "id": follow.activity_id, "type": "Follow", "actor": follower.uri, "object": actor.uri}})
        if accept:
            follow.state = "accepted"
        else:
            await self.session.delete(follow)
        await self.session.flush()
        if not follower.local:
            await self._send(actor, activity, [follower])

    # --- notes ----------------------------------------------------------------------------

    async def post_note(self, actor: Actor, text: str, *, visibility: str = "public", summary: str = "",
                        in_reply_to: str = "", article: dict[str, Any] | None = None,
                        attachment: list[dict[str, Any]] | None = None) -> APObject:
        """``attachment``: AS2 ``Document`` objects (the member's uploaded media) the note carries."""
        text = text.strip()
        if any("\x00" in value for value in (text, summary, in_reply_to)):  # PostgreSQL can't store it
            raise OutboxError("A post can't contain NUL characters (\\0); remove them and post again.")
        if article is None and not text and not attachment:
            raise OutboxError("Write something first.")
        if len(text) > MAX_NOTE:
            raise OutboxError(f"Notes are at most {MAX_NOTE} characters.")
        if visibility not in VISIBILITIES:
            raise OutboxError("Unknown visibility.")
        to, cc = public_addressing(visibility, actor.followers_url)
        handles = list(dict.fromkeys(MENTION.findall(text)))
        if len(handles) > MAX_MENTIONS:  # each is a WebFinger and an actor fetch
            raise OutboxError(f"Mention at most {MAX_MENTIONS} accounts in one post.")
        mentioned: list[Actor] = []
        for user, host in handles:
            try:
                mentioned.append(await self.fed.webfinger(f"{user}@{host}"))
            except FetchError:
                continue
        parent: APObject | None = None
        if in_reply_to:
            from federation.activitypub.moderation import may_see_note

            parent = await self.session.scalar(select(APObject).where(APObject.ap_id == in_reply_to))
            if parent is None or parent.deleted or not await may_see_note(self.session, parent, actor):
                raise OutboxError("The post you are replying to is gone.", 404)  # the same for a hidden one
            author = await self.fed.remote_actor(parent.attributed_to)
            if author.uri != actor.uri and author not in mentioned:
                mentioned.append(author)
        for m in mentioned:
            if m.uri not in to and m.uri not in cc:
                (to if visibility == "direct" else cc).append(m.uri)
        oid = uuid.UUID(str(article["oid"])) if article is not None and article.get("oid") else uuid.uuid4()
        now = datetime.now(UTC)
        content = text_to_html(text)
        for m in mentioned:
            if m.username:
                label = f"@{m.username}@{m.domain}"
                content = content.replace(
                    label, f'<span class="h-card"><a href="{html.escape(m.url or m.uri, quote=True)}" '
                           f'class="u-url mention">{label}</a></span>')
        # Hashtags as links to their tag page, as Mastodon sends them: receiving servers and their
        # apps show the HTML they get, and a bare ``#tag`` there leads nowhere.
        content = hashtags.link_tags(content, self.urls.tag)
        obj = APObject(id=oid, ap_id=self.urls.object(oid), type="Note", local=True, attributed_to=actor.uri,
                       content=content, summary=summary.strip()[:500], url=self.urls.object(oid),
                       in_reply_to=in_reply_to, visibility=visibility, to=to, cc=cc,
                       mentions=[m.uri for m in mentioned], published=now)
        if article is not None:
            obj.type = "Article"
            obj.name = str(article.get("name", ""))
            obj.content = str(article.get("content", ""))
            obj.summary = str(article.get("summary", ""))
            obj.url = str(article.get("url", obj.url))
            if article.get("published"):
                obj.published = article["published"]
            obj.raw = {"tag": list(article.get("tags", []))}
        else:  # Mastodon's Hashtag tags (docs.joinmastodon.org/spec/activitypub/#Hashtag), for note_document
            obj.raw = {"tag": [{"type": "Hashtag", "name": f"#{t}", "href": self.urls.tag(hashtags.normalize(t))}
                               for t in hashtags.tags_in_text(text)]}
        if attachment:
            obj.raw = {**obj.raw, "attachment": attachment}
        self.session.add(obj)
        await self.session.flush()
        await hashtags.index(self.session, obj, hashtags.tags_in_document(obj.raw.get("tag")))
        await self.send_create(actor, obj, mentioned)
        await self._notify_local(actor, obj, parent, mentioned)
        return obj

    async def _notify_local(self, actor: Actor, obj: APObject, parent: APObject | None, mentioned: list[Actor]) -> None:
        """Members of this instance hear about replies and mentions without a round trip."""
        from federation.activitypub.processor import notify

        told: set[str] = set()
        if parent is not None and parent.local and parent.attributed_to != actor.uri:
            await notify(self.fed, parent.attributed_to, "reply", actor.uri, obj.ap_id)
            told.add(parent.attributed_to)
        for m in mentioned:
            if m.local and m.uri not in told:
                await notify(self.fed, m.uri, "mention", actor.uri, obj.ap_id)

    async def send_create(self, actor: Actor, obj: APObject, mentioned: list[Actor] | None = None) -> None:
        obj.raw = note_document(obj)
        activity = await self._record(actor, {"type": "Create", "to": obj.to, "cc": obj.cc, "object": obj.raw,
                                              "published": iso(obj.published)})
        recipients = list(mentioned or [])
        if obj.visibility != "direct":
            recipients += await self._followers(actor)
        await self._send(actor, activity, recipients)

    async def update_note(self, actor: Actor, obj: APObject, changes: dict[str, Any]) -> None:
        for name in ("content", "summary", "name", "url"):
            if name in changes:
                setattr(obj, name, str(changes[name]))
        if "tags" in changes:
            obj.raw = {"tag": list(changes["tags"])}
            await hashtags.index(self.session, obj, hashtags.tags_in_document(obj.raw["tag"]))
        obj.updated = datetime.now(UTC)
        obj.raw = note_document(obj)
        activity = await self._record(actor, {"type": "Update", "to": obj.to, "cc": obj.cc, "object": obj.raw})
        await self._send(actor, activity, await self._followers(actor) + await self._actors(obj.mentions))

    async def update_actor(self, actor: Actor) -> Activity | None:
        """Send the local actor's document, as it is now, to its followers in an Update (a
        profile edit: name, bio, avatar, locked), so their servers show the new profile without
        re-fetching it. One Update per transaction: an edit that changes the name through the
        account hook and then the avatar refreshes the Update already queued (the delivery jobs
        read the activity when they send, after the commit) instead of sending a second one."""
        followers = await self._followers(actor)
        if not followers:
            return None  # nobody to tell (a new member's sign-up): no activity recorded
        doc = await self.fed.actor_document(actor)
        doc.pop("@context", None)  # the activity carries it
        queued: dict[str, Activity] = self.session.info.setdefault(PROFILE_UPDATES, {})
        if (activity := queued.get(actor.uri)) is not None and activity in self.session:
            activity.raw = {**activity.raw, "object": doc}
            await self.session.flush()
            return activity
        activity = await self._record(actor, {"type": "Update", "to": [PUBLIC], "cc": [actor.followers_url],
                                              "object": doc})
        queued[actor.uri] = activity
        await self._send(actor, activity, followers)
        return activity

    async def delete_note(self, actor: Actor, obj: APObject) -> None:
        if obj.attributed_to != actor.uri:
            raise OutboxError("You can only delete your own posts.", 403)
        obj.deleted = True
        obj.content = ""
        obj.updated = datetime.now(UTC)
        activity = await self._record(actor, {"type": "Delete", "to": [PUBLIC], "cc": obj.cc, "object": {
            "id": obj.ap_id, "type": "Tombstone", "formerType": obj.type}})
        await self._send(actor, activity, await self._followers(actor) + await self._actors(obj.mentions))

    async def _actors(self, uris: list[str]) -> list[Actor]:
        if not uris:
            return []
        return list((await self.session.scalars(
            select(Actor).where(Actor.uri.in_(uris)).options(load_only(*ADDRESSING)))).all())

    # --- likes and boosts -----------------------------------------------------------------

    async def _author_of(self, obj: APObject) -> Actor | None:
        try:
            return await self.fed.remote_actor(obj.attributed_to)
        except FetchError:
            return None

    async def like(self, actor: Actor, obj: APObject) -> None:
        if await self.session.scalar(select(Like).where(Like.actor == actor.uri, Like.object_id == obj.ap_id)):
            return
        author = await self._author_of(obj)
        activity = await self._record(actor, {"type": "Like", "object": obj.ap_id,
                                              "to": [author.uri] if author else []})
        self.session.add(Like(actor=actor.uri, object_id=obj.ap_id, activity_id=activity.ap_id))
        await self.session.flush()
        if author is not None and author.local:
            from federation.activitypub.processor import notify

            await notify(self.fed, author.uri, "like", actor.uri, obj.ap_id)
        elif author is not None:
            await self._send(actor, activity, [author])

    async def unlike(self, actor: Actor, obj: APObject) -> None:
        like = await self.session.scalar(select(Like).where(Like.actor == actor.uri, Like.object_id == obj.ap_id))
        if like is None:
            return
        author = await self._author_of(obj)
        undo = await self._record(actor, {"type": "Undo", "to": [author.uri] if author else [], "object": {
            "id": like.activity_id, "type": "Like", "actor": actor.uri, "object": obj.ap_id}})
        await self.session.delete(like)
        if author is not None and not author.local:
            await self._send(actor, undo, [author])

    async def boost(self, actor: Actor, obj: APObject) -> None:
        if obj.visibility not in ("public", "unlisted"):
            raise OutboxError("Only public posts can be boosted.", 403)
        if await self.session.scalar(select(Announce).where(Announce.actor == actor.uri,
                                                            Announce.object_id == obj.ap_id)):
            return
        author = await self._author_of(obj)
        now = datetime.now(UTC)
        activity = await self._record(actor, {"type": "Announce", "object": obj.ap_id, "published": iso(now),
                                              "to": [PUBLIC], "cc": [actor.followers_url] +
                                              ([author.uri] if author else [])})
        self.session.add(Announce(actor=actor.uri, object_id=obj.ap_id, activity_id=activity.ap_id, published=now))
        await self.session.flush()
        recipients = await self._followers(actor)
        if author is not None and author.local and author.uri != actor.uri:
            from federation.activitypub.processor import notify

            await notify(self.fed, author.uri, "boost", actor.uri, obj.ap_id)
        elif author is not None:
            recipients.append(author)
        await self._send(actor, activity, recipients)

    async def unboost(self, actor: Actor, obj: APObject) -> None:
        ann = await self.session.scalar(select(Announce).where(Announce.actor == actor.uri,
                                                               Announce.object_id == obj.ap_id))
        if ann is None:
            return
        author = await self._author_of(obj)
        undo = await self._record(actor, {"type": "Undo", "to": [PUBLIC], "object": {
            "id": ann.activity_id, "type": "Announce", "actor": actor.uri, "object": obj.ap_id}})
        await self.session.delete(ann)
        recipients = await self._followers(actor)
        if author is not None and not author.local:
            recipients.append(author)
        await self._send(actor, undo, recipients)


def note_document(obj: APObject) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": obj.ap_id,
        "type": obj.type,
        "attributedTo": obj.attributed_to,
        "content": obj.content,
        "url": obj.url or obj.ap_id,
        "published": iso(obj.published),
        "to": obj.to,
        "cc": obj.cc,
        "sensitive": bool(obj.summary) and obj.type == "Note",
        "summary": obj.summary or None,
        "inReplyTo": obj.in_reply_to or None,
        "tag": [{"type": "Mention", "href": m} for m in obj.mentions],
    }
    if obj.type in ("Article", "Event"):
        doc["name"] = obj.name
    if obj.type == "Event" and obj.local:  # the events actor's (federation/activitypub/events.py)
        raw = obj.raw or {}
        doc.update({k: raw[k] for k in EVENT_FIELDS if k in raw})
    if obj.updated:
        doc["updated"] = iso(obj.updated)
    hashtags = [t for t in (obj.raw or {}).get("tag", []) if isinstance(t, dict) and t.get("type") == "Hashtag"]
    doc["tag"] += hashtags
    # Media of our own objects (the market's product Notes carry the product's first image).
    attachment = [a for a in (obj.raw or {}).get("attachment", []) if isinstance(a, dict)] if obj.local else []
    if attachment:
        doc["attachment"] = attachment
    return doc


def same_origin(a: str, b: str) -> bool:
    return host_of(a) == host_of(b)
