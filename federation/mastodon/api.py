"""The Mastodon client API (docs.joinmastodon.org/methods/): the subset that makes Elk, Phanpy and
Mastodon.py usable (design note ../shared/design/mastodon-api.md §6).

Every handler calls the social hub's services (federation.social.services: Timelines, Relations,
Accounts, Notifications), so an app and the web hub do the same act under the same rules (blocks,
limited domains, visibility). Tokens come from our OAuth provider; each route names the Mastodon
scope that governs it (and the broad scopes implying it, federation.oauth.scopes).

Errors have Mastodon's shape, ``{"error": "…"}``: 401 for a missing or unknown token, 403 for a
missing scope, 404 for what the member may not see (exactly as for what does not exist), 422 for
input the hub refuses, 400 for malformed ids and bodies.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr
from typing import Any
from uuid import UUID

import msgspec
from litestar import MediaType, Request, Response, Router, delete, get, post
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.limits import OAUTH_REGISTRATION, app_limiter, client_address
from app.responses import PRIVATE
from app.safe_http import FetchError
from app.settings import Settings
from domains.account.models import User
from domains.account.services import AccountService
from domains.market.schemas import MAX_IMAGE_BYTES
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, Announce, APObject, Follow
from federation.activitypub.models import Notification as NotificationRow
from federation.activitypub.moderation import blocks
from federation.activitypub.outbox import MAX_NOTE, OutboxError
from federation.activitypub.sanitize import sanitize_html, text_to_html
from federation.mastodon import entities as e
from federation.mastodon.attachments import MAX_ATTACHMENTS, MEDIA_PIXELS, claim, document
from federation.mastodon.params import Paging, body_params, link_header, paging, some_id, text
from federation.mastodon.render import VISIBILITY_IN, Render, iso, source_text
from federation.oauth.controllers import registration_open
from federation.oauth.cors import CORSMiddleware
from federation.oauth.registration import redirect_uri_problem
from federation.oauth.scopes import MASTODON_GRANULAR, MASTODON_IMPLIES, mastodon_scopes_covering
from federation.oauth.store import OAuthStore
from federation.social.deps import HUB
from federation.social.paging import EPOCH, Cursor
from federation.social.schemas import ComposeForm, Lookup, NoteView
from federation.social.services import AccountProblem, Accounts, Notifications, Relations, Timelines
from federation.social.services.views import note_views

ROSE_ASH_VERSION = "0.1"
# Mastodon.py parses ``version`` as semver and Phanpy gates features on it: the Mastodon version
# whose API we follow comes first, then our own name (design note §4).
VERSION = f"4.3.0 (compatible; Rose Ash {ROSE_ASH_VERSION})"
OOB = "urn:ietf:wg:oauth:2.0:oob"
IDEMPOTENCY_TTL = timedelta(hours=1)  # as Mastodon keeps Idempotency-Key answers
# Mastodon notification types and the hub's kinds they cover.
TYPE_KINDS = {"mention": {"mention", "reply"}, "favourite": {"like"}, "reblog": {"boost"},
              "follow": {"follow"}, "follow_request": {"follow_request"}}
KIND_TYPE = {kind: t for t, kinds in TYPE_KINDS.items() for kind in kinds}
MASTODON_SCOPES = {*MASTODON_IMPLIES, *MASTODON_GRANULAR, "profile"}


def need(granular: str) -> dict[str, Any]:
    """The route's access: a token with ``granular`` or a broad scope implying it."""
    return access.token(*mastodon_scopes_covering(granular))


def mastodon_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Mastodon's error entity, ``{"error": "…"}`` (docs.joinmastodon.org/entities/Error/)."""
    status = exc.status_code
    detail = exc.detail or "Error"
    if status == 404:
        detail = "Record not found"  # Mastodon's words, the same for a hidden record as a missing one
    return Response({"error": detail}, status_code=status, headers=dict(exc.headers or {}),
                    media_type="application/json")


def unprocessable(message: str) -> ClientException:
    return ClientException(message, status_code=422)


def contact_email(settings: Settings) -> str:
    """The instance's contact address, bare (``MAIL_FROM`` may carry a display name, which
    clients reading ``email`` as an address would choke on)."""
    return parseaddr(settings.mail_from)[1]


def base_url(settings: Settings) -> str:
    return settings.base_url.rstrip("/")


def user_of(request: Request[Any, Any, Any]) -> User:
    user = request.user
    assert isinstance(user, User)  # the access guard let only a token's member through
    return user


async def me_and_render(request: Request[Any, Any, Any], fed: Federation, settings: Settings) -> tuple[Actor, Render]:
    me = await fed.local_actor_for_user(user_of(request))
    return me, Render(fed.session, base_url(settings), me)


async def actor_by_id(session: AsyncSession, raw: str) -> Actor:
    oid = some_id(raw, "id")
    actor = await session.get(Actor, oid) if oid is not None else None
    if actor is None or actor.gone:
        raise NotFoundException()
    return actor


async def status_cursor(session: AsyncSession, sid: UUID | None) -> Cursor | None:
    """The timeline position a status id names: a note's, or for a boost's wrapper its note's."""
    if sid is None:
        return None
    obj = await session.get(APObject, sid)
    if obj is None:
        ann = await session.get(Announce, sid)
        if ann is not None:
            obj = await session.scalar(select(APObject).where(APObject.ap_id == ann.object_id))
    if obj is None:
        return Cursor(EPOCH, UUID(int=0)) if sid is not None else None  # unknown: nothing is older
    return Cursor(obj.published or EPOCH, obj.id)


def paged(entities: list[Any], headers: dict[str, str]) -> Response[Any]:
    return Response(entities, headers=headers)


# --- instance and apps (anyone) ----------------------------------------------------------------


async def _instance_numbers(session: AsyncSession) -> tuple[int, int]:
    users = await session.scalar(select(func.count()).select_from(User).where(User.is_active)) or 0
    posts = await session.scalar(select(func.count()).select_from(APObject).where(
        APObject.local, APObject.deleted.is_(False))) or 0
    return int(users), int(posts)


def _configuration() -> e.Configuration:
    return e.Configuration(
        urls=e.Urls(), accounts=e.AccountLimits(max_featured_tags=0),
        statuses=e.StatusLimits(max_characters=MAX_NOTE, max_media_attachments=MAX_ATTACHMENTS,
                                characters_reserved_per_url=23),
        media_attachments=e.MediaLimits(supported_mime_types=["image/jpeg", "image/png", "image/webp"],
                                        image_size_limit=MAX_IMAGE_BYTES, image_matrix_limit=MEDIA_PIXELS,
                                        video_size_limit=0, video_frame_rate_limit=0, video_matrix_limit=0),
        polls=e.PollLimits(max_options=0, max_characters_per_option=0, min_expiration=0, max_expiration=0),
        translation=e.Translation(enabled=False))


DESCRIPTION = "A Rose Ash co-operative: blog, market, events, code and a social hub on the fediverse."


@get("/api/v2/instance", opt=access.public(), cache_control=None)
async def instance_v2(db_session: AsyncSession, settings: Settings) -> e.InstanceV2:
    users, _posts = await _instance_numbers(db_session)
    base = base_url(settings)
    return e.InstanceV2(
        domain=base.split("://", 1)[-1], title="Rose Ash", version=VERSION,
        source_url="https://github.com/rose-ash/rose-ash", description=DESCRIPTION,
        usage=e.Usage(users=e.Users(active_month=users)),
        thumbnail=e.Thumbnail(url=base + "/static/img/avatar-default.png"), languages=["en"],
        configuration=_configuration(),
        registrations=e.Registrations(enabled=settings.signup_open, approval_required=False, message=None),
        contact=e.Contact(email=contact_email(settings), account=None), rules=[],
        api_versions=e.ApiVersions(mastodon=2))


@get("/api/v1/instance", opt=access.public(), cache_control=None)
async def instance_v1(db_session: AsyncSession, settings: Settings) -> e.InstanceV1:
    users, posts = await _instance_numbers(db_session)
    base = base_url(settings)
    return e.InstanceV1(
        uri=base.split("://", 1)[-1], title="Rose Ash", short_description=DESCRIPTION, description=DESCRIPTION,
        email=contact_email(settings), version=VERSION, urls=e.UrlsV1(),
        stats=e.Stats(user_count=users, status_count=posts, domain_count=0),
        thumbnail=base + "/static/img/avatar-default.png", languages=["en"], registrations=settings.signup_open,
        approval_required=False, invites_enabled=False, configuration=_configuration(), contact_account=None,
        rules=[])


@post("/api/v1/apps", opt=access.public(), status_code=200, cache_control=PRIVATE)
async def create_app(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> e.App:
    """Register an app (docs.joinmastodon.org/methods/apps/#create): an ordinary confidential
    client of our OAuth provider, which the member later sees (and can revoke) under their
    authorised applications. Form and JSON bodies alike. The administrators' switch for open
    client registration governs these apps too: switched off, no one registers a client here."""
    if not await registration_open(OAuthStore(db_session), settings):
        raise ClientException("This server does not accept new applications.", status_code=403)
    limits = app_limiter(request)
    if not await limits.hit(OAUTH_REGISTRATION, client_address(request)):
        raise ClientException("Too many apps registered from here; try later.", status_code=429,
                              headers={"Retry-After": limits.retry_after(OAUTH_REGISTRATION)})
    params = await body_params(request)
    name = text(params, "client_name").strip()
    if not name or len(name) > 100:
        raise unprocessable("Validation failed: client_name must be 1 to 100 characters")
    raw_uris = params.get("redirect_uris", "")
    uris = [u.strip() for u in (raw_uris if isinstance(raw_uris, list) else str(raw_uris).split())
            if isinstance(u, str) and u.strip()]
    if not uris or len(uris) > 10:
        raise unprocessable("Validation failed: redirect_uris must name 1 to 10 URIs")
    for uri in uris:
        problem = None if uri == OOB else _app_redirect_problem(uri)
        if problem:
            raise unprocessable(f"Validation failed: redirect URI {uri[:200]!r} {problem}")
    raw_scopes = params.get("scopes", "read")
    scopes = list(dict.fromkeys(raw_scopes if isinstance(raw_scopes, list) else str(raw_scopes).split())) or ["read"]
    if unknown := [s for s in scopes if s not in MASTODON_SCOPES]:
        raise unprocessable(f"Validation failed: unknown scopes {' '.join(unknown)[:200]}")
    website = text(params, "website").strip()[:2048] or None
    if website and not website.startswith(("https://", "http://")):
        website = None
    store = OAuthStore(db_session)
    client, secret = await store.create_client(
        name=name, redirect_uris=uris, scope=" ".join(scopes),
        grant_types=["authorization_code", "refresh_token", "client_credentials"], dynamic=True)
    client.token_endpoint_auth_method = "client_secret_post"  # what the apps send
    client.website = website
    client.pkce_optional = True  # PKCE where the app offers it (federation/oauth/server.py)
    await db_session.commit()
    assert secret is not None
    return e.App(id=str(client.id), name=client.name, website=website, redirect_uri="\n".join(uris),
                 redirect_uris=uris, client_id=client.client_id, client_secret=secret, client_secret_expires_at=0,
                 scopes=scopes)


def _app_redirect_problem(uri: str) -> str | None:
    """Our provider's rule (https, loopback http, a private-use scheme), plus the bare
    private-use schemes native Mastodon apps register (``tusky://oauth``); never a scheme a
    browser would run or read files with."""
    problem = redirect_uri_problem(uri)
    if problem is None:
        return None
    # An app's own scheme with an authority (``tusky://oauth``, ``com.example.app://cb``): the
    # ``://`` keeps out the bare OS handler schemes a browser would hand a code to
    # (``search-ms:``, ``ms-msdt:/``), and the browsers' own schemes are refused by name.
    scheme = uri.split(":", 1)[0].lower()
    if re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) and uri[len(scheme):].startswith("://") \
            and scheme not in {"http", "https", "javascript", "data", "file", "vbscript", "blob", "about", "ws", "wss",
                               "ftp", "chrome", "chrome-extension", "view-source", "jar"} \
            and "#" not in uri:
        return None
    return problem


# --- accounts ------------------------------------------------------------------------------------


@get("/api/v1/accounts/verify_credentials", opt=need("read:accounts"))
async def verify_credentials(request: Request[Any, Any, Any], fed: Federation, settings: Settings,
                             db_session: AsyncSession) -> e.CredentialAccount:
    me, render = await me_and_render(request, fed, settings)
    account = await render.account(me)
    member = await AccountService(db_session).get_active(user_of(request).id)
    bio = member.bio if member is not None and member.bio else ""
    pending = len((await db_session.scalars(select(Follow.id).where(
        Follow.followee == me.uri, Follow.state == "pending"))).all())
    fields = {f: getattr(account, f) for f in account.__struct_fields__}
    fields["note"] = sanitize_html(text_to_html(bio)) if bio else account.note
    return e.CredentialAccount(**fields, source=e.Source(privacy="public", sensitive=False, language=None, note=bio,
                                                         fields=[], follow_requests_count=pending))


@get("/api/v1/accounts/lookup", opt=need("read:accounts"))
async def lookup(request: Request[Any, Any, Any], fed: Federation, accounts: Accounts, settings: Settings,
                 acct: str = "") -> e.Account:
    """``user`` (a member here) or ``user@host``; a remote account is resolved through WebFinger
    (:meth:`Accounts.resolve` fetches before it writes)."""
    wanted = acct.strip().removeprefix("@")
    user, _, host = wanted.partition("@")
    if not user:
        raise ClientException("Missing parameter: acct", status_code=400)
    try:
        wanted_at = Lookup(user=user, host=(host or fed.urls.host).lower())
        target, _notice = await accounts.resolve(user_of(request), wanted_at)
    except AccountProblem as problem:
        raise NotFoundException() if problem.status in (404, 422) else \
            ClientException(problem.message, status_code=problem.status) from None
    return await Render(fed.session, base_url(settings), None).account(target)


@get("/api/v1/accounts/relationships", opt=need("read:follows"))
async def relationships(request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                        settings: Settings) -> list[e.Relationship]:
    ids = request.query_params.getall("id[]", []) or request.query_params.getall("id", [])
    me = await fed.local_actor_for_user(user_of(request))
    out = []
    for raw in ids[:80]:
        oid = some_id(raw, "id")
        target = await fed.session.get(Actor, oid) if oid is not None else None
        if target is not None:
            out.append(await _relationship(fed, relations, me, target))
    return out


async def _relationship(fed: Federation, relations: Relations, me: Actor, target: Actor) -> e.Relationship:
    rel = await relations.relation(me, target)
    requested_by = await fed.session.scalar(select(Follow.id).where(
        Follow.follower == target.uri, Follow.followee == me.uri, Follow.state == "pending")) is not None
    return e.Relationship(
        id=str(target.id), following=rel.state == "accepted", showing_reblogs=rel.state == "accepted",
        notifying=False, followed_by=rel.follows_me, blocking=rel.blocked,
        blocked_by=await blocks(fed.session, target.uri, me.uri), muting=rel.muted,
        muting_notifications=rel.muted_notifications,
        requested=rel.state == "pending", requested_by=requested_by, domain_blocking=False, endorsed=False,
        note="")


@get("/api/v1/accounts/{account_id:str}", opt=need("read:accounts"))
async def account(account_id: str, fed: Federation, settings: Settings) -> e.Account:
    target = await actor_by_id(fed.session, account_id)
    return await Render(fed.session, base_url(settings), None).account(target)


@get("/api/v1/accounts/{account_id:str}/statuses", opt=need("read:statuses"))
async def account_statuses(account_id: str, request: Request[Any, Any, Any], fed: Federation, accounts: Accounts,
                           settings: Settings) -> Response[Any]:
    """The account's notes and boosts as its page in the hub shows them (same visibility rules)."""
    target = await actor_by_id(fed.session, account_id)
    page_of = paging(request)
    if page_of.since_id or page_of.min_id:
        return paged([], {})  # newer-than paging of a profile: not offered; an empty page, as at the top
    cursor = await status_cursor(fed.session, page_of.max_id)
    page = await accounts.page(user_of(request), target, cursor)
    views = [entry.note for entry in page.entries if isinstance(entry.note, NoteView)]  # not outbox-only ones
    _me, render = await me_and_render(request, fed, settings)
    statuses = await render.statuses(views)
    more = bool(page.older) or len(statuses) > page_of.limit  # the profile's page is PROFILE_SIZE long
    statuses = statuses[:page_of.limit]
    return paged(statuses, link_header(base_url(settings), request, [s.id for s in statuses], more=more))


async def _follow_target(account_id: str, fed: Federation) -> Actor:
    return await actor_by_id(fed.session, account_id)


@post("/api/v1/accounts/{account_id:str}/follow", opt=need("write:follows"), status_code=200)
async def follow(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                 db_session: AsyncSession) -> e.Relationship:
    target = await _follow_target(account_id, fed)
    try:
        done = await relations.follow(user_of(request), target.uri)
    except (OutboxError, FetchError) as exc:
        raise unprocessable(str(exc)) from None
    result = await _relationship(fed, relations, done.me, done.target or target)
    await db_session.commit()
    return result


@post("/api/v1/accounts/{account_id:str}/unfollow", opt=need("write:follows"), status_code=200)
async def unfollow(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                   db_session: AsyncSession) -> e.Relationship:
    target = await _follow_target(account_id, fed)
    done = await relations.unfollow(user_of(request), target.uri)
    await db_session.flush()
    result = await _relationship(fed, relations, done.me, target)
    await db_session.commit()
    return result


# --- statuses ------------------------------------------------------------------------------------


async def _one_status(render: Render, me: Actor, obj: APObject) -> e.Status:
    await render.session.flush()
    return (await render.statuses(await note_views(render.session, me, [obj]), wrap_boosts=False))[0]


@post("/api/v1/statuses", opt=need("write:statuses"), status_code=200)
async def post_status(request: Request[Any, Any, Any], fed: Federation, timelines: Timelines, settings: Settings,
                      db_session: AsyncSession) -> e.Status:
    """Post through the hub's compose (the same checks, mentions and delivery). A replayed
    ``Idempotency-Key`` answers the status it made the first time."""
    user = user_of(request)
    key = request.headers.get("idempotency-key", "").strip()[:200]
    store = request.app.stores.get("mastodon_idempotency")
    store_key = f"{user.id}:{key}"
    if key and (seen := await store.get(store_key)) is not None:
        me, render = await me_and_render(request, fed, settings)
        obj = await timelines.visible(me, UUID(seen.decode()))
        return await _one_status(render, me, obj)
    params = await body_params(request)
    content = text(params, "status")
    uploads = await claim(db_session, user.id, params.get("media_ids"))  # 422 unless the member's own, unused
    visibility = text(params, "visibility", "public") or "public"
    if visibility not in VISIBILITY_IN:
        raise unprocessable(f"Validation failed: visibility {visibility[:40]!r} is not one of "
                            f"{', '.join(VISIBILITY_IN)}")
    if len(content.strip()) > MAX_NOTE:
        raise unprocessable(f"Validation failed: text is too long (at most {MAX_NOTE} characters)")
    me, render = await me_and_render(request, fed, settings)
    in_reply_to = ""
    if (parent_id := some_id(text(params, "in_reply_to_id") or None, "in_reply_to_id")) is not None:
        in_reply_to = (await timelines.visible(me, parent_id)).ap_id  # 404 for a note the member may not see
    form = ComposeForm(content=content, visibility=VISIBILITY_IN[visibility],
                       summary=text(params, "spoiler_text"), in_reply_to=in_reply_to)
    try:
        obj = await timelines.compose(user, form, attachment=[document(r, base_url(settings)) for r in uploads])
        for upload in uploads:
            upload.object_id = obj.id
    except (OutboxError, FetchError) as exc:
        status = getattr(exc, "status", 422)
        raise (NotFoundException() if status == 404 else unprocessable(f"Validation failed: {exc}")) from None
    status_entity = await _one_status(render, me, obj)
    await db_session.commit()
    if key:
        await store.set(store_key, str(obj.id).encode(), expires_in=IDEMPOTENCY_TTL)
    return status_entity


@get("/api/v1/statuses/{status_id:str}", opt=need("read:statuses"))
async def get_status(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
                     settings: Settings) -> e.Status:
    me, render = await me_and_render(request, fed, settings)
    oid = some_id(status_id, "id")
    assert oid is not None
    return await _one_status(render, me, await timelines.visible(me, oid))


@delete("/api/v1/statuses/{status_id:str}", opt=need("write:statuses"), status_code=200)
async def delete_status(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
                        settings: Settings, db_session: AsyncSession) -> e.Status:
    """Delete the member's own note; the answer carries its ``text`` for delete-and-redraft.
    Another's note is 404, as one the member cannot see (Mastodon does the same)."""
    me, render = await me_and_render(request, fed, settings)
    oid = some_id(status_id, "id")
    assert oid is not None
    obj = await timelines.visible(me, oid)
    if obj.attributed_to != me.uri:
        raise NotFoundException()
    before = await _one_status(render, me, obj)
    source = obj.content  # the outbox empties a deleted note's content (a Tombstone keeps none)
    try:
        await timelines.act(user_of(request), oid, "delete_note")
    except (OutboxError, FetchError) as exc:
        raise unprocessable(str(exc)) from None
    await db_session.commit()
    before.text = source_text(source)
    return before


async def _act(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
               settings: Settings, db_session: AsyncSession, action: Any) -> tuple[Actor, Render, APObject, e.Status]:
    oid = some_id(status_id, "id")
    assert oid is not None
    try:
        me, obj = await timelines.act(user_of(request), oid, action)
    except (OutboxError, FetchError) as exc:
        status = getattr(exc, "status", 422)
        raise (NotFoundException() if status == 404 else
               ClientException(str(exc), status_code=status if status in (403, 422) else 422)) from None
    render = Render(fed.session, base_url(settings), me)
    entity = await _one_status(render, me, obj)
    await db_session.commit()
    return me, render, obj, entity


@post("/api/v1/statuses/{status_id:str}/favourite", opt=need("write:favourites"), status_code=200)
async def favourite(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
                    settings: Settings, db_session: AsyncSession) -> e.Status:
    return (await _act(status_id, request, fed, timelines, settings, db_session, "like"))[3]


@post("/api/v1/statuses/{status_id:str}/unfavourite", opt=need("write:favourites"), status_code=200)
async def unfavourite(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
                      settings: Settings, db_session: AsyncSession) -> e.Status:
    return (await _act(status_id, request, fed, timelines, settings, db_session, "unlike"))[3]


@post("/api/v1/statuses/{status_id:str}/reblog", opt=need("write:statuses"), status_code=200)
async def reblog(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
                 settings: Settings, db_session: AsyncSession) -> e.Status:
    """Boost; the answer is the boost's wrapper status, the note in its ``reblog``."""
    me, render, obj, inner = await _act(status_id, request, fed, timelines, settings, db_session, "boost")
    ann = await db_session.scalar(select(Announce).where(Announce.actor == me.uri, Announce.object_id == obj.ap_id))
    return await render.boost_wrapper(ann, inner) if ann is not None else inner


@post("/api/v1/statuses/{status_id:str}/unreblog", opt=need("write:statuses"), status_code=200)
async def unreblog(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
                   settings: Settings, db_session: AsyncSession) -> e.Status:
    return (await _act(status_id, request, fed, timelines, settings, db_session, "unboost"))[3]


@get("/api/v1/statuses/{status_id:str}/context", opt=need("read:statuses"))
async def context(status_id: str, request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
                  settings: Settings) -> e.Context:
    """Ancestors (the reply chain up, as far as the member may see) and the visible replies."""
    me, render = await me_and_render(request, fed, settings)
    oid = some_id(status_id, "id")
    assert oid is not None
    page = await timelines.note(user_of(request), oid)
    ancestors: list[APObject] = []
    parent_uri = page.note.obj.in_reply_to
    while parent_uri and len(ancestors) < 40:
        parent = await fed.session.scalar(select(APObject).where(APObject.ap_id == parent_uri))
        if parent is None:
            break
        try:
            parent = await timelines.visible(me, parent.id)
        except NotFoundException:
            break
        ancestors.insert(0, parent)
        parent_uri = parent.in_reply_to
    return e.Context(ancestors=await render.statuses(await note_views(fed.session, me, ancestors)),
                     descendants=await render.statuses(page.replies))


# --- timelines and notifications ---------------------------------------------------------------

_PAGE_ENCODER = msgspec.json.Encoder()


async def _timeline(request: Request[Any, Any, Any], fed: Federation, timelines: Timelines, settings: Settings,
                    tab: Any) -> Response[Any]:
    page_of: Paging = paging(request)
    session = fed.session
    newer = await status_cursor(session, page_of.min_id or page_of.since_id)
    page = await timelines.page(user_of(request), tab, await status_cursor(session, page_of.max_id),
                                size=page_of.limit, newer=newer, oldest_first=page_of.min_id is not None,
                                count_unread=False)
    render = Render(session, base_url(settings), page.me)
    statuses = await render.statuses(page.notes)
    # The service read one note past the page (``older`` is its cursor): a next link only then.
    # Bounded below (since_id, min_id), older notes exist whenever the page has any.
    more = bool(page.older) or (newer is not None and bool(statuses))
    # Encoded here, by one reused encoder, into the bytes Litestar would send: the Response then
    # passes them through rather than walking the page again.
    return Response(_PAGE_ENCODER.encode(statuses), media_type=MediaType.JSON,
                    headers=link_header(base_url(settings), request, [s.id for s in statuses], more=more))


@get("/api/v1/timelines/home", opt=need("read:statuses"))
async def home(request: Request[Any, Any, Any], fed: Federation, timelines: Timelines,
               settings: Settings) -> Response[Any]:
    return await _timeline(request, fed, timelines, settings, "home")


@get("/api/v1/timelines/public", opt=need("read:statuses"))
async def public(request: Request[Any, Any, Any], fed: Federation, timelines: Timelines, settings: Settings,
                 local: str = "") -> Response[Any]:
    return await _timeline(request, fed, timelines, settings,
                           "local" if local.lower() in ("1", "true") else "federated")


def _kinds(request: Request[Any, Any, Any]) -> frozenset[str] | None:
    wanted = request.query_params.getall("types[]", []) or request.query_params.getall("types", [])
    excluded = set(request.query_params.getall("exclude_types[]", []) or
                   request.query_params.getall("exclude_types", []))
    types = [t for t in (wanted or list(TYPE_KINDS)) if t in TYPE_KINDS and t not in excluded]
    if not wanted and not excluded:
        return None
    return frozenset(k for t in types for k in TYPE_KINDS[t])


async def _notification_cursor(session: AsyncSession, user: User, nid: UUID | None) -> Cursor | None:
    if nid is None:
        return None
    row = await session.get(NotificationRow, nid)
    if row is None or row.user_id != user.id:
        return Cursor(EPOCH, UUID(int=0))
    return Cursor(row.created_at, row.id)


@get("/api/v1/notifications", opt=need("read:notifications"))
async def notifications(request: Request[Any, Any, Any], fed: Federation, notifications: Notifications,
                        settings: Settings, db_session: AsyncSession) -> Response[Any]:
    """The hub's notifications (marked read there too) as Mastodon's: like is ``favourite``,
    boost ``reblog``, a reply a ``mention``."""
    user = user_of(request)
    page_of = paging(request, cap=80)
    newer = await _notification_cursor(db_session, user, page_of.min_id or page_of.since_id)
    page = await notifications.page(user, await _notification_cursor(db_session, user, page_of.max_id),
                                    size=page_of.limit, newer=newer, oldest_first=page_of.min_id is not None,
                                    kinds=_kinds(request))
    me, render = await me_and_render(request, fed, settings)
    actors = [n.actor for n in page.entries if n.actor is not None]
    accounts = await render.accounts(actors)
    objs = [n.object for n in page.entries if n.object is not None]
    statuses = {s.uri: s for s in await render.statuses(await note_views(db_session, me, objs), wrap_boosts=False)}
    out = []
    for entry in page.entries:
        row = entry.notification
        kind = KIND_TYPE.get(row.kind)
        if kind is None or entry.actor is None:
            continue
        status = statuses.get(row.object_id) if row.object_id else None
        if kind in ("mention", "favourite", "reblog") and status is None:
            continue  # the note is gone or hidden: Mastodon drops such notifications too
        out.append(e.Notification(id=str(row.id), type=kind, created_at=iso(row.created_at),
                                  account=accounts[entry.actor.uri], status=status,
                                  group_key=f"ungrouped-{row.id}"))
    await db_session.commit()  # marked read, as the hub's page does
    # The cursors are the page's rows, shown or not (one dropped above still bounds the page).
    rows = [str(entry.notification.id) for entry in page.entries]
    more = bool(page.older) or (newer is not None and bool(rows))
    return paged(out, link_header(base_url(settings), request, rows, more=more))


@post("/api/v1/notifications/clear", opt=need("write:notifications"), status_code=200)
async def clear_notifications(request: Request[Any, Any, Any], db_session: AsyncSession) -> dict[str, Any]:
    await db_session.execute(sql_delete(NotificationRow).where(NotificationRow.user_id == user_of(request).id))
    await db_session.commit()
    return {}


@post("/api/v1/notifications/{notification_id:str}/dismiss", opt=need("write:notifications"), status_code=200)
async def dismiss_notification(notification_id: str, request: Request[Any, Any, Any],
                               db_session: AsyncSession) -> dict[str, Any]:
    nid = some_id(notification_id, "id")
    row = await db_session.get(NotificationRow, nid) if nid is not None else None
    if row is None or row.user_id != user_of(request).id:
        raise NotFoundException()
    await db_session.delete(row)
    await db_session.commit()
    return {}


# --- what the apps expect to exist -------------------------------------------------------------


@get("/api/v1/preferences", opt=need("read:accounts"))
async def preferences() -> dict[str, Any]:
    return {"posting:default:visibility": "public", "posting:default:sensitive": False,
            "posting:default:language": None, "reading:expand:media": "default", "reading:expand:spoilers": False}


@get("/api/v1/markers", opt=need("read:statuses"))
async def markers() -> dict[str, Any]:
    return {}  # no read markers are kept yet


@post("/api/v1/markers", opt=need("write:statuses"), status_code=200)
async def save_markers() -> dict[str, Any]:
    return {}


def _empty_list(path: str, scope: str | None) -> Any:
    opt = need(scope) if scope else access.public()

    @get(path, opt=opt, name=f"mastodon:{path}", sync_to_thread=False)
    def empty() -> list[Any]:
        return []

    return empty


EMPTY_LISTS = [
    _empty_list("/api/v1/custom_emojis", None),
    _empty_list("/api/v1/lists", "read:lists"),
    _empty_list("/api/v1/filters", "read:filters"),
    _empty_list("/api/v2/filters", "read:filters"),
    _empty_list("/api/v1/followed_tags", "read:follows"),
    _empty_list("/api/v1/announcements", None),
    _empty_list("/api/v1/bookmarks", "read:bookmarks"),  # no bookmarks are kept: never a page, never a Link
    _empty_list("/api/v1/trends", None),
    _empty_list("/api/v1/trends/tags", None),
    _empty_list("/api/v1/trends/statuses", None),
    _empty_list("/api/v1/trends/links", None),
    _empty_list("/api/v1/follow_requests", "read:follows"),
    _empty_list("/api/v1/conversations", "read:statuses"),
    _empty_list("/api/v2/suggestions", "read:accounts"),
]


HANDLERS = [
    instance_v1, instance_v2, create_app, verify_credentials, lookup, relationships, account, account_statuses,
    follow, unfollow, post_status, get_status, delete_status, favourite, unfavourite, reblog, unreblog, context,
    home, public, notifications, clear_notifications, dismiss_notification, preferences, markers, save_markers,
    *EMPTY_LISTS,
]

router = Router(path="/", route_handlers=HANDLERS, dependencies=HUB, middleware=[CORSMiddleware()],
                exception_handlers={HTTPException: mastodon_error}, cache_control=PRIVATE)
