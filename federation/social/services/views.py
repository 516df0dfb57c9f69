"""What every hub page needs to show notes and accounts: stored actors by URI and notes as
:class:`~federation.social.schemas.NoteView` (counts and the member's own likes and boosts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import String, any_, bindparam, case, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor, Announce, APObject, Like
from federation.social.schemas import NoteView

Among = Callable[[Any, str], Any]
_BUILT: dict[tuple[str, str], Any] = {}


def _among(dialect: str) -> Among:
    """``among(column, name)``: ``column`` is one of the list bound as ``name``. PostgreSQL gets
    one array parameter (``= ANY``): the SQL is the same for any list, so it compiles once and
    PostgreSQL prepares it once; elsewhere (SQLite) an expanding ``IN``."""
    if dialect == "postgresql":
        return lambda column, name: column == any_(bindparam(name, type_=ARRAY(String())))
    return lambda column, name: column.in_(bindparam(name, expanding=True))


def built(session: AsyncSession, key: str, build: Callable[[Among], Any]) -> Any:
    """The statement ``build`` makes, made once per dialect and then reused (values are bound
    at execution). On a timeline page, statements built per request cost more CPU (construction
    and SQLAlchemy's cache key of each) than the page they read (issue 20's benchmark)."""
    dialect = session.get_bind().dialect.name
    found = _BUILT.get((dialect, key))
    if found is None:
        found = _BUILT[(dialect, key)] = build(_among(dialect))
    return found


async def actors_by_uri(session: AsyncSession, uris: set[str]) -> dict[str, Actor]:
    """Stored actors by URI (one query), for rendering names and links."""
    if not uris:
        return {}
    rows = (await session.scalars(built(session, "actors_by_uri", lambda among: select(Actor).where(
        among(Actor.uri, "uris"))), {"uris": list(uris)})).all()
    return {a.uri: a for a in rows}


def _counts(among: Among) -> Any:
    """Likes and boosts per note and the member's own among them: a grouped row per note and
    kind, ``mine`` counting the member's row (a page costs the same statements whatever its size)."""
    def counted(kind: str, model: type[Like] | type[Announce]) -> Any:
        return select(literal(kind).label("kind"), model.object_id, func.count().label("n"),
                      func.sum(case((model.actor == bindparam("me"), 1), else_=0)).label("mine")).where(
            among(model.object_id, "ids")).group_by(model.object_id)

    return union_all(counted("like", Like), counted("boost", Announce))


async def note_views(session: AsyncSession, me: Actor, objs: list[APObject],
                     boosters: dict[str, str] | None = None) -> list[NoteView]:
    ids = [o.ap_id for o in objs]
    if not ids:
        return []
    like_counts: dict[str, int] = {}
    boost_counts: dict[str, int] = {}
    my_likes: set[str] = set()
    my_boosts: set[str] = set()
    for kind, oid, n, mine in (await session.execute(built(session, "note_counts", _counts),
                                                     {"ids": ids, "me": me.uri})).tuples():
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
