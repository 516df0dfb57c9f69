"""What every hub page needs to show notes and accounts: stored actors by URI and notes as
:class:`~federation.social.schemas.NoteView` (counts and the member's own likes and boosts)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor, Announce, APObject, Like
from federation.social.schemas import NoteView


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
                     boosted_by=actors.get(boosters[o.ap_id]) if o.ap_id in boosters else None,
                     here=me.domain) for o in objs]
