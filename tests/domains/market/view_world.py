"""A small market for the public-view, search, market-page and fragment tests (marketview).

Written through the catalogue service (as the admin, the importers and the CLI write), so the
search index, purges and events are what production would see. The fixture is chosen so the
ranking is unambiguous: "honey" is in the title (and a tag) of one product, only a tag of a second
and only the description of a third; a draft and an archived product mention it too and must
never appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domains.market.models import Category, Producer
from domains.market.schemas import ProductInput, StockAdjust, VariantInput
from domains.market.services.catalogue import CatalogueService

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@dataclass
class World:
    ids: dict[str, UUID] = field(default_factory=dict)  # product slug -> id
    producers: dict[str, UUID] = field(default_factory=dict)
    categories: dict[str, UUID] = field(default_factory=dict)


def v(sku: str, price: int, barcode: str = "", **options: str) -> VariantInput:
    return VariantInput(sku=sku, price_minor=price, options=options, barcode=barcode)


async def build(sm: async_sessionmaker[AsyncSession]) -> World:
    world = World()
    async with sm() as session, session.begin():
        for slug, name in (("hill-farm", "Hill Farm"), ("town-bakery", "Town Bakery")):
            producer = Producer(name=name, slug=slug, location="Ashby", description=f"{name} grows and bakes.")
            session.add(producer)
            await session.flush()
            world.producers[slug] = producer.id
        for slug, name, parent in (("preserves", "Honey & Preserves", None), ("bakery", "Bread & Cakes", None),
                                   ("vegetables", "Vegetables", None), ("roots", "Roots", "vegetables")):
            category = Category(name=name, slug=slug, parent_id=world.categories.get(parent or ""))
            session.add(category)
            await session.flush()
            world.categories[slug] = category.id
    catalogue_rows = [
        ("wildflower-honey", "Wildflower Honey", "hill-farm", ["preserves"], ["honey", "local"],
         "Raw and unfiltered, from the meadow by the river.",
         [v("HONEY-250", 500, "4006381333931", size="250 g"), v("HONEY-500", 900, size="500 g")], "active", 0),
        ("sourdough-loaf", "Sourdough Loaf", "town-bakery", ["bakery"], ["honey", "bread"],
         "A slow loaf, baked every morning.", [v("LOAF-1", 450)], "active", 1),
        ("oat-biscuits", "Oat Biscuits", "town-bakery", ["bakery"], ["biscuits"],
         "Crisp oat biscuits, sweetened with honey and a little butter. A tin lasts a week.",
         [v("OAT-12", 350, size="12"), v("OAT-24", 600, size="24")], "active", 2),
        ("carrots", "Carrots", "hill-farm", ["roots"], ["veg"], "Sweet orange carrots, pulled this week.",
         [v("CARROT-1KG", 250)], "active", 3),
        ("honey-mustard", "Honey Mustard", "hill-farm", ["preserves"], ["honey"], "Not ready yet.",
         [v("MUSTARD-1", 400)], "draft", 4),
        ("old-honey", "Old Honey", "hill-farm", ["preserves"], ["honey"], "Sold out for good.",
         [v("OLDHONEY-1", 400)], "archived", 5),
    ]
    for slug, title, producer, cats, tags, description, variants, status, age in catalogue_rows:
        async with sm() as session, session.begin():
            service = CatalogueService(session, base_url="http://127.0.0.1:8000")
            saved = await service.save(None, ProductInput(
                title=title, slug=slug, description_md=description, status="active" if status == "archived" else status,
                tags=tags, variants=variants, producer_id=world.producers[producer],
                featured=slug == "wildflower-honey",
                category_ids=[world.categories[c] for c in cats], published_at=T0 + timedelta(days=10 - age)))
            if status == "archived":
                await service.set_status(None, saved, "archived")
            world.ids[slug] = saved.id
    await stock(sm, {"HONEY-250": 10, "HONEY-500": 0, "LOAF-1": 3, "OAT-12": 0, "OAT-24": 0, "CARROT-1KG": 40,
                     "MUSTARD-1": 5})
    return world


async def stock(sm: async_sessionmaker[AsyncSession], levels: dict[str, int]) -> None:
    for sku, quantity in levels.items():
        async with sm() as session, session.begin():
            await CatalogueService(session).adjust_stock(None, StockAdjust(sku=sku, set=quantity))
