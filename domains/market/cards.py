"""Product cards in one query: what a card shows (fragments.card), for lists that show only cards.

Search results, category and producer listings, the market index, market pages and the
``market.latest`` / ``market.product-card`` / ``market.page`` fragments show products as cards:
title, slug, price range, first image, producer and whether any variant is in stock. Loading full
``ProductRead`` objects for that (``CatalogueService.reads``: six eager loads, ORM objects for the
producer's members and logo, every image, category and variant) cost most of a search page's CPU
(issue 16). :func:`load_cards` asks for exactly the card's columns in one Core ``SELECT`` (a row
per variant; the first image and the producer joined in) with each variant's availability from
:func:`~domains.market.services.stock.available_expr` — the one availability rule, so the cart's
registered reservations count here as everywhere — and builds the same dicts ``card()`` returns.

``tests/domains/market/test_market_cards.py`` holds the two paths to the same bytes.

:func:`cards_html` renders a list of cards with the ``product_card`` macro, remembering each
card's HTML under its data (a bounded LRU per template object): the search page's two dozen
cards were a third of its Jinja time, and the same products come back search after search. The
key is the card's whole data (msgspec-encoded) and the heading level, so a changed title, price,
stock state, image or producer name is simply another key: the memo can never show stale bytes,
and an edited template (a reloaded Template object) starts a memo of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast
from uuid import UUID
from weakref import WeakKeyDictionary

import msgspec
from jinja2 import Environment, Template
from markupsafe import Markup
from sqlalchemy import ARRAY, Select, any_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.money import format_minor
from domains.market.models import ACTIVE, Media, Producer, Product, ProductImage, Variant
from domains.market.services import stock
from domains.market.services.media import media_url, srcset
from domains.market.services.stock import available_expr

__all__ = ["CARD_TEMPLATE", "Card", "cards_html", "load_cards"]

CARD_TEMPLATE: Final = "fragments/market/_card.html"
_HTML_MEMO: Final = 4096  # cards kept per template (a few hundred bytes each)
_html: WeakKeyDictionary[Template, OrderedDict[bytes, Markup]] = WeakKeyDictionary()
_encode = msgspec.json.Encoder().encode

_CHUNK = 500  # ids per statement: well under SQLite's bound-variable limit
# The statement, built once per (active_only, registered reservation terms): building it (the
# correlated subqueries, available_expr) cost more CPU than running it. The ids are an expanding
# parameter.
_STATEMENTS: dict[tuple[bool, bool, tuple[Any, ...]], Select[Any]] = {}


@dataclass(frozen=True, slots=True)
class Card:
    """One product's card (``data``: the dict ``fragments.card`` makes) and its revision (ETag seeds)."""

    id: UUID
    revision: int
    data: dict[str, Any]


class _MediaColumns(NamedTuple):
    """The Media columns ``media_url``/``srcset`` read, without an ORM object."""

    sha256: str
    format: str
    width: int
    widths: list[int]


def _absolute(url: str, link_base: str) -> str:
    return link_base + url if link_base and url.startswith("/") else url


def _statement(active_only: bool, array: bool) -> Select[Any]:
    key = (active_only, array, tuple(stock._reserved))  # a term registered later (the cart) makes a new one
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = _build(active_only, array)
    return found


def _build(active_only: bool, array: bool) -> Select[Any]:
    """``array`` (PostgreSQL): the ids as one array parameter (``= ANY(:ids)``), so the SQL text is
    the same for any number of ids and SQLAlchemy does not rewrite it on every call, as it does
    for an expanding ``IN`` (elsewhere)."""
    first_image = (select(ProductImage.id).where(ProductImage.product_id == Product.id)
                   .order_by(ProductImage.position, ProductImage.id).limit(1).correlate(Product).scalar_subquery())
    stmt = (
        select(Product.id, Product.title, Product.slug, Product.revision, Producer.name, Producer.slug,
               ProductImage.alt, Media.sha256, Media.format, Media.width, Media.height, Media.widths,
               Variant.id, Variant.price_minor, Variant.currency, available_expr(Variant.id))
        .select_from(Product)
        .join(Producer, Producer.id == Product.producer_id)
        .outerjoin(ProductImage, ProductImage.id == first_image)
        .outerjoin(Media, Media.id == ProductImage.media_id)
        .outerjoin(Variant, Variant.product_id == Product.id)
        .where(Product.id == any_(bindparam("ids", type_=ARRAY(Product.id.type))) if array
               else Product.id.in_(bindparam("ids", expanding=True)))
        .order_by(Product.id, Variant.position, Variant.id))
    if active_only:
        stmt = stmt.where(Product.status == ACTIVE)
    return stmt


async def load_cards(session: AsyncSession, ids: Sequence[UUID], *, link_base: str = "",
                     active_only: bool = True) -> list[Card]:
    """The cards of products ``ids``, in the order given (unknown ids, and drafts or archived ones
    when ``active_only``, left out); links absolute when ``link_base`` is set (embeds)."""
    if not ids:
        return []
    wanted = list(dict.fromkeys(ids))
    rows: dict[UUID, list[Any]] = {}
    statement = _statement(active_only, session.bind.dialect.name == "postgresql")
    for start in range(0, len(wanted), _CHUNK):
        for row in await session.execute(statement, {"ids": wanted[start:start + _CHUNK]}):
            rows.setdefault(row[0], []).append(row)
    built = {pid: _card(found, link_base) for pid, found in rows.items()}
    return [built[i] for i in ids if i in built]


def _card(rows: list[Any], link_base: str) -> Card:
    (pid, title, slug, revision, producer_name, producer_slug, alt, sha256, fmt, width, height, widths,
     *_) = rows[0]
    # Variants in position order (as Product.variants): the first at the lowest/highest price wins.
    variants = [(int(price), currency, int(available)) for *_, vid, price, currency, available in rows
                if vid is not None]
    if variants:
        low = min(variants, key=lambda v: v[0])
        high = max(variants, key=lambda v: v[0])
        low_price = format_minor(low[0], low[1])
        price = low_price if low[0] == high[0] else f"{low_price} - {format_minor(high[0], high[1])}"
    else:
        price = ""
    image = None
    if sha256 is not None:
        media = cast(Media, _MediaColumns(sha256=sha256, format=fmt, width=width, widths=list(widths or [])))
        image = {
            "src": _absolute(media_url(media), link_base),
            "srcset": ", ".join(_absolute(part.strip(), link_base) for part in srcset(media).split(",")
                                if part.strip()),
            "width": width, "height": height, "alt": alt or title,
        }
    return Card(id=pid, revision=int(revision), data={
        "id": str(pid), "title": title, "slug": slug,
        "url": _absolute(f"/market/{slug}", link_base),
        "price": price, "in_stock": any(v[2] > 0 for v in variants),
        "producer": {"name": producer_name, "url": _absolute(f"/market/producer/{producer_slug}", link_base)},
        "image": image,
    })


def cards_html(env: Environment, cards: Sequence[dict[str, Any]], *, level: int = 3) -> Markup:
    """The ``product_card`` macro's HTML for each card dict, joined: what
    ``{% for c in cards %}{{ product_card(c, level) }}{% endfor %}`` renders, byte for byte, with
    each card's HTML remembered under its data (module docstring)."""
    template = env.get_template(CARD_TEMPLATE)
    memo = _html.get(template)
    if memo is None:
        memo = _html[template] = OrderedDict()
    macro = template.module.product_card  # type: ignore[attr-defined]
    parts: list[Markup] = []
    for card in cards:
        key = _encode((level, card))
        found = memo.get(key)
        if found is None:
            found = memo[key] = macro(card, level)  # Markup: the macro escaped what it rendered
            if len(memo) > _HTML_MEMO:
                memo.popitem(last=False)
        else:
            memo.move_to_end(key)
        parts.append(found)
    return Markup("").join(parts)  # each part is Markup already: join escapes nothing
