"""The market domain: producers, products and their variants, images and stock (issue 16).

Laid out as the blog is (domains/blog/__init__.py). The names below are the contract the
parallel work (public views and search: ``marketview``; importers, API and federation:
``marketimport``) and the cart build on; they stay stable.

``models.py``     ``Producer`` (+ ``ProducerMember``: the members who manage it), ``Category``,
                  ``Product`` (``status`` in ``DRAFT``/``ACTIVE``/``ARCHIVED``; ``description_md``
                  + rendered ``description_html``; ``tags`` a JSON list; ``featured``;
                  ``published_at``; ``revision``), ``ProductCategory``, ``ProductSlugRedirect``,
                  ``ProductImage`` (ordered ``Media`` on a product, with ``alt``), ``Media`` (a
                  content-addressed upload), ``Variant`` (``sku`` unique, ``options`` JSON,
                  ``price_minor``/``currency``/``compare_at_minor``, ``weight_grams``, ``barcode``,
                  ``low_stock_threshold``), ``StockLocation``, ``StockLevel`` (``on_hand``,
                  ``allocated``; CHECKs keep ``0 <= allocated <= on_hand``).
``schemas.py``    input: ``ProductInput``, ``VariantInput``, ``StockAdjust``, ``ProducerInput``;
                  read: ``ProductRead``, ``VariantRead`` (``available``, ``.price`` formatted),
                  ``ProducerRead``, ``ImageRead``, ``CategoryRead``, ``LowStockLine``; events:
                  ``ProductEvent``; helpers ``options_key``, ``slugify``; limits and ``IMAGE_WIDTHS``.
``services/``     ``CatalogueService(db, base_url=, currency=, vat_rates=)``: ``get``, ``by_slug``,
                  ``resolve_public``, ``get_public``, ``read``/``reads``, ``admin_list``,
                  ``low_stock``, ``save``, ``set_status``/``archive``/``delete``, ``add_image``/
                  ``remove_image``/``arrange_images``, ``adjust_stock``/``change_stock``,
                  ``availability``, ``variant_by_sku``, ``categories``/``create_category``;
                  ``ProducerService(db, base_url=)``: ``get``, ``by_slug``, ``for_user``, ``own``,
                  ``save``, ``set_logo``, ``read``; ``MediaService(db, data_dir)``: ``store``;
                  stock: ``available_expr(variant_id_column)`` (the one availability expression;
                  the cart adds reservations with ``register_reserved``), ``availability``,
                  ``change_on_hand`` (conditional UPDATE); media: ``media_url``, ``srcset``.
``guards.py``     producers their own producers' products, staff all; not yours → 404.
``keys.py``       surrogate keys (``PRODUCTS``, ``product(id)``, ``producer(id)``, ``category(slug)``).
``events.py``     the ``market.product`` topic (``product_changed``, ``subscribe``).
``deps.py``       ``catalogue``, ``producers``, ``media`` dependencies.
``admin.py``      producers' and staff's pages under ``/market/admin/`` (``forms.py``: their
                  variant rows, ``v<i>_sku``/``v<i>_price``/``v<i>_o<j>``, parsed to ``ProductInput``).
``media.py``      serves ``/media/<sha256>-<width>.<ext>`` (immutable; public images only) and
                  ``/market/admin/media/<name>`` (owners and staff, private cache).
``controllers.py``  public pages: ``/market/``, products (variant picker), categories, producers,
                  search, market pages (marketview); ``search.py`` the search service (PostgreSQL
                  FTS / SQLite FTS5, ``search_models.py``); ``pages.py`` + ``page_models.py`` market
                  pages and their staff admin; ``fragments.py`` ``market.latest``/``product-card``/``page``.
``cli.py``        the ``rose-ash market`` group (``stock``); others add commands to ``market_group``.

Other domains read products with ``CatalogueService.get_public(product_id) -> ProductRead | None``
and subscribe to product events with :func:`domains.market.events.subscribe`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry, ServiceActor

if TYPE_CHECKING:
    import click
    from litestar.types import ControllerRouterHandler


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from domains.market.admin import admin_handlers, staff_handlers
    from domains.market.api import read_handlers, write_handlers
    from domains.market.controllers import public_handlers
    from domains.market.import_admin import import_handlers
    from domains.market.media import media_handlers, owner_media_handlers
    from domains.market.pages import admin_handlers as page_admin_handlers

    return [Router(path="/", opt=access.public(), route_handlers=[
        *public_handlers,
        *media_handlers,
        Router(path="/", opt=access.session(role="producer", owner="product"), route_handlers=[
            *admin_handlers, *owner_media_handlers]),
        Router(path="/", opt=access.admin(), route_handlers=[*staff_handlers, *page_admin_handlers]),
        Router(path="/", opt=access.session(role="producer", owner="csv-import"), route_handlers=import_handlers),
        # JSON API: reads for everyone (a token, if sent, needs one of these scopes); writes need "market".
        Router(path="/", opt=access.token("market", "api", anonymous=True), route_handlers=read_handlers),
        Router(path="/", opt=access.token("market"), route_handlers=write_handlers),
    ])]


def _cli() -> list[click.Command]:
    from domains.market.cli import COMMAND_MODULES, market_group

    for module in COMMAND_MODULES:
        importlib.import_module(module)
    return [market_group]


domain = Domain(
    name="market",
    routes=_routes,
    cli=_cli,
    models=("domains.market.models", "domains.market.page_models", "domains.market.search_models",
            "domains.market.import_models"),
    setup=("domains.market.fragments", "domains.market.search", "domains.market.jobs"),
    nav=(NavEntry("/market/", "Market", 20),),
    admin=(NavEntry("/market/admin/", "Market products", 30),
           # No "Producers", "Low stock" or "Import" entries: the market's own tabs
           # (templates/market/admin/_nav.html) link those on every market admin page, and two
           # tabs for one page on one screen confuse. "Market pages" is not among the market's tabs.
           NavEntry("/market/admin/pages/", "Market pages", 33)),
    actor=ServiceActor("market"),
)

__all__ = ["domain"]
