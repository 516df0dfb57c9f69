"""Ghost webhooks: post/page published, edited, unpublished and deleted → our copy, idempotently.

``POST /hooks/blog/ghost`` takes any of Ghost's ``post.*``/``page.*`` webhooks (point each event
you want at this one URL). The body is ``{"post": {"current": {…}, "previous": {…}}}``
(``page`` for pages); an empty ``current`` means the post was deleted.

With ``ROSE_ASH_GHOST_ADMIN_API_KEY`` (and ``ROSE_ASH_GHOST_URL``) set, the body is only a trigger,
as Ghost's sync recipe says: the endpoint answers at once and a durable ``blog.ghost-sync`` job
re-fetches the post by id through the Admin API (``?formats=html``, a 5-minute HS256 JWT signed
with the key's hex secret, ``kid`` = key id, ``aud`` = ``/admin/``), then applies it the same way
(a 404 there means deleted). Without a key the signed body itself is applied.

Signature (Ghost ``webhook-trigger.js``): ``X-Ghost-Signature: sha256=<hex>, t=<ms>`` where the
hex is HMAC-SHA256(secret, raw body + t). Older Ghost versions sign the body alone; both are
accepted. Unsigned, wrongly signed or (for the timestamped form) stale requests get 401 and
change nothing. Applying is idempotent: a delivery whose ``updated_at`` is not newer than what
we hold is a no-op, so Ghost's retries are harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import httpx
import msgspec
from joserfc import jwt
from joserfc.jwk import OctKey
from litestar import Request, Response, post
from litestar.exceptions import NotAuthorizedException, NotFoundException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext, enqueue, job_handler
from app.settings import Settings
from domains.blog.importer import (
    GhostImportError,
    _import_authors,
    _import_post,
    _import_tags,
    _post_values,
    _PostPlan,
    parse_ghost_date,
)
from domains.blog.models import PUBLISHED, Post
from domains.blog.schemas import (
    GhostPost,
    GhostTag,
    GhostUser,
    GhostWebhookBody,
    GhostWebhookChange,
    ImportReport,
)
from domains.blog.services import BlogService, post_keys, with_relations
from fragments.purge import SurrogateKey

log = logging.getLogger("rose_ash.blog.webhooks")

SIGNATURE_HEADER = "x-ghost-signature"
# Ghost retries for a few seconds; a timestamped signature older than this is refused.
MAX_SIGNATURE_AGE_MS = 10 * 60 * 1000
MAX_WEBHOOK_BYTES = 5 * 1024 * 1024
GHOST_SYNC = "blog.ghost-sync"
ADMIN_TIMEOUT = 20.0


class GhostSync(msgspec.Struct, frozen=True, kw_only=True):
    ghost_id: str
    kind: str  # "post" or "page"


def admin_token(api_key: str, now: int | None = None) -> str:
    """Ghost Admin API JWT: HS256, ``kid`` = key id, hex-decoded secret, ``aud`` /admin/, 5 minutes."""
    key_id, _, secret = api_key.partition(":")
    if not key_id or not secret:
        raise ValueError("a Ghost Admin API key looks like '<id>:<hex secret>'")
    issued = int(time.time()) if now is None else now
    return jwt.encode({"alg": "HS256", "typ": "JWT", "kid": key_id},
                      {"iat": issued, "exp": issued + 300, "aud": "/admin/"}, OctKey.import_key(bytes.fromhex(secret)))


async def fetch_ghost_post(client: httpx.AsyncClient, ghost_url: str, api_key: str, kind: str,
                           ghost_id: str) -> dict[str, Any] | None:
    """The post (or page) as Ghost's Admin API has it now; None if Ghost says it is gone (404)."""
    url = f"{ghost_url.rstrip('/')}/ghost/api/admin/{kind}s/{ghost_id}/"
    response = await client.get(url, params={"formats": "html", "include": "tags,authors"}, headers={
        "Authorization": f"Ghost {admin_token(api_key)}", "Accept-Version": "v5.0"}, timeout=ADMIN_TIMEOUT)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    items = response.json().get(f"{kind}s") or []
    if not items or not isinstance(items[0], dict):
        raise ValueError(f"Ghost answered without a {kind}")
    found: dict[str, Any] = items[0]
    return found


@job_handler(GHOST_SYNC, backoff_base=2.0, backoff_cap=600.0)
async def ghost_sync(ctx: JobContext, payload: GhostSync) -> None:
    """Re-fetch one post from Ghost and apply it (idempotent; retried with backoff)."""
    settings = ctx.settings
    shared = ctx.services.get("http") if ctx.services else None
    client = shared if isinstance(shared, httpx.AsyncClient) else httpx.AsyncClient(timeout=ADMIN_TIMEOUT)
    try:
        current = await fetch_ghost_post(client, settings.ghost_url, settings.ghost_admin_api_key, payload.kind,
                                         payload.ghost_id)
    finally:
        if client is not shared:
            await client.aclose()
    change = GhostWebhookChange(current=current or {}, previous={"id": payload.ghost_id})
    body = GhostWebhookBody(post=change) if payload.kind == "post" else GhostWebhookBody(page=change)
    async with ctx.sessionmaker() as session, session.begin():
        result = await apply_webhook(session, body, ghost_url=settings.ghost_url, base_url=settings.base_url)
    log.info("ghost sync of %s %s: %s", payload.kind, payload.ghost_id, result)


def sign(secret: str, body: bytes, timestamp_ms: int | None = None) -> str:
    """The header value Ghost would send (current form with ``timestamp_ms``, older form without)."""
    if timestamp_ms is None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return f"sha256={digest}, t={int(time.time() * 1000)}"
    digest = hmac.new(secret.encode(), body + str(timestamp_ms).encode(), hashlib.sha256).hexdigest()
    return f"sha256={digest}, t={timestamp_ms}"


def verify_signature(secret: str, body: bytes, header: str | None, *, now_ms: int | None = None) -> bool:
    if not secret or not header:
        return False
    parts: dict[str, str] = {}
    for piece in header.split(","):
        key, sep, value = piece.strip().partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    given = parts.get("sha256", "").lower()
    if len(given) != 64:
        return False
    stamp = parts.get("t", "")
    secret_key = secret.encode()
    if stamp.isdigit():
        expected = hmac.new(secret_key, body + stamp.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given):
            now = int(time.time() * 1000) if now_ms is None else now_ms
            return abs(now - int(stamp)) <= MAX_SIGNATURE_AGE_MS
    legacy = hmac.new(secret_key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(legacy, given)


def _ghost_post(data: dict[str, Any], kind: str) -> GhostPost:
    converted = msgspec.convert({**data, "type": data.get("type") or kind}, GhostPost, strict=False)
    return converted


async def apply_webhook(db: AsyncSession, body: GhostWebhookBody, *, ghost_url: str = "",
                        base_url: str = "") -> str:
    """Apply one webhook delivery; returns what happened (``created``/``updated``/``unchanged``/``deleted``...)."""
    change, kind = (body.post, "post") if body.post is not None else (body.page, "page")
    if change is None:
        return "ignored"
    service = BlogService(db, base_url=base_url)
    if not change.current:
        ghost_id = str(change.previous.get("id") or "")
        existing = await _by_ghost_id(db, ghost_id) if ghost_id else None
        if existing is None:
            return "unchanged"
        await service.delete(existing)
        return "deleted"
    src = _ghost_post(change.current, kind)
    existing = await _by_ghost_id(db, str(src.id))
    incoming = parse_ghost_date(src.updated_at, "updated_at")
    if existing is not None and existing.ghost_updated_at is not None and incoming is not None \
            and incoming <= existing.ghost_updated_at:
        return "unchanged"  # a retry, or an older delivery arriving late
    report = ImportReport(dry_run=False)
    values = _post_values(src, {}, ghost_url, report)
    if values is None:
        return "ignored: " + "; ".join(report.skipped)
    tags_raw = [msgspec.convert(t, GhostTag, strict=False) for t in change.current.get("tags") or []
                if isinstance(t, dict) and t.get("id") and t.get("name")]
    users_raw = [msgspec.convert(u, GhostUser, strict=False) for u in change.current.get("authors") or []
                 if isinstance(u, dict) and u.get("id")]
    authors = await _import_authors(db, users_raw, report, False)
    tags = await _import_tags(db, tags_raw, report, False)
    plan = _PostPlan(src=src, ghost_id=str(src.id), values=values,
                     tag_ids=[str(t.id) for t in tags_raw], author_ids=[str(u.id) for u in users_raw])
    was_public = existing is not None and existing.status == PUBLISHED
    before = post_keys(existing) if existing is not None and was_public else set()
    purge: set[SurrogateKey] = set()
    await _import_post(db, service, plan, tags, authors, report, False, purge)
    post = await _by_ghost_id(db, str(src.id))
    if post is None:
        return "ignored"
    await db.flush()
    if was_public or post.status == PUBLISHED:  # purges what showed it and tells subscribers
        await service.changed(post, was_public=was_public, before_keys=before)
    return "created" if existing is None else "updated"


async def _by_ghost_id(db: AsyncSession, ghost_id: str) -> Post | None:
    result = await db.execute(with_relations(select(Post).where(Post.ghost_id == ghost_id)))
    return result.scalar_one_or_none()


@post("/hooks/blog/ghost", name="blog:ghost-webhook", status_code=200, request_max_body_size=MAX_WEBHOOK_BYTES,
      opt={"exclude_from_auth": True, "skip_session": True, "exclude_from_csrf": True}, include_in_schema=False)
async def ghost_webhook(request: Request[Any, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Response[dict[str, str]]:
    if not settings.ghost_webhook_secret:
        raise NotFoundException("Ghost webhooks are not enabled (set ROSE_ASH_GHOST_WEBHOOK_SECRET).")
    raw = await request.body()
    if not verify_signature(settings.ghost_webhook_secret, raw, request.headers.get(SIGNATURE_HEADER)):
        log.warning("refused a Ghost webhook with a missing or wrong signature")
        raise NotAuthorizedException("Missing or wrong X-Ghost-Signature.")
    try:
        body = msgspec.json.decode(raw, type=GhostWebhookBody)
        if settings.ghost_admin_api_key and settings.ghost_url:
            return Response({"status": await _queue_sync(db_session, body)}, headers={"Cache-Control": "no-store"})
        result = await apply_webhook(db_session, body, ghost_url=settings.ghost_url, base_url=settings.base_url)
    except (msgspec.DecodeError, msgspec.ValidationError, GhostImportError) as exc:
        return Response({"status": "rejected", "detail": str(exc)}, status_code=400,
                        headers={"Cache-Control": "no-store"})
    return Response({"status": result}, headers={"Cache-Control": "no-store"})


async def _queue_sync(db: AsyncSession, body: GhostWebhookBody) -> str:
    change, kind = (body.post, "post") if body.post is not None else (body.page, "page")
    if change is None:
        return "ignored"
    ghost_id = str(change.current.get("id") or change.previous.get("id") or "")
    if not ghost_id:
        return "ignored"
    await enqueue(db, GHOST_SYNC, GhostSync(ghost_id=ghost_id, kind=kind), unique_key=f"{GHOST_SYNC}:{kind}:{ghost_id}")
    return "queued"
