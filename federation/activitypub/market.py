"""Market federation: the ``market`` service actor tells its followers about products (issue 16 item 9).

A product that becomes public (active) goes out as a ``Create`` of a ``Note`` with the product's
link, its price and its first image as an ``attachment`` (an ``Image`` object, as Mastodon and
other servers show media: https://docs.joinmastodon.org/spec/activitypub/#properties-used-1),
so a timeline shows a card for it. A change while public sends ``Update`` (ActivityPub §7.3); a
product that stops being public (archived, back to draft, deleted) sends ``Delete`` with a
``Tombstone`` (§7.4). Going public again after that is a fresh ``Create`` of the same object.

Driven by the market's durable product events (domains/market/events.py): this module subscribes
the ``activitypub.market-product`` job kind, exactly as federation/activitypub/blog.py does for
posts (and ``activitypub.market-products`` for the batches a CSV import emits, one job per
chunk). The Note's id is ``/ap/objects/<product id>``: stable across edits, dereferenceable as AS2.
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.jobs import JobContext, job_handler
from domains.market import events
from domains.market.schemas import ProductEvent, ProductEvents, ProductRead
from domains.market.services import CatalogueService
from federation.activitypub.as2 import public_addressing
from federation.activitypub.core import Federation
from federation.activitypub.models import APObject
from federation.activitypub.outbox import Outbox
from federation.activitypub.sanitize import plain_text, sanitize_html

log = logging.getLogger("rose_ash.federation.market")

KIND = "activitypub.market-product"
BATCH_KIND = "activitypub.market-products"  # a bulk change's events (domains/market/events.py)
ACTOR = "market"
TEASER = 300  # characters of the description in the Note


def note_content(product: ProductRead) -> str:
    """The Note's HTML: the linked title and the price, then a short plain-text teaser."""
    title = html.escape(product.title)
    url = html.escape(product.url, quote=True)
    price = html.escape(product.price_range)
    first = f'<p><a href="{url}">{title}</a>{f" — {price}" if price else ""}</p>'
    teaser = " ".join(plain_text(product.description_html, 20_000).split())
    teaser = teaser if len(teaser) <= TEASER else teaser[: TEASER - 1].rsplit(" ", 1)[0] + "…"
    second = f"<p>{html.escape(teaser)}</p>" if teaser else ""
    by = html.escape(product.producer.name)
    # The same sanitiser as every other Note we store, so nothing here can smuggle markup.
    return sanitize_html(f"{first}{second}<p>From {by}</p>")


def attachments(product: ProductRead) -> list[dict[str, Any]]:
    """The first image as an AS2 ``Image`` attachment (what Mastodon renders as media)."""
    if not product.images:
        return []
    image = product.images[0]
    return [{"type": "Image", "mediaType": image.content_type, "url": image.url,
             "name": image.alt or product.title, "width": image.width, "height": image.height}]


@job_handler(KIND)
async def federate_product(ctx: JobContext, event: ProductEvent) -> None:
    await _federate(ctx, event)


@job_handler(BATCH_KIND)
async def federate_products(ctx: JobContext, batch: ProductEvents) -> None:
    """A bulk change's events (a CSV import chunk), each in its own transaction, in order. A retry
    after a failure part-way sends nothing twice: a Create finds its object, an Update its content."""
    for event in batch.events:
        await _federate(ctx, event)


async def _federate(ctx: JobContext, event: ProductEvent) -> None:
    client = ctx.services.get("federation_client") if ctx.services else None
    settings = ctx.settings
    async with ctx.sessionmaker() as session, session.begin():
        fed = Federation(session, settings, client)
        try:
            catalogue = CatalogueService(session, base_url=settings.base_url,
                                         currency=getattr(settings, "market_currency", "EUR"))
            product = await catalogue.get_public(event.product_id)
            ap_id = fed.urls.object(event.product_id)
            existing = await session.scalar(select(APObject).where(APObject.ap_id == ap_id))
            outbox = Outbox(fed)
            actor = await fed.local_service_actor(ACTOR)
            if product is None:
                if existing is not None and not existing.deleted:
                    await outbox.delete_note(actor, existing)
                return
            content, attached = note_content(product), attachments(product)
            raw = {"attachment": attached}
            if existing is None:
                to, cc = public_addressing("public", actor.followers_url)
                obj = APObject(id=event.product_id, ap_id=ap_id, type="Note", local=True, attributed_to=actor.uri,
                               content=content, summary="", url=product.url, in_reply_to="", visibility="public",
                               to=to, cc=cc, mentions=[], published=product.published_at or datetime.now(UTC),
                               raw=raw)
                session.add(obj)
                await session.flush()
                await outbox.send_create(actor, obj)
            elif existing.deleted:  # public again after an archive: a new Create of the same object
                existing.deleted = False
                existing.content, existing.url = content, product.url
                existing.raw = raw
                await outbox.send_create(actor, existing)
            elif (existing.content, existing.url, (existing.raw or {}).get("attachment")) == (
                    content, product.url, attached):
                return  # nothing followers see changed (stock only; or a retried batch that sent it already)
            else:
                existing.raw = {**(existing.raw or {}), **raw}
                await outbox.update_note(actor, existing, {"content": content, "url": product.url})
        finally:
            await fed.aclose()


events.subscribe(KIND)
events.subscribe_batch(BATCH_KIND)
