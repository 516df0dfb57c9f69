"""Social hub pages. Every action is a real form POST answered by a 303 (PRG); htmx enhances the
like/boost buttons into in-place swaps of the note they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.plugins.flash import flash
from litestar.plugins.htmx import ClientRedirect, HTMXTemplate
from litestar.response import Redirect, Template
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import form_data, safe_next, see_other
from app.security import requires_user
from app.settings import Settings
from domains.account.models import User
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, Announce, APObject, Follow, Like, Notification
from federation.activitypub.outbox import VISIBILITIES, Outbox, OutboxError
from federation.activitypub.safe_fetch import FetchError

PRIVATE = CacheControlHeader(private=True, no_store=True)
TIMELINE_SIZE = 40


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


async def _actors(session: AsyncSession, uris: set[str]) -> dict[str, Actor]:
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
    actors = await _actors(session, {o.attributed_to for o in objs} | set(boosters.values()))
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

    async def _page(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                    tab: str) -> Template:
        async with Federation(db_session, settings) as fed:
            me = await self._me(fed, request)
            following = list((await db_session.scalars(select(Follow.followee).where(
                Follow.follower == me.uri, Follow.state == "accepted"))).all())
            base = select(APObject).where(APObject.deleted.is_(False))
            boosters: dict[str, str] = {}
            if tab == "home":
                authors = [*following, me.uri]
                objs = list((await db_session.scalars(base.where(
                    APObject.attributed_to.in_(authors), APObject.visibility != "direct"
                ).order_by(APObject.published.desc()).limit(TIMELINE_SIZE))).all())
                direct = [o for o in (await db_session.scalars(base.where(APObject.visibility == "direct").order_by(
                    APObject.published.desc()).limit(200))).all() if me.uri in o.mentions or o.attributed_to == me.uri]
                boosts = (await db_session.execute(select(Announce.object_id, Announce.actor).where(
                    Announce.actor.in_(authors)).order_by(Announce.created_at.desc()).limit(TIMELINE_SIZE))).all()
                boosted_ids = [b[0] for b in boosts]
                boosted = list((await db_session.scalars(base.where(APObject.ap_id.in_(boosted_ids)))).all()) \
                    if boosted_ids else []
                for oid, actor in boosts:
                    boosters.setdefault(oid, actor)
                seen: dict[str, APObject] = {}
                for o in [*objs, *direct, *boosted]:
                    seen.setdefault(o.ap_id, o)
                merged = sorted(seen.values(), key=lambda o: o.published.timestamp() if o.published else 0,
                                reverse=True)[:TIMELINE_SIZE]
            elif tab == "local":
                merged = list(await db_session.scalars(base.where(APObject.local, APObject.visibility == "public")
                                                        .order_by(APObject.published.desc()).limit(TIMELINE_SIZE)))
            else:
                merged = list(await db_session.scalars(base.where(APObject.visibility == "public").order_by(
                    APObject.published.desc()).limit(TIMELINE_SIZE)))
            notes = await note_views(db_session, me, merged, boosters)
            unread = await db_session.scalar(select(func.count()).select_from(Notification).where(
                Notification.user_id == request.user.id, Notification.read.is_(False))) or 0
        reply_to = request.query_params.get("reply_to", "")
        return Template("social/timeline.html", context={
            "tab": tab, "notes": notes, "me": me, "unread": unread, "reply_to": reply_to,
            "visibilities": VISIBILITIES, "next": request.url.path})

    @get("/", name="social:home")
    async def home(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Template:
        return await self._page(request, db_session, settings, "home")

    @get("/local")
    async def local(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Template:
        return await self._page(request, db_session, settings, "local")

    @get("/federated")
    async def federated(self, request: Request[User, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Template:
        return await self._page(request, db_session, settings, "federated")

    @get("/notes/{oid:uuid}")
    async def note(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                   settings: Settings) -> Template:
        async with Federation(db_session, settings) as fed:
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
        async with Federation(db_session, settings) as fed:
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
        """A note ``me`` may see: followers-only to its author's accepted followers and the
        mentioned, direct to the mentioned; anything else is 404, as if it did not exist."""
        obj = await db_session.get(APObject, oid)
        if obj is None or obj.deleted:
            raise NotFoundException()
        if obj.visibility in ("followers", "direct") and obj.attributed_to != me.uri and me.uri not in obj.mentions:
            followed = await db_session.scalar(select(Follow.id).where(
                Follow.follower == me.uri, Follow.followee == obj.attributed_to, Follow.state == "accepted"))
            if obj.visibility == "direct" or followed is None:
                raise NotFoundException()
        return obj

    async def _act(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings, oid: UUID,
                   action: str) -> Response[Any]:
        data = await form_data(request)
        destination = safe_next(str(data.get("next", "")), "/social/")
        async with Federation(db_session, settings) as fed:
            async def work() -> tuple[Actor, APObject]:
                me = await self._me(fed, request)
                obj = await self._object(db_session, oid, me)
                await getattr(Outbox(fed), action)(me, obj)
                return me, obj

            htmx = bool(getattr(request, "htmx", False))
            try:
                me, obj = await fed.settle(work, keep=[request.user])
            except (OutboxError, FetchError) as exc:
                if htmx:  # a full navigation shows the message (a followed 303 would be swapped into the note)
                    flash(request, str(exc), category="error")
                    redirect = ClientRedirect(redirect_to=destination)
                    redirect.status_code = 200  # not the handler's 303: the browser would follow it
                    return redirect
                return see_other(destination, request, str(exc), "error")
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

    @post("/notes/{oid:uuid}/delete", status_code=303)
    async def delete(self, oid: UUID, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Response[Any]:
        return await self._act(request, db_session, settings, oid, "delete_note")

    # --- follows ----------------------------------------------------------------------------

    @post("/follow", status_code=303)
    async def follow(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Redirect:
        data = await form_data(request)
        handle = str(data.get("handle", "")).strip()
        async with Federation(db_session, settings) as fed:
            async def work() -> tuple[Actor, Follow]:
                me, target = await self._me(fed, request), await fed.webfinger(handle)
                return target, await Outbox(fed).follow(me, target)

            try:
                target, follow = await fed.settle(work, keep=[request.user])
            except (OutboxError, FetchError) as exc:
                return see_other("/social/following", request, f"Couldn't follow {handle}: {exc}", "error")
        message = f"Following {target.handle}." if follow.state == "accepted" else \
            f"Follow request sent to {target.handle}."
        return see_other("/social/following", request, message)

    @post("/unfollow", status_code=303)
    async def unfollow(self, request: Request[User, Any, Any], db_session: AsyncSession,
                       settings: Settings) -> Redirect:
        data = await form_data(request)
        async with Federation(db_session, settings) as fed:
            me = await self._me(fed, request)
            target = await db_session.scalar(select(Actor).where(Actor.uri == str(data.get("actor", ""))))
            if target is not None:
                await Outbox(fed).unfollow(me, target)
        return see_other("/social/following", request, "Unfollowed.")

    async def _follow_page(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                           which: str) -> Template:
        async with Federation(db_session, settings) as fed:
            me = await self._me(fed, request)
            if which == "following":
                rows = (await db_session.scalars(select(Follow).where(Follow.follower == me.uri).order_by(
                    Follow.created_at.desc()))).all()
                actors = await _actors(db_session, {f.followee for f in rows})
                items = [(f, actors.get(f.followee)) for f in rows]
            else:
                rows = (await db_session.scalars(select(Follow).where(Follow.followee == me.uri).order_by(
                    Follow.created_at.desc()))).all()
                actors = await _actors(db_session, {f.follower for f in rows})
                items = [(f, actors.get(f.follower)) for f in rows]
        return Template("social/follows.html", context={"which": which, "items": items, "me": me})

    @get("/following")
    async def following(self, request: Request[User, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Template:
        return await self._follow_page(request, db_session, settings, "following")

    @get("/followers")
    async def followers(self, request: Request[User, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Template:
        return await self._follow_page(request, db_session, settings, "followers")

    @post("/followers/{fid:uuid}/{decision:str}", status_code=303)
    async def answer(self, fid: UUID, decision: str, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Redirect:
        if decision not in ("approve", "reject"):
            raise NotFoundException()
        async with Federation(db_session, settings) as fed:
            me = await self._me(fed, request)
            follow = await db_session.get(Follow, fid)
            if follow is None or follow.followee != me.uri:
                raise NotFoundException()
            await Outbox(fed).answer_follow(me, follow, accept=decision == "approve")
        return see_other("/social/followers", request,
                         "Follower approved." if decision == "approve" else "Follow request rejected.")

    @post("/settings/locked", status_code=303)
    async def locked(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings) -> Redirect:
        data = await form_data(request)
        async with Federation(db_session, settings) as fed:
            me = await self._me(fed, request)
            me.manually_approves = str(data.get("locked", "")) in ("1", "on", "true")
        return see_other("/social/followers", request, "Saved.")

    @get("/notifications")
    async def notifications(self, request: Request[User, Any, Any], db_session: AsyncSession,
                            settings: Settings) -> Template:
        rows = list((await db_session.scalars(select(Notification).where(
            Notification.user_id == request.user.id).order_by(Notification.created_at.desc()).limit(100))).all())
        actors = await _actors(db_session, {n.actor for n in rows})
        objects = {o.ap_id: o for o in (await db_session.scalars(select(APObject).where(
            APObject.ap_id.in_([n.object_id for n in rows if n.object_id])))).all()} if rows else {}
        items = [(n, actors.get(n.actor), objects.get(n.object_id)) for n in rows]
        for n in rows:
            n.read = True
        return Template("social/notifications.html", context={"items": items})


router = Router(path="/", route_handlers=[SocialController])
