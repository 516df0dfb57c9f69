"""``rose-ash market ...``: the market's operator commands.

Other modules add commands to :data:`market_group` (``@market_group.command(...)``); list such a
module in :data:`COMMAND_MODULES` so it is imported when the CLI is built (marketimport's
``import-url``/``import-csv``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from app.commands import fail, settings_from, with_session

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["COMMAND_MODULES", "market_group"]

# Modules that add commands to the group (imported by domains.market._cli).
COMMAND_MODULES: tuple[str, ...] = ("domains.market.import_cli",)


@click.group(name="market")
def market_group() -> None:
    """The market: products, stock and imports."""


@market_group.command(name="stock")
@click.argument("sku")
@click.option("--set", "set_to", type=int, default=None, help="Set on hand to N.")
@click.option("--add", "add", type=int, default=None, help="Add N to on hand (negative: take away).")
@click.option("--location", default=None, help="The stock location (default: the main one).")
@click.pass_context
def market_stock(ctx: click.Context, sku: str, set_to: int | None, add: int | None, location: str | None) -> None:
    """Set (--set N) or change (--add N) a SKU's stock on hand; prints the new figures."""
    from app.forms import InputProblems
    from domains.market.schemas import StockAdjust
    from domains.market.services import CatalogueService

    if (set_to is None) == (add is None):
        fail({"quantity": "give exactly one of --set N or --add N"})
    settings = settings_from(ctx)

    async def work(session: AsyncSession) -> tuple[int, int]:
        catalogue = CatalogueService(session, base_url=settings.base_url, currency=settings.market_currency,
                                     vat_rates=settings.cart_vat_rates)
        on_hand = await catalogue.adjust_stock(None, StockAdjust(sku=sku, set=set_to, add=add, location=location))
        variant = await catalogue.variant_by_sku(sku)
        assert variant is not None
        return on_hand, (await catalogue.availability([variant.id]))[variant.id]

    try:
        on_hand, available = with_session(settings, work)
    except InputProblems as exc:
        fail(exc.errors)
    click.echo(f"{sku.strip()}: {on_hand} on hand at {location or 'the main store'}, {available} available in all")
