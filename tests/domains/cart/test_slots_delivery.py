"""VAT per product tax class, weight-band delivery and collection slots, through the service, the
HTML checkout and the JSON API (both databases): the right figures stored on the order and shown on
the cart, checkout, order page and receipt; a bad slot or a too-heavy delivery is a clear 4xx with
nothing written."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.forms import InputProblems
from app.mail.message import OutgoingMail, render_bodies
from app.settings import Settings
from domains.cart.models import CART, PAYMENT_PENDING, IdempotencyKey, Order, Reservation
from domains.cart.services import CartService, CheckoutDetails, order_context
from domains.market.models import Product
from domains.market.schemas import ProductInput, StockAdjust, VariantInput
from domains.market.services import CatalogueService
from tests.domains.blog.test_roles import member
from tests.domains.cart.helpers import allocated
from tests.helpers.web import CSRF_FIELD

pytestmark = pytest.mark.anyio

RATES = "standard=20,reduced=5,zero=0"
SLOTS = "Market hall:Sat 09:00-12:00,Sat 12:00-15:00;Farm shop:Wed 16:00-18:00"
IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, cart_vat_rates=RATES,
                                   cart_vat_default="standard", cart_delivery_rates="0-1000:450,1000-5000:750",
                                   cart_collection_slots=SLOTS)


async def shop(session: AsyncSession) -> None:
    """Bread (standard VAT, 400 g, €2.50), jam (reduced, 300 g, €5.00), a voucher (zero, no weight,
    €10.00), and a pot in a class nobody configured; 50 of each in stock."""
    user = await member(session, "alice")
    user.is_producer = True
    catalogue = CatalogueService(session, vat_rates=RATES)
    goods = (("Bread", "BREAD", 250, 400, None), ("Jam", "JAM", 500, 300, "reduced"),
             ("Voucher", "VOUCHER", 1000, None, "zero"), ("Pot", "POT", 700, 100, None))
    for title, sku, price, weight, tax_class in goods:
        await catalogue.save(user, ProductInput(
            title=title, status="active", tax_class=tax_class,
            variants=[VariantInput(sku=sku, price_minor=price, weight_grams=weight)]))
        await catalogue.adjust_stock(user, StockAdjust(sku=sku, set=50))
    # The market refuses a class without a rate; "luxury" stands for a class whose rate was taken
    # out of the settings after the product was saved, which the cart must still refuse to sell.
    await session.execute(update(Product).where(Product.title == "Pot").values(tax_class="luxury"))
    await session.commit()


async def nothing_placed(session: AsyncSession) -> None:
    placed = (await session.execute(select(func.count()).select_from(Order).where(Order.number.is_not(None))))
    assert placed.scalar_one() == 0
    assert (await session.execute(select(func.count()).select_from(IdempotencyKey))).scalar_one() == 0
    for sku in ("BREAD", "JAM", "VOUCHER"):
        assert (await allocated(session, sku))[1] == 0


async def test_vat_per_tax_class_on_cart_order_and_receipt(db_session: AsyncSession, settings: Settings) -> None:
    await shop(db_session)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="BREAD", quantity="4")  # €10.00 at 20%: VAT €1.67
    await cart.add(order, sku="JAM", quantity="1")  # €5.00 at 5%: 500 * 5/105 = 23.8 → €0.24
    await cart.add(order, sku="VOUCHER", quantity="1")  # 0%: no VAT line
    assert [(x.sku, x.tax_class, x.tax_rate_bp, x.unit_weight_grams) for x in order.lines] == [
        ("BREAD", "", 2000, 400), ("JAM", "reduced", 500, 300), ("VOUCHER", "zero", 0, 0)]
    assert (order.subtotal_minor, order.total_minor, order.tax_minor) == (2500, 2500, 167 + 24)
    with pytest.raises(InputProblems) as luxury:
        await cart.add(order, sku="POT")
    assert "'luxury'" in luxury.value.errors["sku"] and len(order.lines) == 3

    # Delivery: 4 * 400 + 300 g = 1.9 kg → the 1-5 kg band (€7.50), taxed at the default rate (20%).
    assert cart.delivery_quote(order) == 750
    placed = await cart.place(order, CheckoutDetails(email="b@example.org", fulfilment="delivery",
                                                     address="1 Main Street, Town"), idempotency_key="d" * 24)
    await db_session.commit()
    assert placed.state == PAYMENT_PENDING
    assert (placed.subtotal_minor, placed.shipping_minor, placed.total_minor, placed.weight_grams) == (
        2500, 750, 3250, 1900)
    assert placed.shipping_rate_bp == 2000
    # 20%: (1000 + 750) * 20/120 = 291.67 → 292; 5%: 24.
    assert placed.tax_minor == 292 + 24
    context = order_context(placed)
    assert context["vat"] == ["VAT 20% included: €2.92", "VAT 5% included: €0.24"]
    text, _html = render_bodies(OutgoingMail(to=placed.email, subject="s", template="cart/receipt",
                                             context=context, tag="order"), settings)
    assert "VAT 20% included: €2.92" in text and "VAT 5% included: €0.24" in text
    assert "Delivery: €7.50" in text and "Total: €32.50" in text


async def test_too_heavy_for_delivery_writes_nothing(db_session: AsyncSession, settings: Settings) -> None:
    await shop(db_session)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="BREAD", quantity="13")  # 5.2 kg: past the last band (under 5 kg)
    await cart.start_checkout(order)
    await db_session.commit()
    token = order.token
    assert cart.delivery_quote(order) is None
    with pytest.raises(InputProblems) as heavy:
        await cart.place(order, CheckoutDetails(email="b@example.org", fulfilment="delivery",
                                                address="1 Main Street, Town"), idempotency_key="h" * 24)
    assert "5.2 kg" in heavy.value.errors["fulfilment"] and "under 5 kg" in heavy.value.errors["fulfilment"]
    await db_session.rollback()
    await nothing_placed(db_session)
    # Collecting it instead is fine.
    order = await cart.open_cart(token=token)  # type: ignore[assignment]
    placed = await cart.place(order, CheckoutDetails(email="b@example.org", location="Farm shop",
                                                     slot="Wed 16:00-18:00"), idempotency_key="c" * 24)
    assert (placed.shipping_minor, placed.total_minor, placed.weight_grams) == (0, 3250, 5200)


@pytest.mark.parametrize(("location", "slot", "says"), [
    ("", "", "Choose Market hall or Farm shop."),
    ("Town hall", "Sat 09:00-12:00", "There is no collection point called 'Town hall'"),
    ("Market hall", "", "Choose a time at Market hall (Sat 09:00-12:00 or Sat 12:00-15:00)."),
    ("Market hall", "Wed 16:00-18:00", "'Wed 16:00-18:00' is not a time slot at Market hall"),
    ("Farm shop", "Wed 16:00-18:01", "is not a time slot at Farm shop"),
])
async def test_bad_slots_are_refused_with_nothing_written(db_session: AsyncSession, settings: Settings,
                                                          location: str, slot: str, says: str) -> None:
    await shop(db_session)
    cart = CartService(db_session, settings)
    order = await cart.new_cart()
    await cart.add(order, sku="JAM", quantity="2")
    await db_session.commit()
    token = order.token
    with pytest.raises(InputProblems) as bad:
        await cart.place(order, CheckoutDetails(email="b@example.org", location=location, slot=slot),
                         idempotency_key="s" * 24)
    assert bad.value.status == 422 and says in bad.value.errors["slot"]
    await db_session.rollback()
    await nothing_placed(db_session)
    order = await cart.open_cart(token=token)  # type: ignore[assignment]
    assert order.state == CART
    # The same slot typed with other spacing and case of the location is the configured one.
    placed = await cart.place(order, CheckoutDetails(email="b@example.org", location=" market  HALL ",
                                                     slot="Sat  12:00-15:00"), idempotency_key="t" * 24)
    assert (placed.collection_location, placed.collection_slot) == ("Market hall", "Sat 12:00-15:00")
    text, _html = render_bodies(OutgoingMail(to=placed.email, subject="s", template="cart/receipt",
                                             context=order_context(placed), tag="order"), settings)
    assert "Collection: at Market hall, Sat 12:00-15:00." in text and "VAT 5% included: €0.48" in text


async def test_html_checkout_offers_slots_and_shows_vat(client: Any, engine: AsyncEngine) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await shop(session)
    csrf = CSRF_FIELD.search((await client.get("/account/login")).text).group(1)  # type: ignore[union-attr]
    assert (await client.post("/cart/add", data={"sku": "BREAD", "quantity": "4", "_csrf_token": csrf})
            ).status_code == 303
    page = await client.get("/cart/")
    assert "VAT 20% included: €1.67" in page.text
    assert (await client.post("/cart/checkout", data={"_csrf_token": csrf})).status_code == 303
    form = await client.get("/cart/checkout")
    assert form.status_code == 200
    assert "VAT 20% included: €1.67" in form.text and "Delivery (€7.50)" in form.text  # 1.6 kg
    assert 'value="Market hall|Sat 09:00-12:00"' in form.text and 'value="Farm shop|Wed 16:00-18:00"' in form.text
    key = IDEM.search(form.text).group(1)  # type: ignore[union-attr]
    data = {"_csrf_token": csrf, "idempotency_key": key, "email": "g@example.org", "fulfilment": "collection",
            "payment": "collection", "collection": "Market hall|Sun 09:00-12:00"}
    missing = await client.post("/cart/place", data={k: v for k, v in data.items() if k != "collection"})
    # The summary names the field once, and its link lands on the slots' fieldset.
    assert missing.status_code == 422
    assert ('<a href="#f-slot">Collection point and time: Choose Market hall or Farm shop.</a>' in missing.text
            and 'id="f-slot"' in missing.text and missing.text.count("Choose Market hall or Farm shop.") == 2)
    bad = await client.post("/cart/place", data=data)
    assert bad.status_code == 422 and "is not a time slot at Market hall" in bad.text
    async with maker() as session:
        assert (await session.execute(select(func.count()).select_from(Order)
                                      .where(Order.number.is_not(None)))).scalar_one() == 0
    data["collection"] = "Market hall|Sat 09:00-12:00"
    placed = await client.post("/cart/place", data=data)
    assert placed.status_code == 303, placed.text[:400]
    confirmation = await client.get(placed.headers["location"])
    assert "Collection at Market hall, Sat 09:00-12:00." in confirmation.text
    assert "VAT 20% included: €1.67" in confirmation.text


VAT_LINE = re.compile(r"VAT \d+(?:\.\d+)?% included: €[\d,.]+")


async def test_checkout_review_shows_the_vat_lines_the_order_gets(client: Any, engine: AsyncEngine) -> None:
    """The walk's finding: the review left out delivery's VAT, and said "up to 1 kg" of a band a 1 kg
    order is not in. A 1 kg order (bread 400 g + 2 jam 300 g) is in the [1000, 5000) band."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await shop(session)
    csrf = CSRF_FIELD.search((await client.get("/account/login")).text).group(1)  # type: ignore[union-attr]
    for sku, quantity in (("BREAD", "1"), ("JAM", "2")):
        assert (await client.post("/cart/add", data={"sku": sku, "quantity": quantity, "_csrf_token": csrf})
                ).status_code == 303
    assert (await client.post("/cart/checkout", data={"_csrf_token": csrf})).status_code == 303
    form = (await client.get("/cart/checkout")).text
    assert "(1 kg in this order): under 1 kg €4.50; 1 kg to under 5 kg €7.50." in form
    assert "up to" not in form and "Delivery (€7.50)" in form
    # Collection: 20% of 250 → 41.67 → €0.42; 5% of 1000 → 47.6 → €0.48.
    collection = re.search(r'<ul class="vat muted">(.*?)</ul>', form, re.S)
    assert collection is not None
    assert VAT_LINE.findall(collection[1]) == ["VAT 20% included: €0.42", "VAT 5% included: €0.48"]
    # Delivery adds €7.50 at 20%: (250 + 750) * 20/120 → €1.67; the jam's 5% is unchanged.
    assert "delivery adds €7.50: <strong>€20.00</strong> in all" in form
    reviewed = re.search(r'<ul class="vat muted delivery-vat">(.*?)</ul>', form, re.S)
    assert reviewed is not None
    assert VAT_LINE.findall(reviewed[1]) == ["VAT 20% included: €1.67", "VAT 5% included: €0.48"]
    key = IDEM.search(form).group(1)  # type: ignore[union-attr]
    placed = await client.post("/cart/place", data={
        "_csrf_token": csrf, "idempotency_key": key, "email": "g@example.org", "fulfilment": "delivery",
        "address": "1 Main Street, Town", "payment": "collection"})
    assert placed.status_code == 303, placed.text[:400]
    confirmation = (await client.get(placed.headers["location"])).text
    assert VAT_LINE.findall(confirmation) == VAT_LINE.findall(reviewed[1])
    async with maker() as session:
        order = (await session.execute(select(Order).where(Order.number.is_not(None)))).scalar_one()
        assert (order.shipping_minor, order.total_minor, order.tax_minor) == (750, 2000, 167 + 48)


async def test_api_checkout_with_a_slot(client: Any, engine: AsyncEngine) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await shop(session)
    h = {"X-Cart-Token": (await client.post("/api/cart")).json()["token"]}
    added = await client.post("/api/cart/lines", json={"sku": "JAM", "quantity": 3}, headers=h)
    assert added.status_code == 201
    body = added.json()
    assert (body["total_minor"], body["tax_minor"], body["weight_grams"]) == (1500, 71, 900)  # 1500 * 5/105
    assert body["vat"] == [{"rate": 5.0, "gross_minor": 1500, "vat_minor": 71}]

    fulfilment = {"method": "collection", "location": "Farm shop", "slot": "Sat 09:00-12:00"}
    bad = await client.post("/api/cart/checkout", json={"email": "a@example.org", "fulfilment": fulfilment},
                            headers={**h, "Idempotency-Key": "a" * 20})
    assert bad.status_code == 422, bad.text
    assert "is not a time slot at Farm shop" in bad.text
    async with maker() as session:
        assert (await session.execute(select(func.count()).select_from(Reservation))).scalar_one() == 0
        assert set((await session.execute(select(Order.state))).scalars()) == {CART}
    heavy = await client.post("/api/cart/lines", json={"sku": "BREAD", "quantity": 12}, headers=h)  # +4.8 kg
    assert heavy.status_code == 201
    too_heavy = await client.post("/api/cart/checkout", json={
        "email": "a@example.org", "fulfilment": {"method": "delivery", "address": "1 Main Street"}},
        headers={**h, "Idempotency-Key": "b" * 20})
    assert too_heavy.status_code == 422 and "Choose collection" in too_heavy.text
    fulfilment["slot"] = "Wed 16:00-18:00"
    placed = await client.post("/api/cart/checkout", json={"email": "a@example.org", "fulfilment": fulfilment},
                               headers={**h, "Idempotency-Key": "c" * 20})
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["collection"] == {"location": "Farm shop", "slot": "Wed 16:00-18:00"}
    assert (order["total_minor"], order["shipping_minor"]) == (1500 + 12 * 250, 0)
    # 20%: 3000 * 20/120 = 500; 5%: 71.
    assert order["vat"] == [{"rate": 20.0, "gross_minor": 3000, "vat_minor": 500},
                            {"rate": 5.0, "gross_minor": 1500, "vat_minor": 71}]


async def test_market_tax_class_is_checked(db_session: AsyncSession) -> None:
    user = await member(db_session, "alice")
    user.is_producer = True
    catalogue = CatalogueService(db_session, vat_rates=RATES)
    for typo, says in (("Not a class!", "'Not a class!' is not a tax class name (a short lower-case word)."),
                       ("reducd", "The shop has no VAT rate for the tax class 'reducd'.")):
        with pytest.raises(InputProblems) as bad:
            await catalogue.save(user, ProductInput(title="Odd", tax_class=typo,
                                                    variants=[VariantInput(sku="ODD", price_minor=1)]))
        assert bad.value.status == 422 and bad.value.errors["tax_class"] == (
            f"{says} Choose one of standard, reduced, zero, or leave it empty for the default class.")
    assert (await db_session.execute(select(func.count()).select_from(Product))).scalar_one() == 0
    # No rates configured: every class but the default is refused (none has a rate to sell at).
    bare = CatalogueService(db_session)
    with pytest.raises(InputProblems) as unset:
        await bare.save(user, ProductInput(title="Tea", tax_class="reduced",
                                           variants=[VariantInput(sku="TEA", price_minor=1)]))
    assert "'reduced'" in unset.value.errors["tax_class"]
    assert "only the default class (empty) can be chosen" in unset.value.errors["tax_class"]
    assert (await bare.save(user, ProductInput(title="Plain", tax_class="",
                                               variants=[VariantInput(sku="PLAIN", price_minor=1)]))).tax_class == ""
    product = await catalogue.save(user, ProductInput(title="Tea", tax_class=" Reduced ",
                                                      variants=[VariantInput(sku="TEA", price_minor=1)]))
    assert product.tax_class == "reduced"
    # A form that does not carry the field keeps the class.
    again = await catalogue.save(user, ProductInput(title="Tea", slug=product.slug, variants=[
        VariantInput(id=product.variants[0].id, sku="TEA", price_minor=2)]), product=product)
    assert again.tax_class == "reduced"
