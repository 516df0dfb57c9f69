"""The product editor's VAT class as a producer uses it: a <select> of the classes the shop has
VAT rates for (settings.cart_vat_rates), and a class it has none for refused with a 422 that names
the allowed ones, nothing written (the walk found a typo `reducd` saved and then unsellable)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select

from app.settings import Settings
from domains.market.models import Product
from tests.domains.market.conftest import make_producer
from tests.domains.market.helpers import THREE, submit

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, cart_vat_rates="standard=20, reduced=5")


async def test_the_editor_offers_the_configured_classes_and_refuses_others(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "alice")
    page = (await client.get("/market/admin/new")).text
    select_html = re.search(r'<select id="f-tax_class" name="tax_class"[^>]*>(.*?)</select>', page, re.S)
    assert select_html is not None
    assert re.findall(r'<option value="([^"]*)"', select_html[1]) == ["", "standard", "reduced"]

    typo = await submit(client, {**THREE, "tax_class": "reducd"})
    assert typo.status_code == 422
    assert ("The shop has no VAT rate for the tax class &#39;reducd&#39;. Choose one of standard, reduced, "
            "or leave it empty for the default class.") in typo.text
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Product))).scalar_one() == 0

    made = await submit(client, {**THREE, "tax_class": "reduced"})
    assert made.status_code == 303, made.text[:2000]
    async with sessionmaker() as session:
        assert (await session.execute(select(Product.tax_class))).scalar_one() == "reduced"
    edit = (await client.get(made.headers["location"])).text
    assert '<option value="reduced" selected>reduced</option>' in edit
