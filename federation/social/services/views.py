"""What every hub page needs to show notes and accounts: stored actors by URI and notes as
:class:`~federation.social.schemas.NoteView` (counts and the member's own likes and boosts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal, select, union_all
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
    # Counts and the member's own like and boost in one statement: a grouped row per note and
    # kind, ``mine`` counting the member's row among them (a page costs the same statements
    # whatever its size).
    def counted(kind: str, model: type[Like] | type[Announce]) -> Any:
        return select(literal(kind).label("kind"), model.object_id, func.count().label("n"),
                      func.sum(case((model.actor == me.uri, 1), else_=0)).label("mine")).where(
            model.object_id.in_(ids)).group_by(model.object_id)

    like_counts: dict[str, int] = {}
    boost_counts: dict[str, int] = {}
    my_likes: set[str] = set()
    my_boosts: set[str] = set()
    for kind, oid, n, mine in (await session.execute(union_all(counted("like", Like),
                                                               counted("boost", Announce)))).tuples():
        counts, own = (like_counts, my_likes) if kind == "like" else (boost_counts, my_boosts)
        counts[oid] = int(n)
        if mine:
            own.add(oid)
    boosters = boosters or {}
    actors = await actors_by_uri(session, {o.attributed_to for o in objs} | set(boosters.values()))
    return [NoteView(obj=o, author=actors.get(o.attributed_to), likes=int(like_counts.get(o.ap_id, 0)),
                     boosts=int(boost_counts.get(o.ap_id, 0)), liked=o.ap_id in my_likes,
                     boosted=o.ap_id in my_boosts, mine=o.attributed_to == me.uri,
                     boosted_by=actors.get(boosters[o.ap_id]) if o.ap_id in boosters else None,
                     here=me.domain) for o in objs]
