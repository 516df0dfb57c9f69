"""The market's surrogate keys, built here only: every page and fragment that shows a product is
tagged with them and every change to a product, its variants, images or stock purges them
(design/fragments.md §7).

``market-product:<id>`` is a product (its own page, cards and embeds that show it);
``market-products`` every list of products (the index, search results, ``market.latest``,
feeds); ``market-producer:<id>`` a producer's page and everything showing its name or logo;
``market-category:<slug>`` a category's page; ``market-media:<sha256>`` every stored copy of one
image at ``/media/`` (which also carries the keys of the active products and the producers that
show it, so a product that stops being public takes its images off the edge with it).
marketview's market pages add their own keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from uuid import UUID

from fragments.purge import SurrogateKey

__all__ = ["MARKET_PAGES", "PRODUCTS", "category", "market_page", "market_page_showing", "media", "producer",
           "product", "showing"]

PRODUCTS: Final = SurrogateKey("market-products")  # every list of products


def product(product_id: UUID | str) -> SurrogateKey:
    return SurrogateKey(f"market-product:{product_id}")


def producer(producer_id: UUID | str) -> SurrogateKey:
    return SurrogateKey(f"market-producer:{producer_id}")


def category(slug: str) -> SurrogateKey:
    return SurrogateKey(f"market-category:{slug}")


def media(sha256: str) -> SurrogateKey:
    return SurrogateKey(f"market-media:{sha256}")


def showing(product_id: UUID, producer_id: UUID, category_slugs: Iterable[str] = ()) -> set[SurrogateKey]:
    """The keys of everything that shows a product: what a change to it purges."""
    return {product(product_id), producer(producer_id), PRODUCTS, *(category(s) for s in category_slugs)}


# Market pages (marketview): ``market-page:<id>`` one page (and its fragment and embed), also purged
# through the keys of the products it shows; ``market-pages`` the list at /market/pages/.
MARKET_PAGES: Final = SurrogateKey("market-pages")


def market_page(page_id: UUID | str) -> SurrogateKey:
    return SurrogateKey(f"market-page:{page_id}")


def market_page_showing(page_id: UUID | str) -> set[SurrogateKey]:
    """What a change to a market page (its text, dates, products or publication) purges."""
    return {market_page(page_id), MARKET_PAGES}
