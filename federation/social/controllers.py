"""Social hub pages. Every action is a real form POST answered by a 303 (PRG); htmx enhances the
like/boost and follow buttons into in-place swaps of the part of the page they belong to.

Account pages: ``/social/accounts/<user>@<host>`` shows any actor, local or remote (``<host>`` is
the actor's own host, with its port if it has one). ``/social/accounts?q=<handle or profile URL>``
is the lookup box: it resolves the input (WebFinger for handles) and answers 303 to that page, or
shows the page itself for an actor whose name can't stand in a path; an unknown actor's name
elsewhere in the hub links to ``?q=<actor URI>``. Bad input is 422, an account that doesn't exist
404, a server that can't be reached (or answers nonsense) 502, each as the lookup page with a
message.

Requests use ``app.state.federation_client`` (a :class:`SafeClient`) when the app has one (tests
put a mock transport there); otherwise each request's :class:`Federation` opens its own client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

from litestar import Controller, Request, Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.plugins.flash import flash
from litestar.plugins.htmx import ClientRedirect, HTMXTemplate
from litestar.response import Redirect, Template
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.forms import form_data, safe_next, see_other
from app.responses import PRIVATE
from app.security import requires_user
from app.settings import Settings
from domains.account.models import User
from domains.account.services import AccountService
from federation.activitypub.as2 import as_list, id_of, ids_of, page_url, parse_time
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, Announce, APObject, Follow, Like, Notification
from federation.activitypub.moderation import blocks, hidden_from, limited_unfollowed, visible_note
from federation.activitypub.outbox import VISIBILITIES, Outbox, OutboxError
from federation.activitypub.processor import OBJECT_TYPES, visibility_of
from federation.activitypub.safe_fetch import BlockedAddressError, FetchError, SafeClient
from federation.activitypub.sanitize import plain_text, sanitize_html, text_to_html
from federation.activitypub.urls import Urls, host_of, http_url
from federation.social.paging import EPOCH, cut, older_than, page_link, parse_cursor

TIMELINE_SIZE = 40
LIST_SIZE = 50  # followers, following, notifications
PROFILE_SIZE = 20
# A remote account with fewer stored notes than this gets the first page of its outbox fetched.
FEW_NOTES = 10

_USERNAME = r"[A-Za-z0-9_.~+-]+"
_HOST = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]{1,5})?"
ACCT = re.compile(rf"@?({_USERNAME})@({_HOST})")
_PATH_ACCT = re.compile(rf"{_USERNAME}@{_HOST}")


def account_path(uri: str, actor: Actor | None = None) -> str:
    """The hub's page for an account: ``/social/accounts/user@host`` when its name can stand in a
    path, else the lookup of its URI (which fetches an actor we don't know yet)."""
    if actor is not None and actor.username and _PATH_ACCT.fullmatch(f"{actor.username}@{actor.domain}"):
        return f"/social/accounts/{actor.username}@{actor.domain}"
    return f"/social/accounts?q={quote(actor.uri if actor is not None else uri, safe='')}"


@dataclass
class NoteView:
    obj: APObject
    author: Actor | None
    likes: int
    boosts: int
    liked: bool
    boosted: bool
    mine: bool
    boosted_by: Actor | None = None

    @property
    def local_id(self) -> str:
        return str(self.obj.id)

    @property
    def author_path(self) -> str:
        return account_path(self.obj.attributed_to, self.author)

    @property
    def booster_path(self) -> str:
        return account_path(self.boosted_by.uri, self.boosted_by) if self.boosted_by is not None else ""


@dataclass
class FetchedNote:
    """A public note read from a remote outbox page for display only (sanitised, never stored)."""

    ap_id: str
    url: str
    type: str
    name: str
    content: str
    summary: str
    published: datetime | None
    visibility: str
    author: Actor

    @property
    def author_path(self) -> str:
        return account_path(self.author.uri, self.author)


@dataclass
class Relation:
    """How the member (``me``) and an account relate: ``state`` is the member's follow of it
    ("", "pending" or "accepted")."""

    me: Actor
    target: Actor
    state: str
    follows_me: bool
    blocked: bool = False  # the member blocks this account

    @property
    def is_me(self) -> bool:
        return self.me.uri == self.target.uri


@dataclass
class RemoteExtras:
    """What a remote account's own server says about it: counts and recent public notes."""

    posts: int | None = None
    followers: int | None = None
    following: int | None = None
    notes: list[FetchedNote] = field(default_factory=list)
    problem: str = ""


class AccountProblem(Exception):
    """An account lookup that can't show an account: the status and the message to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Lookup:
    """Parsed lookup input: a handle (``user``, ``host``) or an actor/profile ``url``."""

    user: str = ""
    host: str = ""
    url: str = ""

    @property
    def server(self) -> str:
        return host_of(self.url) if self.url else self.host

    @property
    def label(self) -> str:
        return self.url or f"{self.user}@{self.host}"


def parse_lookup(text: str) -> Lookup:
    """``user@host``, ``@user@host``, ``acct:user@host`` or an http(s) URL; else 422."""
    text = text.strip()
    if text.startswith(("https://", "http://")):
        if not http_url(text):  # also a port out of range or a broken IPv6 literal
            raise AccountProblem(422, f"{text[:200]!r} is not a valid profile URL.")
        return Lookup(url=text.split("#")[0])
    text = text.removeprefix("acct:")
    found = ACCT.fullmatch(text)
    if found is None:
        raise AccountProblem(422, f"{text!r} is not a handle. Type it as user@example.org, or paste a profile URL.")
    return Lookup(user=found.group(1), host=found.group(2).lower())


async def relation(session: AsyncSession, me: Actor, target: Actor) -> Relation:
    mine = await session.scalar(select(Follow.state).where(Follow.follower == me.uri, Follow.followee == target.uri))
    theirs = await session.scalar(select(Follow.id).where(
        Follow.follower == target.uri, Follow.followee == me.uri, Follow.state == "accepted"))
    return Relation(me=me, target=target, state=mine if mine in ("pending", "accepted") else "",
                    follows_me=theirs is not None, blocked=await blocks(session, me.uri, target.uri))


def _total(doc: dict[str, Any]) -> int | None:
    total = doc.get("totalItems")
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def _fetched_note(item: Any, actor: Actor) -> FetchedNote | None:
    """A public or unlisted note by ``actor`` from an item of its outbox, or None."""
    if not isinstance(item, dict):
        return None
    obj: Any = item
    if item.get("type") == "Create":
        if id_of(item.get("actor")) != actor.uri:
            return None
        obj = item.get("object")
    if not isinstance(obj, dict) or obj.get("type") not in OBJECT_TYPES:
        return None
    oid = id_of(obj)
    # Only the author's own objects, served by the author's own server.
    if not oid or host_of(oid) != host_of(actor.uri) or actor.uri not in ids_of(obj.get("attributedTo")):
        return None
    visibility = visibility_of(ids_of(obj.get("to")), ids_of(obj.get("cc")), actor.followers_url)
    if visibility not in ("public", "unlisted"):
        return None
    return FetchedNote(ap_id=oid, url=page_url(obj, oid),
                       type=str(obj.get("type")), name=plain_text(obj.get("name"), 500),
                       content=sanitize_html(obj.get("content")), summary=plain_text(obj.get("summary"), 500),
                       published=parse_time(obj.get("published")), visibility=visibility, author=actor)


async def remote_extras(fed: Federation, actor: Actor, *, want_notes: bool) -> RemoteExtras:
    """Counts and (``want_notes``) the first page of notes from the account's own server.

    Only documents on the actor's own host are fetched, through the guarded client; the first
    failure ends the fetching (a server that is down costs one timeout, not four). Nothing is
    written: fetched notes are shown, not stored.
    """
    extras = RemoteExtras()
    origin = host_of(actor.uri)
    try:
        if actor.outbox and host_of(actor.outbox) == origin:
            _final, outbox = await fed.fetch_json(actor.outbox)
            extras.posts = _total(outbox)
            if want_notes:
                page: Any = outbox
                if not isinstance(outbox.get("orderedItems", outbox.get("items")), list):
                    first = outbox.get("first")
                    if isinstance(first, str) and host_of(first) == origin:
                        _final, page = await fed.fetch_json(first)
                    else:
                        page = first if isinstance(first, dict) else {}
                items = page.get("orderedItems", page.get("items"))
                notes = [_fetched_note(item, actor) for item in as_list(items)[:PROFILE_SIZE]]
                extras.notes = [n for n in notes if n is not None]
        for name, url in (("followers", actor.followers_url), ("following", actor.following_url)):
            if url and host_of(url) == origin:
                _final, doc = await fed.fetch_json(url)
                setattr(extras, name, _total(doc))
    except FetchError as exc:
        if want_notes:
            extras.problem = f"Couldn't load recent posts from {origin}: {exc}"
    return extras


async def actors_by_uri(session: AsyncSession, uris: set[str]) -> dict[str, Actor]:
    """Stored actors by URI (one query), for rendering names and links."""
    if not uris:
        return {}
    rows = (await session.scalars(select(Actor).where(Actor.uri.in_(uris)))).all()
    return {a.uri: a for a in rows}


async def note_views(session: AsyncSession, me: Actor, objs: list[APObject],
                     boosters: dict[str, str] | None = None) -> list[NoteView]:
    ids = [o.ap_id for o in objs]
    if not ids:
        return []
    like_counts: dict[str, int] = {k: v for k, v in (await session.execute(
        select(Like.object_id, func.count()).where(Like.object_id.in_(ids)).group_by(Like.object_id))).tuples()}
    boost_counts: dict[str, int] = {k: v for k, v in (await session.execute(
        select(Announce.object_id, func.count()).where(Announce.object_id.in_(ids)).group_by(
            Announce.object_id))).tuples()}
    my_likes = set((await session.scalars(select(Like.object_id).where(Like.actor == me.uri,
                                                                       Like.object_id.in_(ids)))).all())
    my_boosts = set((await session.scalars(select(Announce.object_id).where(
        Announce.actor == me.uri, Announce.object_id.in_(ids)))).all())
    boosters = boosters or {}
    actors = await actors_by_uri(session, {o.attributed_to for o in objs} | set(boosters.values()))
    return [NoteView(obj=o, author=actors.get(o.attributed_to), likes=int(like_counts.get(o.ap_id, 0)),
                     boosts=int(boost_counts.get(o.ap_id, 0)), liked=o.ap_id in my_likes,
                     boosted=o.ap_id in my_boosts, mine=o.attributed_to == me.uri,
                     boosted_by=actors.get(boosters[o.ap_id]) if o.ap_id in boosters else None) for o in objs]


class SocialController(Controller):
    path = "/social"
    guards = [requires_user]
    cache_control = PRIVATE

    async def _me(self, fed: Federation, request: Request[User, Any, Any]) -> Actor:
        return await fed.local_actor_for_user(request.user)

    @staticmethod
    def _fed(request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Federation:
        """This request's federation facade, on the app's shared client if it has one."""
        client = request.app.state.get("federation_client")
        return Federation(db_session, settings, client if isinstance(client, SafeClient) else None)

    @staticmethod
    def _failed(request: Request[User, Any, Any], destination: str, message: str) -> Response[Any]:
        """A failed action: a flash message on the page it came from. For htmx, a full navigation
        (a followed 303 would be swapped into the part of the page the button replaces)."""
        if getattr(request, "htmx", False):
            flash(request, message, category="error")
            redirect = ClientRedirect(redirect_to=destination)
            redirect.status_code = 200  # not the handler's 303: the browser would follow it
            return redirect
        return see_other(destination, request, message, "error")

    async def _page(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                    tab: str, before: str | None) -> Template:
        cursor = parse_cursor(before)
        newest_first = (APObject.published.desc(), APObject.id.desc())
        more = TIMELINE_SIZE + 1  # one beyond the page tells whether an older page exists
        async with self._fed(request, db_session, settings) as fed:
            me = await self._me(fed, request)
            following = list((await db_session.scalars(select(Follow.followee).where(
                Follow.follower == me.uri, Follow.state == "accepted"))).all())
            hidden = hidden_from(me.uri)  # accounts the member blocks, and those blocking the member
            limited = await limited_unfollowed(db_session, me.uri)
            base = select(APObject).where(APObject.deleted.is_(False), APObject.attributed_to.not_in(hidden))
            if (older := older_than(APObject.published, APObject.id, cursor)) is not None:
                base = base.where(older)
            boosters: dict[str, str] = {}
            if tab == "home":
                authors = [*following, me.uri]
                objs = list((await db_session.scalars(base.where(
                    APObject.attributed_to.in_(authors), APObject.visibility != "direct"
                ).order_by(*newest_first).limit(more))).all())
                # Direct notes: the member's own, and those that told them (a mention or reply).
                told = select(Notification.object_id).where(Notification.user_id == request.user.id,
                                                            Notification.kind.in_(("mention", "reply")))
                direct = list((await db_session.scalars(base.where(
                    APObject.visibility == "direct", or_(APObject.attributed_to == me.uri, APObject.ap_id.in_(told))
                ).order_by(*newest_first).limit(more))).all())
                # Boosts by the accounts followed; only public notes can be boosted. They sort by
                # the note's own date, as the rest of the timeline does, so one key pages it all.
                boosting = Announce.actor.in_(authors) & Announce.actor.not_in(hidden)
                boosted = list((await db_session.scalars(base.where(
                    APObject.ap_id.in_(select(Announce.object_id).where(boosting)),
                    APObject.visibility.in_(("public", "unlisted"))
                ).order_by(*newest_first).limit(more))).all())
                if boosted:
                    for oid, actor in (await db_session.execute(select(Announce.object_id, Announce.actor).where(
                            boosting, Announce.object_id.in_([o.ap_id for o in boosted])
                    ).order_by(Announce.created_at.desc()))).tuples():
                        boosters.setdefault(oid, actor)
                seen: dict[str, APObject] = {}
                for o in [*objs, *direct, *boosted]:
                    seen.setdefault(o.ap_id, o)
                candidates = sorted(seen.values(), key=lambda o: (o.published or EPOCH, o.id), reverse=True)
            elif tab == "local":
                candidates = list(await db_session.scalars(base.where(
                    APObject.local, APObject.visibility == "public").order_by(*newest_first).limit(more)))
            else:
                if limited is not None:
                    base = base.where(APObject.attributed_to.not_in(limited))
                candidates = list(await db_session.scalars(base.where(
                    APObject.visibility == "public").order_by(*newest_first).limit(more)))
            shown, token = cut(candidates, TIMELINE_SIZE, lambda o: (o.published or EPOCH, o.id))
            notes = await note_views(db_session, me, shown, boosters)
            unread = await db_session.scalar(select(func.count()).select_from(Notification).where(
                self._notifications_for(request.user, me.uri, limited), Notification.read.is_(False))) or 0
        reply_to = request.query_params.get("reply_to", "")
        return Template("social/timeline.html", context={
            "tab": tab, "notes": notes, "me": me, "unread": unread, "reply_to": reply_to,
            "visibilities": VISIBILITIES, "next": request.url.path, "paged": cursor is not None,
            "older": page_link(request.url.path, token)})

    @get("/", name="social:home")
    async def home(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                   before: str | None = None) -> Template:
        return await self._page(request, db_session, settings, "home", before)

    @get("/local")
    async def local(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                    before: str | None = None) -> Template:
        return await self._page(request, db_session, settings, "local", before)

    @get("/federated")
    async def federated(self, request: Request[User, Any, Any], db_session: AsyncSession,
                        settings: Settings, before: str | None = None) -> Template:
        return await self._page(request, db_session, settings, "federated", before)

    @get("/notes/{oid:uuid}")
    async def note(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                   settings: Settings) -> Template:
        async with self._fed(request, db_session, settings) as fed:
            me = await self._me(fed, request)
            obj = await self._object(db_session, oid, me)
            replies = list((await db_session.scalars(select(APObject).where(
                APObject.in_reply_to == obj.ap_id, APObject.deleted.is_(False),
                APObject.visibility.in_(("public", "unlisted"))).order_by(APObject.published))).all())
            views = await note_views(db_session, me, [obj, *replies])
        return Template("social/note.html", context={"note": views[0], "replies": views[1:], "me": me,
                                                     "visibilities": VISIBILITIES,
                                                     "next": request.url.path})

    @post("/compose", status_code=303)
    async def compose(self, request: Request[User, Any, Any], db_session: AsyncSession,
                      settings: Settings) -> Redirect:
        data = await form_data(request)
        destination = safe_next(str(data.get("next", "")), "/social/")
        async with self._fed(request, db_session, settings) as fed:
            async def work() -> None:
                await Outbox(fed).post_note(await self._me(fed, request), str(data.get("content", "")),
                                            visibility=str(data.get("visibility", "public")),
                                            summary=str(data.get("summary", "")),
                                            in_reply_to=str(data.get("in_reply_to", "")))

            try:  # mentions and the replied-to author may need fetching: settle orders that before writes
                await fed.settle(work, keep=[request.user])
            except (OutboxError, FetchError) as exc:
                return see_other(destination, request, str(exc), "error")
        return see_other(destination, request, "Posted.")

    async def _object(self, db_session: AsyncSession, oid: UUID, me: Actor) -> APObject:
        obj = await visible_note(db_session, oid, me)
        if obj is None:
            raise NotFoundException()
        return obj

    async def _act(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings, oid: UUID,
                   action: str) -> Response[Any]:
        data = await form_data(request)
        destination = safe_next(str(data.get("next", "")), "/social/")
        async with self._fed(request, db_session, settings) as fed:
            async def work() -> tuple[Actor, APObject]:
                me = await self._me(fed, request)
                obj = await self._object(db_session, oid, me)
                await getattr(Outbox(fed), action)(me, obj)
                return me, obj

            htmx = bool(getattr(request, "htmx", False))
            try:
                me, obj = await fed.settle(work, keep=[request.user])
            except (OutboxError, FetchError) as exc:
                return self._failed(request, destination, str(exc))
            await db_session.flush()
            if htmx and action != "delete_note":
                view = (await note_views(db_session, me, [obj]))[0]
                return HTMXTemplate(template_name="social/_note_actions.html",
                                    context={"n": view, "next": destination})
        return see_other(destination, request)

    @post("/notes/{oid:uuid}/like", status_code=303)
    async def like(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                   settings: Settings) -> Response[Any]:
        return await self._act(request, db_session, settings, oid, "like")

    @post("/notes/{oid:uuid}/unlike", status_code=303)
    async def unlike(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Response[Any]:
        return await self._act(request, db_session, settings, oid, "unlike")

    @post("/notes/{oid:uuid}/boost", status_code=303)
    async def boost(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                    settings: Settings) -> Response[Any]:
        return await self._act(request, db_session, settings, oid, "boost")

    @post("/notes/{oid:uuid}/unboost", status_code=303)
    async def unboost(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                      settings: Settings) -> Response[Any]:
        return await self._act(request, db_session, settings, oid, "unboost")

    @post("/notes/{oid:uuid}/delete", status_code=303, opt=access.session(owner="note"))
    async def delete(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Response[Any]:
        return await self._act(request, db_session, settings, oid, "delete_note")

    # --- follows ----------------------------------------------------------------------------

    @post("/follow", status_code=303)
    async def follow(self, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Response[Any]:
        """Follow by handle or actor URI; back to ``next`` (the account page's button) or the
        Following page. htmx gets the account page's follow box back."""
        data = await form_data(request)
        handle = str(data.get("handle", "")).strip()
        destination = safe_next(str(data.get("next", "")), "/social/following")
        async with self._fed(request, db_session, settings) as fed:
            async def work() -> tuple[Actor, Actor, Follow]:
                me, target = await self._me(fed, request), await fed.webfinger(handle)
                return me, target, await Outbox(fed).follow(me, target)

            try:
                me, target, follow = await fed.settle(work, keep=[request.user])
            except (OutboxError, FetchError) as exc:
                return self._failed(request, destination, f"Couldn't follow {handle}: {exc}")
            message = f"Following {target.handle}." if follow.state == "accepted" else \
                f"Follow request sent to {target.handle}."
            if getattr(request, "htmx", False):
                return self._relation_partial(await relation(db_session, me, target), destination, message)
        return see_other(destination, request, message)

    @post("/unfollow", status_code=303)
    async def unfollow(self, request: Request[User, Any, Any], db_session: AsyncSession,
                       settings: Settings) -> Response[Any]:
        """Unfollow, or withdraw a follow request; back to ``next`` or the Following page."""
        data = await form_data(request)
        destination = safe_next(str(data.get("next", "")), "/social/following")
        message = "Unfollowed."
        async with self._fed(request, db_session, settings) as fed:
            me = await self._me(fed, request)
            target = await db_session.scalar(select(Actor).where(Actor.uri == str(data.get("actor", ""))))
            if target is not None:
                state = await db_session.scalar(select(Follow.state).where(Follow.follower == me.uri,
                                                                           Follow.followee == target.uri))
                if state == "pending":
                    message = "Follow request withdrawn."
                await Outbox(fed).unfollow(me, target)
                if getattr(request, "htmx", False):
                    return self._relation_partial(await relation(db_session, me, target), destination, message)
        return see_other(destination, request, message)

    @staticmethod
    def _relation_partial(rel: Relation, destination: str, message: str) -> HTMXTemplate:
        return HTMXTemplate(template_name="social/_relation.html",
                            context={"rel": rel, "next": destination, "message": message})

    async def _follow_page(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                           which: str, before: str | None) -> Template:
        cursor = parse_cursor(before)
        async with self._fed(request, db_session, settings) as fed:
            me = await self._me(fed, request)
            mine, theirs = (Follow.follower, Follow.followee) if which == "following" else \
                (Follow.followee, Follow.follower)
            query = select(Follow).where(mine == me.uri)
            if (older := older_than(Follow.created_at, Follow.id, cursor)) is not None:
                query = query.where(older)
            rows, token = cut(list((await db_session.scalars(query.order_by(
                Follow.created_at.desc(), Follow.id.desc()).limit(LIST_SIZE + 1))).all()),
                LIST_SIZE, lambda f: (f.created_at, f.id))
            actors = await actors_by_uri(db_session, {getattr(f, theirs.key) for f in rows})
            items = [(f, actors.get(uri), account_path(uri, actors.get(uri)))
                     for f in rows for uri in [getattr(f, theirs.key)]]
        return Template("social/follows.html", context={
            "which": which, "items": items, "me": me, "paged": cursor is not None,
            "older": page_link(request.url.path, token)})

    @get("/following")
    async def following(self, request: Request[User, Any, Any], db_session: AsyncSession,
                        settings: Settings, before: str | None = None) -> Template:
        return await self._follow_page(request, db_session, settings, "following", before)

    @get("/followers")
    async def followers(self, request: Request[User, Any, Any], db_session: AsyncSession,
                        settings: Settings, before: str | None = None) -> Template:
        return await self._follow_page(request, db_session, settings, "followers", before)

    @post("/followers/{fid:uuid}/{decision:str}", status_code=303)
    async def answer(self, fid: UUID, decision: str, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Redirect:
        if decision not in ("approve", "reject"):
            raise NotFoundException()
        async with self._fed(request, db_session, settings) as fed:
            async def work() -> None:
                me = await self._me(fed, request)
                follow = await db_session.get(Follow, fid)
                if follow is None or follow.followee != me.uri:
                    raise NotFoundException()
                await Outbox(fed).answer_follow(me, follow, accept=decision == "approve")

            try:  # the follower may need re-fetching: settle orders that before the writes
                await fed.settle(work, keep=[request.user])
            except (OutboxError, FetchError) as exc:
                return see_other("/social/followers", request, f"Couldn't answer that request: {exc}", "error")
        return see_other("/social/followers", request,
                         "Follower approved." if decision == "approve" else "Follow request rejected.")

    @post("/settings/locked", status_code=303)
    async def locked(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Redirect:
        data = await form_data(request)
        async with self._fed(request, db_session, settings) as fed:
            me = await self._me(fed, request)
            me.manually_approves = str(data.get("locked", "")) in ("1", "on", "true")
        return see_other("/social/followers", request, "Saved.")

    @staticmethod
    def _notifications_for(user: User, me_uri: str, limited: Select[Any] | None) -> ColumnElement[bool]:
        """The member's notifications, less those from accounts hidden from them and, but for
        follow requests (which wait for an answer), from ``limited`` (:func:`limited_unfollowed`)."""
        shown = and_(Notification.user_id == user.id, Notification.actor.not_in(hidden_from(me_uri)))
        if limited is not None:
            shown = and_(shown, or_(Notification.actor.not_in(limited), Notification.kind == "follow_request"))
        return shown

    @get("/notifications")
    async def notifications(self, request: Request[User, Any, Any], db_session: AsyncSession,
                            settings: Settings, before: str | None = None) -> Template:
        cursor = parse_cursor(before)
        me_uri = Urls(settings.base_url).user(request.user.username)
        query = select(Notification).where(self._notifications_for(
            request.user, me_uri, await limited_unfollowed(db_session, me_uri)))
        if (older := older_than(Notification.created_at, Notification.id, cursor)) is not None:
            query = query.where(older)
        rows, token = cut(list((await db_session.scalars(query.order_by(
            Notification.created_at.desc(), Notification.id.desc()).limit(LIST_SIZE + 1))).all()),
            LIST_SIZE, lambda n: (n.created_at, n.id))
        actors = await actors_by_uri(db_session, {n.actor for n in rows})
        objects = {o.ap_id: o for o in (await db_session.scalars(select(APObject).where(
            APObject.ap_id.in_([n.object_id for n in rows if n.object_id])))).all()} if rows else {}
        items = [(n, actors.get(n.actor), objects.get(n.object_id), account_path(n.actor, actors.get(n.actor)))
                 for n in rows]
        for n in rows:
            n.read = True
        return Template("social/notifications.html", context={
            "items": items, "paged": cursor is not None, "older": page_link(request.url.path, token)})

    # --- accounts ---------------------------------------------------------------------------

    @get("/accounts", name="social:lookup")
    async def lookup(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                     q: str = "", before: str | None = None) -> Template | Redirect:
        """The lookup box: a handle or profile URL opens that account's page."""
        if not q.strip():
            return Template("social/lookup.html", context={"lookup_q": "", "problem": ""})
        async with self._fed(request, db_session, settings) as fed:
            try:
                target, notice = await self._resolve(fed, request, parse_lookup(q))
            except AccountProblem as problem:
                return self._lookup_problem(q, problem)
            path = account_path(target.uri, target)
            if not path.startswith("/social/accounts?"):
                return Redirect(path, status_code=303)
            return await self._account_page(request, fed, target, notice, before)

    @get("/accounts/{acct:str}", name="social:account")
    async def account(self, acct: str, request: Request[User, Any, Any], db_session: AsyncSession,
                      settings: Settings, before: str | None = None) -> Template:
        """Any account, local or remote, by ``user@host``."""
        try:
            if ACCT.fullmatch(acct) is None:
                raise AccountProblem(422, f"{acct!r} is not a handle. Account pages are /social/accounts/user@host.")
            wanted = parse_lookup(acct)
            async with self._fed(request, db_session, settings) as fed:
                target, notice = await self._resolve(fed, request, wanted)
                return await self._account_page(request, fed, target, notice, before)
        except AccountProblem as problem:
            return self._lookup_problem(acct, problem)

    @staticmethod
    def _lookup_problem(q: str, problem: AccountProblem) -> Template:
        return Template("social/lookup.html", context={"lookup_q": q, "problem": problem.message},
                        status_code=problem.status)

    async def _resolve(self, fed: Federation, request: Request[User, Any, Any], wanted: Lookup) -> tuple[Actor, str]:
        """The actor for a lookup and a notice to show with it ("" normally).

        A known account comes from our table (refreshed from its server when stale; if that fails,
        shown as we have it, with a notice). Otherwise handles go through WebFinger and URLs are
        fetched. Fetches happen before any write (:meth:`Federation.settle`).
        """
        session = fed.session
        server = wanted.server
        local = server == fed.urls.host
        if not local and await fed.domain_blocked(f"https://{server}/"):
            raise AccountProblem(403, f"Accounts on {server} are blocked on this server.")
        if wanted.url:
            known = await session.scalar(select(Actor.uri).where(
                (Actor.uri == wanted.url) | (Actor.url == wanted.url)).order_by(Actor.local.desc()).limit(1))
        else:
            known = await session.scalar(select(Actor.uri).where(
                func.lower(Actor.username) == wanted.user.lower(), Actor.domain == wanted.host).order_by(
                Actor.local.desc(), Actor.fetched_at.desc()).limit(1))

        async def work() -> Actor:
            if known is not None:
                return await fed.remote_actor(known)
            return await fed.webfinger(wanted.url or wanted.label)

        notice = ""
        try:
            target = await fed.settle(work, keep=[request.user])
        except FetchError as exc:
            stale = await session.scalar(select(Actor).where(Actor.uri == known, Actor.local.is_(False))) \
                if known is not None else None
            if stale is None or exc.status in (404, 410):
                raise self._unavailable(exc, wanted) from None
            target, notice = stale, f"Couldn't refresh this account from {server}, so this may be out of date: {exc}"
        if target.gone:
            raise AccountProblem(404, f"{target.handle} no longer exists.")
        return target, notice

    @staticmethod
    def _unavailable(exc: FetchError, wanted: Lookup) -> AccountProblem:
        if exc.status in (404, 410):
            return AccountProblem(404, f"There is no account {wanted.label}.")
        if isinstance(exc, BlockedAddressError) or exc.status == 400:
            return AccountProblem(422, f"{wanted.server} is not a server we can look accounts up on: {exc}")
        return AccountProblem(502, f"The server {wanted.server} could not be reached, or did not answer with an "
                                   f"account: {exc}")

    async def _account_page(self, request: Request[User, Any, Any], fed: Federation, target: Actor,
                            notice: str, before: str | None = None) -> Template:
        cursor = parse_cursor(before)
        session = fed.session
        here = account_path(target.uri, target)
        extras: RemoteExtras | None = None
        if not target.local:
            async def fetch_extras() -> RemoteExtras:
                stored = await session.scalar(select(func.count()).select_from(APObject).where(
                    APObject.attributed_to == target.uri, APObject.deleted.is_(False),
                    APObject.visibility.in_(("public", "unlisted")))) or 0
                return await remote_extras(fed, target, want_notes=cursor is None and stored < FEW_NOTES)

            extras = await fed.settle(fetch_extras, keep=[request.user, target])
        me = await self._me(fed, request)
        rel = await relation(session, me, target)
        # Followers-only notes to the author and accepted followers; direct notes never here.
        visible = ["public", "unlisted", *(["followers"] if rel.is_me or rel.state == "accepted" else [])]
        live = APObject.deleted.is_(False)
        # Own notes page by (published, note id), boosts by (when we got the boost, boost id).
        own_query = select(APObject).where(APObject.attributed_to == target.uri, live, APObject.visibility.in_(visible))
        if (older := older_than(APObject.published, APObject.id, cursor)) is not None:
            own_query = own_query.where(older)
        own = list((await session.scalars(own_query.order_by(
            APObject.published.desc(), APObject.id.desc()).limit(PROFILE_SIZE + 1))).all())
        boost_query = select(Announce).where(Announce.actor == target.uri, Announce.object_id.in_(
            select(APObject.ap_id).where(live, APObject.attributed_to != target.uri,
                                         APObject.visibility.in_(("public", "unlisted")))))
        if (older := older_than(Announce.created_at, Announce.id, cursor)) is not None:
            boost_query = boost_query.where(older)
        boosts = list((await session.scalars(boost_query.order_by(
            Announce.created_at.desc(), Announce.id.desc()).limit(PROFILE_SIZE + 1))).all())
        boosted = {o.ap_id: o for o in (await session.scalars(select(APObject).where(
            APObject.ap_id.in_([b.object_id for b in boosts])))).all()} if boosts else {}
        keys: dict[str, tuple[datetime, UUID]] = {o.ap_id: (o.published or EPOCH, o.id) for o in own}
        for boost in boosts:
            if boost.object_id in boosted:
                keys.setdefault(boost.object_id, (boost.created_at, boost.id))
        newest = sorted(keys, key=keys.__getitem__, reverse=True)
        page, token = cut(newest, PROFILE_SIZE, keys.__getitem__)
        shown = {*page}
        views = await note_views(session, me, [o for o in [*own, *boosted.values()] if o.ap_id in shown],
                                 {oid: target.uri for oid in boosted if oid in shown})
        entries: list[tuple[str, NoteView | FetchedNote, datetime | None]] = [
            ("stored", v, keys[v.obj.ap_id][0]) for v in views]
        if extras is not None and cursor is None:  # the remote outbox's first page, beside what we hold
            entries += [("fetched", n, n.published) for n in extras.notes if n.ap_id not in keys]
        entries.sort(key=lambda e: e[2].timestamp() if e[2] else 0, reverse=True)
        counts = await self._counts(session, target, extras)
        bio = target.summary
        if target.user_id is not None:
            member = await AccountService(session).get_active(target.user_id)
            bio = sanitize_html(text_to_html(member.bio)) if member is not None and member.bio else ""
        return Template("social/account.html", context={
            "target": target, "rel": rel, "bio": bio, "counts": counts, "entries": entries,
            "notice": notice, "problem": extras.problem if extras else "", "next": here, "me": me,
            "avatar": target.icon_url, "lookup_q": "", "paged": cursor is not None,
            "older": page_link(here, token), "newest": here})

    @staticmethod
    async def _counts(session: AsyncSession, target: Actor, extras: RemoteExtras | None) -> dict[str, int | None]:
        """Posts, following and followers: ours for a local account, its server's for a remote one."""
        if extras is not None:
            return {"posts": extras.posts, "following": extras.following, "followers": extras.followers}

        async def count(*where: Any) -> int:
            return int(await session.scalar(select(func.count()).select_from(Follow).where(*where)) or 0)

        posts = await session.scalar(select(func.count()).select_from(APObject).where(
            APObject.attributed_to == target.uri, APObject.deleted.is_(False), APObject.visibility != "direct"))
        return {"posts": int(posts or 0),
                "following": await count(Follow.follower == target.uri, Follow.state == "accepted"),
                "followers": await count(Follow.followee == target.uri, Follow.state == "accepted")}


router = Router(path="/", route_handlers=[SocialController])
