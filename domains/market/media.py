"""``/media/<sha256>-<width>.<ext>``: the stored copies of uploaded images.

A name is derived from the content (domains/market/services/media.py), so its bytes never change:
browsers and the edge may keep it for a year (``immutable``), and the ETag is the name itself.

**Only public images are public.** ``/media/`` serves an image only while an active product shows
it or it is a producer's logo; any other image (on drafts and archived products only, or on no
product yet) answers exactly like an absent one: the same 404. Its public answer carries the
surrogate keys of every active product and producer that shows it (and ``market-media:<sha256>``),
so archiving the last such product purges the image from the edge with the product's pages.

The product's owners and staff see images of drafts at ``/market/admin/media/<name>`` (the same
names), a signed-in route answered ``Cache-Control: private`` with no surrogate key: never stored
by the edge. Anybody else gets the same 404 there too.
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.caching import CachePolicy, conditional_response
from app.settings import Settings
from domains.account.models import User
from domains.market import keys
from domains.market.models import ACTIVE, Media, Producer, ProducerMember, Product, ProductImage
from domains.market.services.media import CONTENT_TYPES, MEDIA_NAME, media_dir
from fragments.pages import public_get
from fragments.purge import SurrogateKey

__all__ = ["IMMUTABLE", "OWNER_CACHE", "media_handlers", "owner_media_handlers"]

IMMUTABLE = "public, max-age=31536000, immutable"
OWNER_CACHE = "private, max-age=3600"  # the owner's browser only; never the edge
ABSENT = "No such image."


async def public_keys(db: AsyncSession, sha256: str) -> set[SurrogateKey]:
    """The keys of the active products and producers showing image ``sha256``; empty: not public."""
    products = (await db.scalars(
        select(ProductImage.product_id).join(Media, Media.id == ProductImage.media_id)
        .join(Product, Product.id == ProductImage.product_id)
        .where(Media.sha256 == sha256, Product.status == ACTIVE).distinct())).all()
    producers = (await db.scalars(
        select(Producer.id).join(Media, Media.id == Producer.logo_id).where(Media.sha256 == sha256))).all()
    return {*(keys.product(p) for p in products), *(keys.producer(p) for p in producers)}


async def may_see(db: AsyncSession, user: User, sha256: str) -> bool:
    """Staff see every image; a producer those they uploaded, on their products or their logo."""
    media = (await db.scalars(select(Media).where(Media.sha256 == sha256))).one_or_none()
    if media is None:
        return False
    if user.is_active and user.is_admin:
        return True
    if not user.can_sell:
        return False
    if media.uploaded_by_id == user.id:
        return True
    mine = select(ProducerMember.producer_id).where(ProducerMember.user_id == user.id)
    return bool(await db.scalar(select(or_(
        exists().where(ProductImage.media_id == media.id, ProductImage.product_id == Product.id,
                       Product.producer_id.in_(mine)),
        exists().where(Producer.logo_id == media.id, Producer.id.in_(mine))))))


async def _read(settings: Settings, name: str) -> tuple[bytes, str]:
    match = MEDIA_NAME.match(name)
    if match is None:
        raise NotFoundException(ABSENT)
    try:
        body = await anyio.Path(media_dir(settings.data_dir) / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise NotFoundException(ABSENT) from None
    return body, CONTENT_TYPES[match.group("ext")]


@public_get("/media/{name:str}", name="market:media")
async def media_file(request: Request[Any, Any, Any], settings: Settings, db_session: AsyncSession,
                     name: str) -> Response[bytes]:
    match = MEDIA_NAME.match(name)
    if match is None:
        raise NotFoundException(ABSENT)
    showing = await public_keys(db_session, match.group("sha"))
    if not showing:
        raise NotFoundException(ABSENT)  # a draft's image looks exactly like no image
    body, media_type = await _read(settings, name)
    return conditional_response(request, body, CachePolicy.PUBLIC, etag=f'"{name}"', cache_control=IMMUTABLE,
                                media_type=media_type, surrogate_keys={*showing, keys.media(match.group("sha"))},
                                headers={"X-Content-Type-Options": "nosniff"})


@get("/market/admin/media/{name:str}", name="market:media-owner")
async def owner_media_file(request: Request[User, Any, Any], settings: Settings, db_session: AsyncSession,
                           name: str) -> Response[bytes]:
    """An image as its owner (or staff) sees it, public or not: private cache only."""
    match = MEDIA_NAME.match(name)
    if match is None or not await may_see(db_session, request.user, match.group("sha")):
        raise NotFoundException(ABSENT)
    body, media_type = await _read(settings, name)
    return conditional_response(request, body, CachePolicy.PRIVATE, etag=f'"{name}"', cache_control=OWNER_CACHE,
                                media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})


media_handlers = [media_file]
owner_media_handlers = [owner_media_file]
