"""ActivityPub HTTP endpoints: actors, inboxes, outboxes and collections, objects, discovery."""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.caching import ANONYMOUS_OPT
from app.jobs import enqueue
from app.limits import INBOX, Limiter, app_limiter
from app.params import MAX_PAGE
from app.safe_http import MalformedJSON, decode_json
from app.settings import Settings
from domains.account.models import User
from federation.activitypub.as2 import as_list, id_of, iso, wants_as2
from federation.activitypub.contexts import PUBLIC, emitted_context, event_context
from federation.activitypub.core import PAGE_SIZE, Federation
from federation.activitypub.models import Activity, Actor, APObject, Follow, Like
from federation.activitypub.moderation import blocks
from federation.activitypub.outbox import note_document
from federation.activitypub.processor import InboxPayload
from federation.activitypub.signatures import SignatureError, SignedMessage, signature_key_id, verify_request
from federation.activitypub.urls import DOMAIN_ACTORS, host_of, http_url

log = logging.getLogger("rose_ash.federation.inbox")

AS2 = "application/activity+json"
MAX_INBOX_BODY = 1_048_576
MACHINE = {"exclude_from_csrf": True, "skip_session": True, **access.machine()}  # HTTP signatures
UNTRUSTED_OK = frozenset({"Create", "Update", "Announce"})


def as2(data: dict[str, Any], status: int = 200, *, vary: str = "Accept") -> Response[bytes]:
    return Response(msgspec.json.encode(data), status_code=status, media_type=AS2,
                    headers={"Vary": vary, "Cache-Control": "max-age=60, public" if status == 200 else "no-store"})


def _problem(status: int, detail: str) -> Response[bytes]:
    body = {"type": "about:blank", "title": detail, "status": status, "detail": detail}
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/problem+json")


def forgejo_activity_id(data: dict[str, Any], body: bytes) -> str | None:
    """An id for Forgejo's ``Like`` and ``Undo{Like}``, which carry a ``startTime`` but no ``id``
    (forgejo ``modules/forgefed/activity_like.go``): on the actor's origin, unique per body, so
    a redelivery is still recognised."""
    actor, start = id_of(data.get("actor")), data.get("startTime")
    if data.get("type") not in ("Like", "Undo") or not isinstance(start, str) or not http_url(actor):
        return None
    return f"{actor}#forgefed-{str(data['type']).lower()}-{hashlib.sha256(body).hexdigest()[:32]}"


def _message(request: Request[Any, Any, Any], settings: Settings, body: bytes) -> SignedMessage:
    query = request.url.query
    url = settings.base_url + request.url.path + (f"?{query}" if query else "")
    return SignedMessage.build(request.method, url, [(k.decode("latin-1"), v.decode("latin-1"))
                                                     for k, v in request.scope["headers"]], body)


async def _require_signed_get(request: Request[Any, Any, Any], fed: Federation, owner: str | None, *,
                              optional: bool = False) -> None:
    """Authorized fetch (Mastodon's secure mode): a GET must be signed, and the signer may see it.

    A signer (key or actor) on a suspended domain gets 403, before its key is fetched, as from
    Mastodon (``SignatureVerification`` sets failure code 403 for a disallowed domain); an
    unsigned or badly signed GET 401. An account that ``owner`` (the member the document belongs
    to) blocks gets 404: Mastodon answers it 404 for a status (``StatusPolicy#show?`` → not
    found) but an empty page for collections; we answer 404 everywhere, the answer for anything
    the caller may not see, so blocked and absent look the same. ``optional`` (the actor
    document, which every peer needs unsigned to verify signatures): an unsigned or badly signed
    GET is served as usual; only a verified signer is held to the domain and member blocks.
    """
    if not fed.settings.federation_authorized_fetch:
        return
    msg = _message(request, fed.settings, b"")
    key_id = signature_key_id(msg)
    if optional and not key_id:
        return
    if key_id and await fed.domain_blocked(key_id):
        raise HTTPException(status_code=403, detail="domain blocked")
    try:
        verified = await fed.settle(lambda: verify_request(msg, fed.resolve_key))
    except SignatureError as exc:
        if optional:
            return
        raise HTTPException(status_code=401, detail=f"signature required: {exc.reason}") from None
    if await fed.domain_blocked(verified.owner):
        raise HTTPException(status_code=403, detail="domain blocked")
    if owner and owner != verified.owner and await blocks(fed.session, owner, verified.owner):
        log.info("signed GET %s refused: %s blocks %s", request.url.path, owner, verified.owner)
        raise NotFoundException()


# --- actors -------------------------------------------------------------------------------


def _actor_vary(settings: Settings) -> str:
    return "Accept, Signature" if settings.federation_authorized_fetch else "Accept"


async def person_response(db_session: AsyncSession, settings: Settings, user: User,
                          request: Request[Any, Any, Any] | None = None) -> Response[bytes]:
    """The AS2 document of a member (the profile handler calls this for AS2 requests)."""
    async with Federation(db_session, settings, limits=_limits(request) if request else None) as fed:
        if request is not None:
            await _require_signed_get(request, fed, fed.urls.user(user.username), optional=True)
        actor = await fed.local_actor_for_user(user)
        return as2(await fed.actor_document(actor), vary=_actor_vary(settings))


async def _actor_for(fed: Federation, handle: str) -> Actor:
    """``@alice`` (user) or a domain actor name."""
    if handle.startswith("@") and len(handle) > 1:
        user = await fed.user_by_name(handle[1:])
        if user is None:
            raise NotFoundException()
        return await fed.local_actor_for_user(user)
    if handle in DOMAIN_ACTORS:
        return await fed.local_service_actor(handle)
    raise NotFoundException()


@get("/ap/actors/{name:str}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def service_actor(name: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Response[Any]:
    if name not in DOMAIN_ACTORS:
        raise NotFoundException()
    if not wants_as2(request.headers.get("accept")):
        return Redirect("/" if name == "instance" else f"/{name}/")
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        await _require_signed_get(request, fed, fed.urls.service(name), optional=True)
        return as2(await fed.actor_document(await fed.local_service_actor(name)), vary=_actor_vary(settings))


# --- inboxes ------------------------------------------------------------------------------


def _limits(request: Request[Any, Any, Any]) -> Limiter:
    """The app's rate limits (in Redis when configured, so they hold across processes)."""
    return app_limiter(request)


async def _inbox(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                 recipient: str | None) -> Response[bytes]:
    client = request.client.host if request.client else "?"
    limits = _limits(request)
    if not await limits.hit(INBOX, client):
        log.warning("inbox: rate limit hit by %s", client)
        return Response(b"", status_code=429, headers={"Retry-After": limits.retry_after(INBOX)})
    body = await request.body()
    if len(body) > MAX_INBOX_BODY:
        return _problem(413, "activity too large")
    # The body is judged before anything else (signature, key fetch, database): whoever sent it,
    # signed or not, malformed input is a 400 and costs nothing more.
    try:
        data = decode_json(body)
    except MalformedJSON as exc:
        log.warning("inbox: %s from %s", exc, client)
        return _problem(400, f"the body is not an activity: {exc}")
    if not isinstance(data, dict):
        return _problem(400, "an activity is a JSON object")
    activity_id, kind, actor_uri = data.get("id"), data.get("type"), id_of(data.get("actor"))
    if activity_id is None and recipient is not None and recipient.startswith(("http://", "https://")):
        activity_id = forgejo_activity_id(data, body)  # Forgejo's stars carry a startTime, no id
    if not isinstance(activity_id, str) or not isinstance(kind, str) or not kind or not actor_uri:
        log.warning("inbox: activity without id, type or actor")
        return _problem(400, "an activity needs an id, a type and an actor")
    if not http_url(activity_id) or not http_url(actor_uri):
        log.warning("inbox: activity id or actor is not an http(s) URL")
        return _problem(400, "the activity's id and actor must be http(s) URLs with a valid host and port")
    ctx = data.get("@context")
    if ctx is not None and not isinstance(ctx, str | list | dict):
        return _problem(400, "malformed @context")
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        msg = _message(request, settings, body)
        if await fed.domain_blocked(actor_uri, signature_key_id(msg)):
            log.warning("inbox: refused %s from blocked domain %s", kind, host_of(actor_uri))
            return _problem(403, "domain blocked")
        try:
            verified = await fed.settle(lambda: verify_request(msg, fed.resolve_key))
        except SignatureError as exc:
            log.warning("inbox: refused %s %s from %s: %s (key %s)", kind, activity_id, actor_uri, exc.reason,
                        exc.key_id)
            return _problem(exc.status, f"signature: {exc.reason}")
        if recipient is not None and recipient.startswith(("http://", "https://")):
            recipient_uri = f"{recipient}/inbox"  # a repository's actors (forgefed.py checked them)
        else:
            recipient_uri = (await _actor_for(fed, recipient)).inbox if recipient is not None else \
                fed.urls.shared_inbox
        trusted = verified.owner == actor_uri
        if not trusted:
            obj_id = id_of(data.get("object"))
            if kind not in UNTRUSTED_OK or not obj_id:
                log.warning("inbox: %s signed by %s but its actor is %s", kind, verified.owner, actor_uri)
                return _problem(401, "signer does not match the activity's actor")
        elif host_of(activity_id) != host_of(actor_uri):
            log.warning("inbox: activity id %s is not on its actor's host %s", activity_id, actor_uri)
            return _problem(422, "activity id is not on the actor's origin")
        if fed.urls.is_local(actor_uri):
            return _problem(422, "activities of local actors are not accepted from outside")
        existing = await db_session.scalar(select(Activity.id).where(Activity.ap_id == activity_id))
        if existing is not None:
            return Response(b"", status_code=202)
        obj = data.get("object")
        activity = Activity(ap_id=activity_id, direction="in", type=kind[:40], actor_uri=actor_uri,
                            object_id=id_of(obj)[:2048], object_type=str(obj.get("type", ""))[:40]
                            if isinstance(obj, dict) else "", raw=data,
                            verification=f"{verified.spec}:{verified.algorithm}", signer=verified.owner,
                            trusted=trusted, recipient=recipient_uri, state="received")
        try:
            async with db_session.begin_nested():
                db_session.add(activity)
                await db_session.flush()
        except IntegrityError:
            return Response(b"", status_code=202)  # a concurrent duplicate
        await enqueue(db_session, "ap.inbox", InboxPayload(activity_id=str(activity.id)),
                      unique_key=f"ap.inbox:{activity.id}")
    return Response(b"", status_code=202)


@post("/inbox", status_code=202, request_max_body_size=MAX_INBOX_BODY, opt=MACHINE)
async def shared_inbox(request: Request[Any, Any, Any], db_session: AsyncSession,
                       settings: Settings) -> Response[bytes]:
    return await _inbox(request, db_session, settings, None)


@post("/{handle:str}/inbox", status_code=202, request_max_body_size=MAX_INBOX_BODY, opt=MACHINE)
async def user_inbox(handle: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Response[bytes]:
    if not handle.startswith("@"):
        raise NotFoundException()
    return await _inbox(request, db_session, settings, handle)


@post("/ap/actors/{name:str}/inbox", status_code=202, request_max_body_size=MAX_INBOX_BODY, opt=MACHINE)
async def service_inbox(name: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Response[bytes]:
    if name not in DOMAIN_ACTORS:
        raise NotFoundException()
    return await _inbox(request, db_session, settings, name)


# --- outbox and collections ---------------------------------------------------------------


def _collection(cid: str, total: int, page: int | None, items: list[Any]) -> dict[str, Any]:
    if page is None:
        return {"@context": emitted_context(), "id": cid, "type": "OrderedCollection", "totalItems": total,
                "first": f"{cid}?page=1", "last": f"{cid}?page={max(1, -(-total // PAGE_SIZE))}"}
    doc: dict[str, Any] = {"@context": emitted_context(), "id": f"{cid}?page={page}",
                           "type": "OrderedCollectionPage", "partOf": cid, "totalItems": total,
                           "orderedItems": items}
    if page * PAGE_SIZE < total:
        doc["next"] = f"{cid}?page={page + 1}"
    if page > 1:
        doc["prev"] = f"{cid}?page={page - 1}"
    return doc


def _page(page: int | None) -> int | None:
    if page is not None and not 1 <= page <= MAX_PAGE:  # a huge page is an OFFSET the database refuses
        raise HTTPException(status_code=400, detail=f"page is a number from 1 to {MAX_PAGE}")
    return page


async def _collection_response(handle: str, which: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                               settings: Settings, page: int | None) -> Response[bytes]:
    page = _page(page)
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        actor = await _actor_for(fed, handle)
        await _require_signed_get(request, fed, actor.uri)
        cid = f"{actor.uri}/{which}"
        offset = ((page or 1) - 1) * PAGE_SIZE
        items: list[Any] = []
        cond: Any
        if which == "outbox":
            cond = (APObject.attributed_to == actor.uri) & APObject.local & APObject.deleted.is_(False) & (
                APObject.visibility == "public")
            total = await db_session.scalar(select(func.count()).select_from(APObject).where(cond)) or 0
            if page is not None:
                objs = (await db_session.scalars(select(APObject).where(cond).order_by(
                    APObject.published.desc()).offset(offset).limit(PAGE_SIZE))).all()
                items = [{"id": f"{o.ap_id}/activity", "type": "Create", "actor": actor.uri,
                          "published": iso(o.published), "to": o.to, "cc": o.cc, "object": note_document(o)}
                         for o in objs]
        elif which in ("followers", "following"):
            mine, theirs = (Follow.followee, Follow.follower) if which == "followers" else (
                Follow.follower, Follow.followee)
            cond = (mine == actor.uri) & (Follow.state == "accepted")
            total = await db_session.scalar(select(func.count()).select_from(Follow).where(cond)) or 0
            if page is not None:
                items = list((await db_session.scalars(select(theirs).where(cond).order_by(
                    Follow.created_at.desc()).offset(offset).limit(PAGE_SIZE))).all())
        else:  # liked
            cond = Like.actor == actor.uri
            total = await db_session.scalar(select(func.count()).select_from(Like).where(cond)) or 0
            if page is not None:
                items = list((await db_session.scalars(select(Like.object_id).where(cond).order_by(
                    Like.created_at.desc()).offset(offset).limit(PAGE_SIZE))).all())
        return as2(_collection(cid, total, page, items), vary="Accept, Signature")


COLLECTIONS = ("outbox", "followers", "following", "liked")


@get("/{handle:str}/{which:str}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def user_collection(handle: str, which: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                          settings: Settings, page: int | None = None) -> Response[bytes]:
    if not handle.startswith("@") or which not in COLLECTIONS:
        raise NotFoundException()
    return await _collection_response(handle, which, request, db_session, settings, page)


@get("/ap/actors/{name:str}/{which:str}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def service_collection(name: str, which: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                             settings: Settings, page: int | None = None) -> Response[bytes]:
    if name not in DOMAIN_ACTORS or which not in COLLECTIONS:
        raise NotFoundException()
    return await _collection_response(name, which, request, db_session, settings, page)


# --- objects and activities -----------------------------------------------------------------


@get("/ap/objects/{oid:uuid}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def object_view(oid: UUID, request: Request[Any, Any, Any], db_session: AsyncSession,
                      settings: Settings) -> Response[Any]:
    obj = await db_session.get(APObject, oid)
    if obj is None or not obj.local or obj.visibility not in ("public", "unlisted"):
        raise NotFoundException()
    if not wants_as2(request.headers.get("accept")):
        # An event's HTML is its public page (federation/activitypub/events.py); notes show in social.
        return Redirect(obj.url if obj.type == "Event" and obj.url and not obj.deleted else f"/social/notes/{oid}")
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        await _require_signed_get(request, fed, obj.attributed_to)
    if obj.deleted:
        return as2({"@context": emitted_context(), "id": obj.ap_id, "type": "Tombstone",
                    "formerType": obj.type, "deleted": iso(obj.updated)}, 410)
    context = event_context() if obj.type == "Event" else emitted_context()
    return as2({"@context": context, **note_document(obj)}, vary="Accept, Signature")


@get("/ap/objects/{oid:uuid}/activity", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def object_create_activity(oid: UUID, request: Request[Any, Any, Any], db_session: AsyncSession,
                                 settings: Settings) -> Response[bytes]:
    obj = await db_session.get(APObject, oid)
    if obj is None or not obj.local or obj.deleted or obj.visibility not in ("public", "unlisted"):
        raise NotFoundException()
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        await _require_signed_get(request, fed, obj.attributed_to)
    return as2({"@context": emitted_context(), "id": f"{obj.ap_id}/activity", "type": "Create",
                "actor": obj.attributed_to, "to": obj.to, "cc": obj.cc, "object": note_document(obj)},
               vary="Accept, Signature")


@get("/ap/activities/{aid:uuid}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def activity_view(aid: UUID, request: Request[Any, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Response[bytes]:
    activity = await db_session.get(Activity, aid)
    if activity is None or activity.direction != "out":
        raise NotFoundException()
    raw = activity.raw
    audience = [*as_list(raw.get("to")), *as_list(raw.get("cc"))]
    if PUBLIC not in audience:
        raise NotFoundException()
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        await _require_signed_get(request, fed, activity.actor_uri)
    return as2(raw, vary="Accept, Signature")


router = Router(path="/", opt=access.public(), route_handlers=[
    service_actor, shared_inbox, user_inbox, service_inbox, user_collection, service_collection,
    object_view, object_create_activity, activity_view,
])
