"""The Mastodon client API's account side beyond reading one account: profile edits
(``update_credentials``), followers and following lists, blocks and mutes
(docs.joinmastodon.org/methods/accounts/, /methods/blocks/, /methods/mutes/).

Local and remote accounts alike, through the social hub's services: blocks are the hub's member
blocks (:class:`MemberModeration`: follows end both ways, a Block goes to a remote server, their
notes and notifications leave the member's views), mutes the hub's mutes (private, nothing is
sent), profile edits the account domain's own rules (:class:`Profiles`). Accounts are named by
their actor row id; an id we hold no actor for is 404, and nothing here fetches a remote account
inside a write (the hub's services settle fetches first).

Scopes are Mastodon's: ``read:accounts`` for the lists of follows (as Mastodon), ``read:blocks``,
``read:mutes``, ``write:accounts``, ``write:blocks``, ``write:mutes``; the broad ``read``,
``write`` and legacy ``follow`` imply them (federation.oauth.scopes).
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, Response, Router, get, patch, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.types import ControllerRouterHandler
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.caching import CachePolicy, conditional_response
from app.forms import InputProblems
from app.responses import PRIVATE
from app.safe_http import FetchError
from app.settings import Settings
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, Follow
from federation.activitypub.moderation import ModerationError, hidden_from
from federation.activitypub.moderation import blocks as blocks_actor
from federation.activitypub.outbox import OutboxError
from federation.activitypub.sanitize import sanitize_html, text_to_html
from federation.mastodon import entities as e
from federation.mastodon.api import (
    _relationship,
    actor_by_id,
    base_url,
    mastodon_error,
    need,
    unprocessable,
    user_of,
)
from federation.mastodon.params import MAX_PARAMS, Paging, bad_request, link_header, one_more, paging, trim
from federation.mastodon.render import Render
from federation.oauth.cors import CORSMiddleware
from federation.social.deps import HUB, provide_member_moderation
from federation.social.services import MemberModeration, Relations
from federation.social.services.lists import KeysetPage
from federation.social.services.profile import AVATAR_NAME, Avatar, Profiles, avatar_dir
from fragments.pages import public_get

__all__ = ["routers"]

ACCOUNTS_DEFAULT, ACCOUNTS_CAP = 40, 80  # Mastodon's limits for lists of accounts
# A name is its content's digest, but which name a member's avatar has changes: an hour, not a
# year, so a replaced (or removed) avatar leaves browsers and the edge soon after the actor moves on.
AVATAR_CACHE = "public, max-age=3600"
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
TRUE = ("1", "true", "on")
FALSE = ("0", "false", "off", "")


def provide_profiles(fed: Federation) -> Profiles:
    return Profiles(fed)


def _flag(value: Any, name: str) -> bool:
    """A Mastodon boolean parameter: ``true``/``false`` (forms), or a JSON boolean; else 422."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*TRUE, *FALSE):
        return value.strip().lower() in TRUE
    raise unprocessable(f"Validation failed: {name} must be true or false")


async def _params(request: Request[Any, Any, Any]) -> tuple[dict[str, Any], dict[str, UploadFile]]:
    """The body's fields and files (multipart, form or JSON); ``source[privacy]``-style names kept."""
    media = request.content_type[0]
    if media == "application/json":
        body = await request.json()
        if body is not None and not isinstance(body, dict):
            raise bad_request("The JSON body must be an object.")
        return dict(body or {}), {}
    if media not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {}, {}
    form = await request.form()
    fields: dict[str, Any] = {}
    files: dict[str, UploadFile] = {}
    for key in list(dict.fromkeys(form.keys()))[:MAX_PARAMS]:
        for value in form.getall(key):
            if isinstance(value, UploadFile):
                files[key] = value
            elif isinstance(value, str):
                fields[key] = value
    return fields, files


# --- the member's own profile ------------------------------------------------------------------


async def credential_account(render: Render, me: Actor, bio: str, pending: int) -> e.CredentialAccount:
    account = await render.account(me)
    fields = {f: getattr(account, f) for f in account.__struct_fields__}
    fields["note"] = sanitize_html(text_to_html(bio)) if bio else ""
    return e.CredentialAccount(**fields, source=e.Source(privacy="public", sensitive=False, language=None, note=bio,
                                                         fields=[], follow_requests_count=pending))


@patch("/api/v1/accounts/update_credentials", opt=need("write:accounts"), status_code=200)
async def update_credentials(request: Request[Any, Any, Any], fed: Federation, profiles: Profiles,
                             settings: Settings, db_session: AsyncSession) -> e.CredentialAccount:
    """``display_name``, ``note`` (the bio, plain text), ``avatar`` (a multipart image) and
    ``locked`` (docs.joinmastodon.org/methods/accounts/#update_credentials). What is absent stays
    as it is; the other fields Mastodon knows are accepted and left alone, but a ``header`` image
    is refused (we keep none, and saying so beats dropping it quietly)."""
    fields, files = await _params(request)
    if "header" in files or fields.get("header"):
        raise unprocessable("Validation failed: header images are not supported here")
    text_of: dict[str, str | None] = {}
    for name in ("display_name", "note"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise unprocessable(f"Validation failed: {name} must be text")
        text_of[name] = value
    locked = _flag(fields["locked"], "locked") if "locked" in fields else None
    avatar: Avatar | None = None
    if (upload := files.get("avatar")) is not None:
        avatar = Avatar(data=await upload.read(), filename=upload.filename or "", content_type=upload.content_type)
    elif isinstance(fields.get("avatar"), str) and fields["avatar"]:
        raise unprocessable("Validation failed: avatar must be an uploaded image file (multipart/form-data)")
    user = user_of(request)
    try:
        me = await profiles.update(user, display_name=text_of["display_name"], bio=text_of["note"], avatar=avatar,
                                   locked=locked)
    except InputProblems as problems:
        raise unprocessable("Validation failed: " + "; ".join(
            f"{'note' if k == 'bio' else 'avatar' if k == 'image' else k} {v}" for k, v in problems.errors.items())) \
            from None
    pending = len((await db_session.scalars(select(Follow.id).where(
        Follow.followee == me.uri, Follow.state == "pending"))).all())
    entity = await credential_account(Render(db_session, base_url(settings), me), me, user.bio, pending)
    await db_session.commit()
    return entity


@public_get("/social/avatars/{name:str}", name="social:avatar")
async def avatar_file(request: Request[Any, Any, Any], settings: Settings, db_session: AsyncSession,
                      name: str) -> Response[bytes]:
    """A member's avatar, while a member's actor shows it; any other name is the same 404."""
    match = AVATAR_NAME.match(name)
    if match is None:
        raise NotFoundException("No such image.")
    url = f"{settings.base_url.rstrip('/')}/social/avatars/{name}"
    if await db_session.scalar(select(Actor.id).where(Actor.local, Actor.icon_url == url).limit(1)) is None:
        raise NotFoundException("No such image.")
    try:
        body = await anyio.Path(avatar_dir(settings.data_dir) / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise NotFoundException("No such image.") from None
    return conditional_response(request, body, CachePolicy.PUBLIC, etag=f'"{name}"', cache_control=AVATAR_CACHE,
                                media_type=CONTENT_TYPES[match.group("ext")],
                                headers={"X-Content-Type-Options": "nosniff"})


# --- lists of accounts -------------------------------------------------------------------------


def _list_paging(request: Request[Any, Any, Any]) -> Paging:
    return paging(request, default=ACCOUNTS_DEFAULT, cap=ACCOUNTS_CAP)


async def _accounts_page(request: Request[Any, Any, Any], settings: Settings, session: AsyncSession,
                         page: KeysetPage[Any], p: Paging) -> Response[Any]:
    """The page's accounts in row order; the Link header carries the rows' ids (the cursor is
    the follow, block or mute, not the account: design note §5). ``page`` holds one row past
    the page when older rows exist (asked for with :func:`one_more`)."""
    rows, more = trim(page.rows, p)
    accounts = await Render(session, base_url(settings), None).accounts(
        [a for row in rows if (a := page.actors.get(page.actor_of[row.id])) is not None])
    out = [accounts[uri] for row in rows if (uri := page.actor_of[row.id]) in accounts]
    return Response(out, headers=link_header(base_url(settings), request, [str(row.id) for row in rows], more=more))


async def _follows(which: Any, account_id: str, request: Request[Any, Any, Any], fed: Federation,
                   relations: Relations, settings: Settings) -> Response[Any]:
    target = await actor_by_id(fed.session, account_id)
    me = await fed.local_actor_for_user(user_of(request))
    if target.uri != me.uri and await blocks_actor(fed.session, target.uri, me.uri):
        # As the ActivityPub collections answer a blocked signer (federation/activitypub/routes.py,
        # _require_signed_get): blocked looks exactly like absent.
        raise NotFoundException()
    p = _list_paging(request)
    page = await relations.accounts_of(target, which, before=p.max_id, after=p.min_id or p.since_id,
                                       oldest_first=p.min_id is not None, size=one_more(p))
    hidden = set((await fed.session.scalars(hidden_from(me.uri))).all())
    if hidden:  # accounts that block the member, or the member blocks, are left off the page
        page.actors = {uri: actor for uri, actor in page.actors.items() if uri not in hidden}
    return await _accounts_page(request, settings, fed.session, page, p)


@get("/api/v1/accounts/{account_id:str}/followers", opt=need("read:accounts"))
async def followers(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                    settings: Settings) -> Response[Any]:
    """Who follows the account, as far as this server knows (for a remote account: its
    followers here), newest follow first, Link-paged."""
    return await _follows("followers", account_id, request, fed, relations, settings)


@get("/api/v1/accounts/{account_id:str}/following", opt=need("read:accounts"))
async def following(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                    settings: Settings) -> Response[Any]:
    return await _follows("following", account_id, request, fed, relations, settings)


@get("/api/v1/blocks", opt=need("read:blocks"))
async def blocks(request: Request[Any, Any, Any], moderation: MemberModeration, settings: Settings,
                 db_session: AsyncSession) -> Response[Any]:
    p = _list_paging(request)
    page = await moderation.blocks_page(user_of(request), before=p.max_id, after=p.min_id or p.since_id,
                                        oldest_first=p.min_id is not None, size=one_more(p))
    return await _accounts_page(request, settings, db_session, page, p)


@get("/api/v1/mutes", opt=need("read:mutes"))
async def mutes(request: Request[Any, Any, Any], moderation: MemberModeration, settings: Settings,
                db_session: AsyncSession) -> Response[Any]:
    p = _list_paging(request)
    page = await moderation.mutes_page(user_of(request), before=p.max_id, after=p.min_id or p.since_id,
                                       oldest_first=p.min_id is not None, size=one_more(p))
    return await _accounts_page(request, settings, db_session, page, p)


# --- block, unblock, mute, unmute --------------------------------------------------------------


def _refused(exc: ModerationError | OutboxError | FetchError) -> HTTPException:
    status = getattr(exc, "status", 422) or 422
    if status == 404:
        return NotFoundException()
    return ClientException(f"Validation failed: {exc}" if status == 422 else str(exc),
                           status_code=status if status in (403, 422) else 422)


async def _answer(fed: Federation, relations: Relations, request: Request[Any, Any, Any], target: Actor,
                  db_session: AsyncSession) -> e.Relationship:
    await db_session.flush()
    me = await fed.local_actor_for_user(user_of(request))
    result = await _relationship(fed, relations, me, target)
    await db_session.commit()
    return result


@post("/api/v1/accounts/{account_id:str}/block", opt=need("write:blocks"), status_code=200)
async def block(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                moderation: MemberModeration, db_session: AsyncSession) -> e.Relationship:
    """Block: follows end both ways, a remote server is sent a Block, and the account's notes and
    notifications leave the member's views (the hub's block; Mastodon's BlockService does the same)."""
    target = await actor_by_id(fed.session, account_id)
    try:
        target = await moderation.block(user_of(request), target.uri, "")
    except (ModerationError, OutboxError, FetchError) as exc:
        raise _refused(exc) from None
    return await _answer(fed, relations, request, target, db_session)


@post("/api/v1/accounts/{account_id:str}/unblock", opt=need("write:blocks"), status_code=200)
async def unblock(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                  moderation: MemberModeration, db_session: AsyncSession) -> e.Relationship:
    target = await actor_by_id(fed.session, account_id)
    await moderation.unblock(user_of(request), target.uri)
    return await _answer(fed, relations, request, target, db_session)


@post("/api/v1/accounts/{account_id:str}/mute", opt=need("write:mutes"), status_code=200)
async def mute(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
               moderation: MemberModeration, db_session: AsyncSession) -> e.Relationship:
    """Mute: the account's notes and boosts leave the home timeline and (``notifications``,
    true by default) its notifications too, for good or for ``duration`` seconds; nothing is sent."""
    target = await actor_by_id(fed.session, account_id)
    fields, _files = await _params(request)
    notifications = _flag(fields["notifications"], "notifications") if "notifications" in fields else True
    raw = fields.get("duration", 0)
    try:
        seconds = int(raw) if not isinstance(raw, bool) and isinstance(raw, int | str) and str(raw).strip() else 0
    except ValueError:
        raise unprocessable("Validation failed: duration must be a number of seconds") from None
    try:
        await moderation.mute(user_of(request), target, notifications=notifications, seconds=seconds)
    except ModerationError as exc:
        raise _refused(exc) from None
    return await _answer(fed, relations, request, target, db_session)


@post("/api/v1/accounts/{account_id:str}/unmute", opt=need("write:mutes"), status_code=200)
async def unmute(account_id: str, request: Request[Any, Any, Any], fed: Federation, relations: Relations,
                 moderation: MemberModeration, db_session: AsyncSession) -> e.Relationship:
    target = await actor_by_id(fed.session, account_id)
    await moderation.unmute(user_of(request), target)
    return await _answer(fed, relations, request, target, db_session)


HANDLERS = [update_credentials, followers, following, blocks, mutes, block, unblock, mute, unmute]

router = Router(path="/", route_handlers=HANDLERS, middleware=[CORSMiddleware()],
                dependencies={**HUB, "moderation": Provide(provide_member_moderation, sync_to_thread=False),
                              "profiles": Provide(provide_profiles, sync_to_thread=False)},
                exception_handlers={HTTPException: mastodon_error}, cache_control=PRIVATE)

routers: list[ControllerRouterHandler] = [router, avatar_file]
