"""Our rows as Mastodon entities: actors as Accounts, the social hub's NoteViews as Statuses.

Counts and the member's likes and boosts come from the hub's own :func:`note_views`, so an app
shows exactly what the web pages show. Everything is batched per page (a query per kind, not per
note).

A timeline page is the API's hottest answer (issue 20's benchmark), so the lookups here are built
once per database dialect (``views.built``), not per request, and read plain columns (Core rows,
not ORM objects): building and compiling a statement and loading ORM rows cost more CPU than the
rendering itself. On PostgreSQL a list is one array parameter (``= ANY``), so a statement's SQL is
the same whatever the page holds and its compiled form is reused.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from sqlalchemy import func, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.hashtags import tags_in_document
from federation.activitypub.models import Actor, Announce, APObject, Follow
from federation.activitypub.sanitize import plain_text
from federation.mastodon import entities as e
from federation.mastodon.attachments import from_note
from federation.social.schemas import NoteView, short_local_mentions
from federation.social.services.views import Among, built

# Our visibilities in Mastodon's words (``followers`` is Mastodon's ``private``) and back.
VISIBILITY_OUT = {"public": "public", "unlisted": "unlisted", "followers": "private", "direct": "direct"}
VISIBILITY_IN = {v: k for k, v in VISIBILITY_OUT.items()}
DEFAULT_AVATAR = "/static/img/avatar-default.png"


def iso(moment: datetime | None) -> str:
    """ISO 8601 with milliseconds and ``Z``, as Mastodon writes it."""
    moment = (moment or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def day(moment: datetime | None) -> str:
    """A date at midnight (Account.created_at) ."""
    moment = (moment or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT00:00:00.000Z")


class Handle(Protocol):
    """What a handle and a mention need of an account: an :class:`Actor` or a :class:`Who`."""

    @property
    def id(self) -> UUID: ...
    @property
    def uri(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def local(self) -> bool: ...
    @property
    def domain(self) -> str: ...
    @property
    def url(self) -> str: ...


class Who(NamedTuple):
    """An account as a mention or a reply's parent needs it (a row of plain columns)."""

    id: UUID
    uri: str
    username: str
    local: bool
    domain: str
    url: str


class Boost(NamedTuple):
    """What a boost's wrapper status shows of its Announce row."""

    id: UUID
    activity_id: str
    published: datetime | None
    created_at: datetime | None


def acct(a: Handle) -> str:
    """An account's handle as Mastodon writes it: the bare name here, ``name@host`` elsewhere."""
    return a.username if a.local else f"{a.username}@{a.domain}"


def _counts(among: Among) -> Any:
    """Accounts' three counts in one statement: a grouped row per account and kind (``last``,
    the newest note's date, only for posts)."""
    no_date = null().cast(APObject.published.type)
    return union_all(
        select(literal("posts").label("kind"), APObject.attributed_to, func.count(),
               func.max(APObject.published)).where(
            among(APObject.attributed_to, "uris"), APObject.deleted.is_(False),
            APObject.visibility != "direct").group_by(APObject.attributed_to),
        select(literal("following").label("kind"), Follow.follower, func.count(), no_date).where(
            among(Follow.follower, "uris"), Follow.state == "accepted").group_by(Follow.follower),
        select(literal("followers").label("kind"), Follow.followee, func.count(), no_date).where(
            among(Follow.followee, "uris"), Follow.state == "accepted").group_by(Follow.followee))


def _parents(among: Among) -> Any:
    """Replied-to notes' ids and their authors (those we hold)."""
    return select(APObject.id, APObject.ap_id, APObject.attributed_to, Actor.id, Actor.uri, Actor.username,
                  Actor.local, Actor.domain, Actor.url).outerjoin(
        Actor, Actor.uri == APObject.attributed_to).where(among(APObject.ap_id, "ids"))


def _mentioned(among: Among) -> Any:
    return select(Actor.id, Actor.uri, Actor.username, Actor.local, Actor.domain, Actor.url).where(
        among(Actor.uri, "uris"))


def _replies(among: Among) -> Any:
    return select(APObject.in_reply_to, func.count()).where(
        among(APObject.in_reply_to, "ids"), APObject.deleted.is_(False)).group_by(APObject.in_reply_to)


def _wrappers(among: Among) -> Any:
    return select(Announce.actor, Announce.object_id, Announce.id, Announce.activity_id, Announce.published,
                  Announce.created_at).where(among(Announce.actor, "actors"), among(Announce.object_id, "ids"))


class Render:
    """Entities for one request: ``me`` is the member's actor, ``base`` this site's origin."""

    def __init__(self, session: AsyncSession, base: str, me: Actor | None) -> None:
        self.session = session
        self.base = base
        self.here = base.split("://", 1)[-1]
        self.me = me

    # --- accounts -----------------------------------------------------------------------------

    async def accounts(self, actors: list[Actor]) -> dict[str, e.Account]:
        """Accounts by actor URI, their counts from our tables (one statement)."""
        uris = list({a.uri for a in actors})
        if not uris:
            return {}
        posts: dict[str, tuple[int, datetime | None]] = {}
        following: dict[str, int] = {}
        followers: dict[str, int] = {}
        for kind, uri, n, last in (await self.session.execute(built(self.session, "counts", _counts),
                                                              {"uris": uris})).tuples():
            if kind == "posts":
                posts[uri] = (int(n), last)
            else:
                (following if kind == "following" else followers)[uri] = int(n)
        out: dict[str, e.Account] = {}
        for a in actors:
            count, last = posts.get(a.uri, (0, None))
            avatar = a.icon_url or self.base + DEFAULT_AVATAR
            out[a.uri] = e.Account(
                id=str(a.id), username=a.username, acct=acct(a),
                url=a.url or a.uri, uri=a.uri, display_name=a.name, note=a.summary, avatar=avatar,
                avatar_static=avatar, header=self.base + DEFAULT_AVATAR, header_static=self.base + DEFAULT_AVATAR,
                locked=a.manually_approves, bot=a.type in ("Service", "Application"), group=a.type == "Group",
                discoverable=True if a.local else None, created_at=day(a.created_at),
                last_status_at=day(last) if last else None, statuses_count=count,
                followers_count=int(followers.get(a.uri, 0)), following_count=int(following.get(a.uri, 0)))
        return out

    async def account(self, actor: Actor) -> e.Account:
        return (await self.accounts([actor]))[actor.uri]

    def _stub_account(self, uri: str) -> e.Account:
        """An author we hold no actor for (never dereferenced yet): enough for a client to render."""
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        host = uri.split("://", 1)[-1].split("/", 1)[0]
        return e.Account(id=uri, username=name, acct=f"{name}@{host}", url=uri, uri=uri, display_name=name, note="",
                         avatar=self.base + DEFAULT_AVATAR, avatar_static=self.base + DEFAULT_AVATAR,
                         header=self.base + DEFAULT_AVATAR, header_static=self.base + DEFAULT_AVATAR, locked=False,
                         bot=False, group=False, discoverable=None, created_at=day(None), last_status_at=None,
                         statuses_count=0, followers_count=0, following_count=0)

    # --- statuses -----------------------------------------------------------------------------

    async def statuses(self, views: list[NoteView], *, wrap_boosts: bool = True) -> list[e.Status]:
        """Statuses for the hub's note views; a view shown because someone boosted it becomes
        the boost's wrapper status (its ``reblog`` the note), as Mastodon's timelines have it."""
        if not views:
            return []
        objs = [v.obj for v in views]
        session = self.session
        # The note views carry their authors and boosters already: only replied-to notes (their
        # id and their author's) and mentioned accounts not among those are read here, so a page
        # costs the same few statements whatever its size.
        actors: dict[str, Actor] = {v.author.uri: v.author for v in views if v.author is not None}
        actors.update({v.boosted_by.uri: v.boosted_by for v in views if v.boosted_by is not None and wrap_boosts})
        known: dict[str, Handle] = dict(actors)  # every account a mention or a parent may name
        looked_up = {o.attributed_to for o in objs} | set(actors)
        parents: dict[str, tuple[UUID, str]] = {}
        if wanted := {o.in_reply_to for o in objs if o.in_reply_to}:
            for oid, ap_id, author, *who in (await session.execute(built(session, "parents", _parents),
                                                                   {"ids": list(wanted)})).tuples():
                parents[ap_id] = (oid, author)
                if who[0] is not None and author not in actors:
                    known[author] = Who(*who)
                looked_up.add(author)
        mentioned = {u for o in objs for u in (o.mentions or []) if isinstance(u, str)} - looked_up
        if mentioned:
            for row in (await session.execute(built(session, "mentioned", _mentioned),
                                              {"uris": list(mentioned)})).tuples():
                known[row[1]] = Who(*row)
        # Full accounts (with their counts) only for what a status shows whole: its author and
        # booster; a mention needs the handle alone, a reply its parent author's id.
        boosters = {v.boosted_by.uri for v in views if v.boosted_by is not None and wrap_boosts}
        shown = {o.attributed_to for o in objs} | boosters
        accounts = await self.accounts([a for uri, a in actors.items() if uri in shown])
        note_ids = [o.ap_id for o in objs]
        replies = {k: v for k, v in (await session.execute(built(session, "replies", _replies),
                                                            {"ids": note_ids})).tuples()}
        wrappers: dict[tuple[str, str], Boost] = {}
        if boosters:
            rows = await session.execute(built(session, "wrappers", _wrappers),
                                         {"actors": list(boosters), "ids": note_ids})
            for actor, object_id, *boost in rows.tuples():
                wrappers[(actor, object_id)] = Boost(*boost)
        out: list[e.Status] = []
        for v in views:
            o = v.obj
            parent = parents.get(o.in_reply_to) if o.in_reply_to else None
            parent_author = known.get(parent[1]) if parent is not None else None
            mentions = [e.Mention(id=str(a.id), username=a.username, acct=acct(a), url=a.url or a.uri)
                        for u in (o.mentions or []) if (a := known.get(u)) is not None and a.username]
            status = e.Status(
                id=str(o.id), uri=o.ap_id, url=o.url or o.ap_id, created_at=iso(o.published),
                account=accounts.get(o.attributed_to) or self._stub_account(o.attributed_to),
                content=_content(o, self.here),
                visibility=VISIBILITY_OUT.get(o.visibility, "public"), sensitive=bool(_warning(o)),
                spoiler_text=_warning(o), media_attachments=from_note(o), mentions=mentions, tags=self._tags(o),
                emojis=[],
                reblogs_count=v.boosts, favourites_count=v.likes, replies_count=int(replies.get(o.ap_id, 0)),
                in_reply_to_id=str(parent[0]) if parent is not None else None,
                in_reply_to_account_id=str(parent_author.id) if parent_author is not None else None,
                reblog=None, poll=None, card=None, language=None,
                edited_at=iso(o.updated) if o.updated and o.published and o.updated > o.published else None,
                favourited=v.liked, reblogged=v.boosted, muted=False, bookmarked=False, pinned=False)
            wrapper = wrappers.get((v.boosted_by.uri, o.ap_id)) if v.boosted_by is not None else None
            if wrapper is not None and v.boosted_by is not None:
                status = self._wrapper(wrapper, accounts[v.boosted_by.uri], status)
            out.append(status)
        return out

    def _tags(self, o: APObject) -> list[e.Tag]:
        """The note's AS2 Hashtag tags (stored in its document), linked to their tag timeline."""
        names = tags_in_document((o.raw or {}).get("tag"))
        return [e.Tag(name=n, url=f"{self.base}/api/v1/timelines/tag/{n}") for n in names]

    def _wrapper(self, ann: Announce | Boost, booster: e.Account, inner: e.Status) -> e.Status:
        return e.Status(
            id=str(ann.id), uri=ann.activity_id or f"{inner.uri}#boost-{ann.id}", url=None,
            created_at=iso(ann.published or ann.created_at), account=booster, content="",
            visibility="public", sensitive=False, spoiler_text="", media_attachments=[], mentions=[], tags=[],
            emojis=[], reblogs_count=0, favourites_count=0, replies_count=0, in_reply_to_id=None,
            in_reply_to_account_id=None, reblog=inner, poll=None, card=None, language=None, edited_at=None,
            favourited=False, reblogged=inner.reblogged, muted=False, bookmarked=False, pinned=False)

    async def boost_wrapper(self, ann: Announce, inner: e.Status) -> e.Status:
        assert self.me is not None
        return self._wrapper(ann, await self.account(self.me), inner)


def _warning(o: APObject) -> str:
    """The content warning: a note's ``summary``. An Event's is its description, not a warning
    (Mobilizon and Gancio send one), so it is shown in the content instead."""
    return "" if o.type == "Event" else o.summary


def _content(o: APObject, here: str) -> str:
    """The status's HTML: a note's own; an Article's or an Event's title first (clients show no
    ``name``), an Event's summary after it, as Mastodon renders such objects."""
    if o.type not in ("Article", "Event"):
        return short_local_mentions(o.content, here)
    title = f"<p><strong>{html.escape(plain_text(o.name, 500))}</strong></p>" if o.name or o.type == "Article" else ""
    summary = f"<p>{html.escape(o.summary)}</p>" if o.type == "Event" and o.summary else ""
    return f"{title}{summary}{o.content}"


def source_text(html: str) -> str:
    """A note's text for delete-and-redraft: its HTML as plain text, paragraphs kept apart."""
    return plain_text(html.replace("</p>", "</p>\n\n").replace("<br>", "\n"), 100_000).strip()

