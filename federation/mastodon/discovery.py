"""The Mastodon API's discovery methods, through the social hub's :class:`Discovery` service:

- ``GET /api/v1/statuses/:id/favourited_by`` and ``/reblogged_by``
  (docs.joinmastodon.org/methods/statuses/#favourited_by), Link-paged by the like or boost row;
- ``GET /api/v1/timelines/tag/:hashtag`` (docs.joinmastodon.org/methods/timelines/#tag);
- ``GET /api/v2/search`` (docs.joinmastodon.org/methods/search/#v2): accounts, statuses and
  hashtags; ``resolve=true`` looks a ``user@host`` or profile URL up on its server, through the
  federation layer's SSRF-safe client (:meth:`Accounts.resolve`), at most 30 times per member
  in 5 minutes (federation/mastodon/throttle.py). Hashtags come from public and unlisted notes
  only, so a search never reveals a followers-only or direct note's tag.

Its own router, beside :mod:`federation.mastodon.api`'s, with the same errors, CORS and scopes.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.di import Provide
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from sqlalchemy import or_, select

from app.jobs import PermanentFailure
from app.responses import PRIVATE
from app.safe_http import FetchError
from app.settings import Settings
from federation.activitypub.core import Federation
from federation.activitypub.models import Activity, Actor, APObject, Follow, Like
from federation.activitypub.moderation import hidden_from, may_see
from federation.activitypub.processor import OBJECT_TYPES, Processor
from federation.activitypub.urls import http_url
from federation.mastodon import entities as e
from federation.mastodon.api import base_url, mastodon_error, need, paged, status_cursor, user_of
from federation.mastodon.params import bad_request, link_header, one_more, paging, some_id, trim
from federation.mastodon.render import Render
from federation.mastodon.throttle import SEARCH_RESOLVE, spend
from federation.oauth.cors import CORSMiddleware
from federation.social.deps import HUB
from federation.social.schemas import Lookup
from federation.social.services import AccountProblem, Accounts
from federation.social.services.discovery import Discovery, Reaction
from federation.social.services.views import note_views

log = logging.getLogger("rose_ash.mastodon")
SEARCH_TYPES = ("accounts", "statuses", "hashtags")
MAX_OFFSET = 1000  # search pages past this are a crawl, not a member looking for something


class History(msgspec.Struct, kw_only=True):
    day: str
    uses: str
    accounts: str


class TagResult(msgspec.Struct, kw_only=True):
    """Mastodon's Tag entity (docs.joinmastodon.org/entities/Tag/); ``history`` is left empty
    (no per-day counts are kept), which clients accept."""

    name: str
    url: str
    history: list[History]


class SearchResults(msgspec.Struct, kw_only=True):
    accounts: list[e.Account]
    statuses: list[e.Status]
    hashtags: list[TagResult]


def provide_discovery(fed: Federation) -> Discovery:
    return Discovery(fed)


def tag_url(base: str, name: str) -> str:
    return f"{base}/api/v1/timelines/tag/{name}"


def _int(request: Request[Any, Any, Any], name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(low, min(high, int(raw)))
    except ValueError:
        raise bad_request(f"'{name}' must be a number.") from None


async def _reactors(status_id: str, request: Request[Any, Any, Any], discovery: Discovery, settings: Settings,
                    kind: Reaction) -> Response[Any]:
    oid = some_id(status_id, "id")
    assert oid is not None  # a path segment is never empty
    page = paging(request, default=40, cap=80)
    if page.min_id or page.since_id:
        return paged([], {})  # newer-than paging of these lists: not offered; an empty page, as at the top
    found, me = await discovery.reactors(user_of(request), oid, kind, before=page.max_id, size=one_more(page))
    rows, more = trim(found, page)
    accounts = await Render(discovery.session, base_url(settings), me).accounts([a for _, a in rows])
    # The Link cursors are the like/boost rows, not account ids (design note §5).
    return paged([accounts[a.uri] for _, a in rows],
                 link_header(base_url(settings), request, [str(rid) for rid, _ in rows], more=more))


@get("/api/v1/statuses/{status_id:str}/favourited_by", opt=need("read:statuses"))
async def favourited_by(status_id: str, request: Request[Any, Any, Any], discovery: Discovery,
                        settings: Settings) -> Response[Any]:
    return await _reactors(status_id, request, discovery, settings, "like")


@get("/api/v1/statuses/{status_id:str}/reblogged_by", opt=need("read:statuses"))
async def reblogged_by(status_id: str, request: Request[Any, Any, Any], discovery: Discovery,
                       settings: Settings) -> Response[Any]:
    return await _reactors(status_id, request, discovery, settings, "boost")


@get("/api/v1/timelines/tag/{hashtag:str}", opt=need("read:statuses"))
async def tag_timeline(hashtag: str, request: Request[Any, Any, Any], discovery: Discovery,
                       settings: Settings, local: str = "") -> Response[Any]:
    page = paging(request)
    session = discovery.session
    newer = await status_cursor(session, page.min_id or page.since_id)
    me, found = await discovery.tagged(user_of(request), hashtag, await status_cursor(session, page.max_id),
                                       size=one_more(page), newer=newer, oldest_first=page.min_id is not None,
                                       local_only=local.lower() in ("1", "true"))
    views, more = trim(found, page)
    statuses = await Render(session, base_url(settings), me).statuses(views, wrap_boosts=False)
    return paged(statuses, link_header(base_url(settings), request, [s.id for s in statuses], more=more))


@get("/api/v1/favourites", opt=need("read:favourites"))
async def favourites(request: Request[Any, Any, Any], discovery: Discovery, settings: Settings) -> Response[Any]:
    """The member's likes, newest like first (docs.joinmastodon.org/methods/favourites/), of the
    notes they may still see; Link-paged by the like rows (UUIDv7, so ordered by time), as
    Mastodon pages by its favourite ids."""
    page = paging(request)
    session = discovery.session
    me = await discovery.me(user_of(request))
    query = select(Like.id, APObject).join(APObject, APObject.ap_id == Like.object_id).where(
        Like.actor == me.uri, APObject.deleted.is_(False), APObject.attributed_to.not_in(hidden_from(me.uri)))
    if page.max_id is not None:
        query = query.where(Like.id < page.max_id)
    if (after := page.min_id or page.since_id) is not None:
        query = query.where(Like.id > after)
    order = Like.id.asc() if page.min_id is not None else Like.id.desc()
    found = list((await session.execute(query.order_by(order).limit(one_more(page)))).tuples().all())
    if page.min_id is not None:
        found.reverse()
    rows, more = trim(found, page)
    # Followers-only notes stay while the member follows their author (the hub's rule, may_see).
    followed = set((await session.scalars(select(Follow.followee).where(
        Follow.follower == me.uri, Follow.state == "accepted",
        Follow.followee.in_({o.attributed_to for _, o in rows})))).all()) if rows else set()
    shown = [o for _, o in rows if may_see(o, me, o.attributed_to in followed)]
    statuses = await Render(session, base_url(settings), me).statuses(await note_views(session, me, shown),
                                                                      wrap_boosts=False)
    return paged(statuses, link_header(base_url(settings), request, [str(rid) for rid, _ in rows], more=more))


@get("/api/v2/search", opt=need("read:search"))
async def search(request: Request[Any, Any, Any], discovery: Discovery, accounts: Accounts,
                 settings: Settings, q: str = "", type: str = "", resolve: str = "") -> SearchResults:
    """Accounts, statuses and hashtags matching ``q``; ``type`` narrows to one kind. A remote
    account is looked up on its server only with ``resolve=true`` (Mastodon's rule)."""
    if type and type not in SEARCH_TYPES:
        raise ClientException(f"'type' must be one of {', '.join(SEARCH_TYPES)}.", status_code=422)
    words = q.strip()
    if not words:
        raise bad_request("Missing parameter: q")
    if len(words) > 500:
        raise ClientException("'q' is too long (at most 500 characters).", status_code=422)
    size = _int(request, "limit", 20, 1, 40)
    offset = _int(request, "offset", 0, 0, MAX_OFFSET)
    user = user_of(request)
    base = base_url(settings)
    found: list[Actor] = []
    statuses: list[e.Status] = []
    tags: list[TagResult] = []
    me = await discovery.me(user)
    wanted = _remote_lookup(words, allow_http=settings.federation_allow_private_addresses, here=base) \
        if resolve.lower() in ("1", "true") and offset == 0 and type in ("", "accounts", "statuses") else None
    if wanted is not None:
        # Only a search that would fetch from another server counts: typing a name does not.
        await spend(request, SEARCH_RESOLVE, "searches that look accounts up on other servers")
    if type in ("", "accounts"):
        found = await discovery.accounts(user, words, size=size, offset=offset)
        if wanted is not None:
            try:
                actor, _notice = await accounts.resolve(user, wanted)
            except AccountProblem:
                actor = None  # not found, not reachable or not an account: search answers with what it has
            if actor is not None and all(a.uri != actor.uri for a in found):
                found = [actor, *found][:size]
    if type in ("", "statuses"):
        me, views = await discovery.statuses(user, words, size=size, offset=offset)
        if wanted is not None and wanted.url:
            pasted = await _resolve_status(discovery, me, wanted.url)
            if pasted is not None:
                views = [*(await note_views(discovery.session, me, [pasted])),
                         *(v for v in views if v.obj.id != pasted.id)][:size]
        statuses = await Render(discovery.session, base, me).statuses(views, wrap_boosts=False)
    if type in ("", "hashtags"):
        tags = [TagResult(name=n, url=tag_url(base, n), history=[])
                for n, _uses in await discovery.hashtags(user, words, size=size, offset=offset)]
    rendered = await Render(discovery.session, base, me).accounts(found)
    await discovery.session.commit()  # a resolved account or status was stored
    return SearchResults(accounts=[rendered[a.uri] for a in found], statuses=statuses, hashtags=tags)


async def _resolve_status(discovery: Discovery, me: Actor, url: str) -> APObject | None:
    """The note a pasted URL names, if the member may see it: one we hold (by its id or its page
    URL), else fetched from its origin through the federation layer's guarded client (never while
    this transaction holds write locks: :meth:`Federation.settle`) and stored as a received note
    is. None for anything else (an account's URL, a page that is no note, a server that does not
    answer, a note the member may not see), so search answers with what it has, never a 500."""
    fed, session = discovery.fed, discovery.session

    obj: APObject | None = await session.scalar(select(APObject).where(
        or_(APObject.ap_id == url, APObject.url == url), APObject.deleted.is_(False)).order_by(
        APObject.local.desc()).limit(1))
    if obj is None and not fed.urls.is_local(url) and not await fed.domain_blocked(url):
        async def work() -> APObject | None:
            data = await fed.fetch_object(url)
            if data.get("type") not in OBJECT_TYPES:
                return None
            stored = await session.scalar(select(APObject).where(APObject.ap_id == data["id"]))
            if stored is not None:
                return stored
            # Believed as fetched from its origin (fetch_object checks the id is on the URL's host,
            # store_object that its author is too), as a boosted note fetched by its id is.
            fetched = Activity(ap_id=str(data["id"]), direction="in", type="Fetch", actor_uri="",
                               raw={"type": "Fetch"}, trusted=False)
            return await Processor(fed, fetched).store_object(data)

        try:
            obj = await fed.settle(work, keep=[me])
        except (FetchError, PermanentFailure) as exc:
            log.info("search could not resolve %s: %s", url[:300], exc)
            return None
    if obj is None or obj.deleted:
        return None
    try:
        return await discovery.timelines.visible(me, obj.id)
    except NotFoundException:
        return None  # a note the member may not see is not found, as if it did not exist


def _remote_lookup(words: str, *, allow_http: bool = False, here: str = "") -> Lookup | None:
    """``user@host`` (an ``@`` in front or not) or an https URL (a profile's or a note's; http too
    where the federation layer may use it, test and private networks, and for this site's own
    URLs, ``here``, which are never fetched); else None."""
    schemes = ("https://", "http://") if allow_http else "https://"
    if (words.startswith(schemes) or (here and words.startswith(here + "/"))) and " " not in words \
            and http_url(words):
        return Lookup(url=words)
    user, at, host = words.removeprefix("@").partition("@")
    if at and user and host and " " not in words and "." in host:
        return Lookup(user=user, host=host.lower())
    return None


HANDLERS = [favourited_by, reblogged_by, tag_timeline, favourites, search]

router = Router(path="/", route_handlers=HANDLERS,
                dependencies={**HUB, "discovery": Provide(provide_discovery, sync_to_thread=False)},
                middleware=[CORSMiddleware()], exception_handlers={HTTPException: mastodon_error},
                cache_control=PRIVATE)
