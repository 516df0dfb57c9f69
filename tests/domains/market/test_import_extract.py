"""Listing import, fetching and reading: the three platforms' page shapes and the hostile page
served on loopback, and every refusal from the issue's bad-input list (issue 16 item 7).

These tests need no database: a proposal writes nothing. Saving a reviewed draft is tested in
test_import_save.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpcore
import pytest

from app.safe_http import SafeClient
from domains.market import importer
from domains.market.importer import ImportRefused, fetch_image, fetch_proposal, minor_units, propose
from tests.domains.market.shop_server import FIXTURES, ShopServer, shop_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def shop() -> Iterator[ShopServer]:
    with shop_server() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[SafeClient]:
    async with SafeClient(allow_private=True) as c:  # the test allowance: loopback only
        yield c


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection the guarded client actually opens (after its address checks)."""
    seen: list[tuple[str, int]] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def recording(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        seen.append((host, port))
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", recording)
    return seen


async def test_shopify_product_group_with_variants(shop: ShopServer, client: SafeClient) -> None:
    p = await fetch_proposal(client, shop.url("/shopify.html"))
    assert p.found_in == "json-ld"
    assert p.title == "Heritage Apple Juice"  # the ProductGroup, not the Organization before it
    assert p.brand == "Orchard Lane Farm"
    assert p.description == "Cold-pressed juice from our own **heritage** apples.\n\nNo added sugar. Pasteurised."
    assert [(v.sku, v.options, v.price, v.currency, v.gtin, v.in_stock) for v in p.variants] == [
        ("OLF-JUICE-75-COX", {"size": "75cl", "color": "Cox"}, 450, "GBP", "5012345678900", True),
        ("OLF-JUICE-75-BRA", {"size": "75cl", "color": "Bramley"}, 475, "GBP", "5012345678917", False),
        ("OLF-JUICE-3L-COX", {"size": "3 litre box", "color": "Cox"}, 1500, "GBP", "5012345678924", True),
    ]
    assert p.images[:2] == [shop.url("/cdn/shop/files/juice-front.png?v=1712&width=1920"),
                            shop.url("/cdn/shop/files/juice-box.png?v=1712&width=1920")]
    assert all(i.startswith(shop.origin) for i in p.images)
    assert p.warnings == []


async def test_shopify_product_with_several_offers(shop: ShopServer, client: SafeClient) -> None:
    p = await fetch_proposal(client, shop.url("/shopify_offers.html"))
    assert p.title == "Beeswax Candle" and p.brand == "Hive & Wick"
    assert [(v.sku, v.price, v.currency) for v in p.variants] == [("HW-CANDLE-S", 1200, "EUR"),
                                                                ("HW-CANDLE-L", 2200, "EUR")]
    assert len({tuple(v.options.items()) for v in p.variants}) == 2  # distinct option values
    assert p.images == [shop.url("/products/candle.jpg"), shop.url("/products/candle-lit.jpg")]


async def test_woocommerce_microdata(shop: ShopServer, client: SafeClient) -> None:
    p = await fetch_proposal(client, shop.url("/woocommerce.html"))
    assert p.found_in == "microdata"
    assert p.title == "Wildflower Honey" and p.brand == "Bee Kind Co-op"
    assert p.description == "Our honey is raw and unfiltered.\n\n340 g jar."
    [v] = p.variants
    assert (v.sku, v.gtin, v.price, v.currency, v.in_stock, v.options) == (
        "BK-HONEY-340", "5098765432109", 695, "GBP", True, {})
    assert p.images == [shop.url("/wp-content/uploads/2023/06/honey-600x600.jpg"),
                        shop.url("/wp-content/uploads/2023/06/honey-jar-600x600.jpg")]  # made absolute


async def test_open_graph_only(shop: ShopServer, client: SafeClient) -> None:
    p = await fetch_proposal(client, shop.url("/opengraph.html"))
    assert p.found_in == "opengraph"
    assert p.title == "Hand-thrown mug"
    assert p.description == "Stoneware mug, glazed in ash green & dishwasher safe."
    assert p.images == [shop.url("/static/mug-1.jpg"), shop.url("/static/mug-2.jpg")]
    [v] = p.variants
    assert (v.sku, v.price, v.currency, v.in_stock) == ("CW-MUG-GREEN", 1800, "GBP", True)


async def test_hostile_markup_and_prices(shop: ShopServer, client: SafeClient) -> None:
    p = await fetch_proposal(client, shop.url("/hostile.html"))
    everything = " ".join([p.title, p.description, p.brand, *p.images, *(v.sku for v in p.variants),
                           *(o for v in p.variants for o in v.options.values())]).lower()
    for bad in ("<script", "onerror", "onclick", "onload", "javascript:", "<iframe", "<style", "document.cookie",
                "evil.test", "\x00", "<img", "<svg", "data:"):
        assert bad not in everything, bad
    assert p.title == "Evil Jam"
    assert p.brand == "Evil Co"
    assert "Tasty" in p.description
    assert p.images == [shop.url("/img/jam.png")]  # javascript: and data: images dropped
    assert [(v.sku, v.price) for v in p.variants] == [("EVIL-1", 350), ("EVIL-TAG", 200)]
    reasons = " ".join(p.warnings)
    for sku in ("EVIL-HUGE", "EVIL-NEG", "EVIL-NAN", "EVIL-BIG", "EVIL-CUR", "EVIL-OBJ"):
        assert sku in reasons
    assert "XYZ is not an ISO 4217 currency code" in reasons


async def test_huge_jsonld_is_bounded(shop: ShopServer, client: SafeClient) -> None:
    p = await fetch_proposal(client, shop.url("/huge-jsonld"))
    assert p.title == "Endless Jam"
    assert len(p.variants) == importer.MAX_VARIANTS
    assert len(p.description) <= importer.MAX_DESCRIPTION
    assert any("first 100 were kept" in w for w in p.warnings)


async def test_redirect_is_followed_and_rechecked(shop: ShopServer, client: SafeClient) -> None:
    p = await fetch_proposal(client, shop.url("/redirect-shopify"))
    assert p.title == "Heritage Apple Juice" and p.source_url == shop.url("/shopify.html")


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://127.0.0.1/x", "Only http:// and https://"),
    ("file:///etc/passwd", "Only http:// and https://"),
    ("javascript:alert(1)", "Only http:// and https://"),
    ("http://10.1.2.3/product", "not on the public internet"),
    ("http://169.254.169.254/latest/meta-data/", "not on the public internet"),
    ("http://[fd00::1]/product", "not on the public internet"),
    ("http://[::ffff:192.168.1.1]/product", "not on the public internet"),
    ("http://user:pw@127.0.0.1/product", "not on the public internet"),
])
async def test_refused_before_any_connection(url: str, message: str, client: SafeClient,
                                             connects: list[tuple[str, int]]) -> None:
    with pytest.raises(ImportRefused, match=message):
        await fetch_proposal(client, url)
    assert connects == []


@pytest.mark.parametrize("path", ["/redirect-private", "/redirect-metadata"])
async def test_redirect_to_private_address_refused(path: str, shop: ShopServer, client: SafeClient,
                                                   connects: list[tuple[str, int]]) -> None:
    with pytest.raises(ImportRefused, match="not on the public internet"):
        await fetch_proposal(client, shop.url(path))
    port = int(shop.origin.rsplit(":", 1)[1])
    assert connects == [("127.0.0.1", port)]  # only the shop itself: never the redirect's target


async def test_loopback_refused_without_the_test_allowance(shop: ShopServer,
                                                           connects: list[tuple[str, int]]) -> None:
    async with SafeClient() as production:
        with pytest.raises(ImportRefused, match="not on the public internet"):
            await fetch_proposal(production, shop.url("/shopify.html"))
        with pytest.raises(ImportRefused, match="not on the public internet"):
            await fetch_proposal(production, "http://localhost/shopify.html")
    assert connects == []
    assert shop.hits == []


@pytest.mark.parametrize(("path", "message"), [
    ("/too-large", "larger than 5 MB"),
    ("/json", "not a web page"),
    ("/no-product", "No product was found"),
    ("/missing", "answered with an error \\(404\\)"),
])
async def test_bad_pages_refused(path: str, message: str, shop: ShopServer, client: SafeClient) -> None:
    with pytest.raises(ImportRefused, match=message):
        await fetch_proposal(client, shop.url(path))


async def test_slow_site_refused(shop: ShopServer, client: SafeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "FETCH_DEADLINE", 0.5)  # the server never answers until released
    with pytest.raises(ImportRefused, match="took too long"):
        await fetch_proposal(client, shop.url("/slow"))


async def test_images_fetched_through_the_guarded_client(shop: ShopServer, client: SafeClient) -> None:
    body, ctype = await fetch_image(client, shop.url("/img/jam.png"))
    assert ctype == "image/png" and body.startswith(b"\x89PNG")
    with pytest.raises(ImportRefused, match="not a JPEG, PNG or WebP"):
        await fetch_image(client, shop.url("/shopify.html"))
    with pytest.raises(ImportRefused, match="not on the public internet"):
        await fetch_image(client, "http://10.0.0.1/a.png")


def test_rdfa_product() -> None:
    page = """<html><body vocab="https://schema.org/" typeof="Product">
      <span property="name">Oat <b>Loaf</b></span><img property="image" src="/loaf.jpg">
      <span property="sku">BREAD-1</span>
      <div property="offers" typeof="Offer"><meta property="price" content="3.20">
        <meta property="priceCurrency" content="EUR"></div></body></html>"""
    p = propose(page, "http://127.0.0.1:1/p/loaf")
    assert p.found_in == "rdfa" and p.title == "Oat Loaf"
    assert [(v.sku, v.price, v.currency) for v in p.variants] == [("BREAD-1", 320, "EUR")]
    assert p.images == ["http://127.0.0.1:1/loaf.jpg"]


@pytest.mark.parametrize(("price", "currency", "minor"), [
    ("4.50", "GBP", 450), (4.5, "GBP", 450), ("1,299.99", "USD", 129999), ("1500", "JPY", 1500),
    ("1.2345", "KWD", 1235), (0, "EUR", 0),
])
def test_minor_units(price: object, currency: str, minor: int) -> None:
    assert minor_units(price, currency) == minor


@pytest.mark.parametrize(("price", "currency"), [
    ("-1", "GBP"), ("NaN", "GBP"), ("Infinity", "GBP"), ("1e308", "GBP"), ("12", "XYZ"), ("12", "gbp"),
    (True, "GBP"), (None, "GBP"), ("twelve", "GBP"), ("9" * 40, "GBP"),
])
def test_minor_units_refuses(price: object, currency: str) -> None:
    with pytest.raises(ValueError):
        minor_units(price, currency)


def test_fixture_pages_exist() -> None:
    assert {p.stem for p in FIXTURES.glob("*.html")} >= {"shopify", "woocommerce", "opengraph", "hostile"}
