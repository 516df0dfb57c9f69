"""The variant picker and the search box in Chromium, with JavaScript on and off (issue 16, Tests).

With JavaScript, choosing a variant swaps only the offer block (no navigation: a marker on
``window`` survives) and the address bar follows the choice; typing in the search box updates the
results after the debounce. Without it, the same controls are plain GET forms: the page reloads
with ``?variant=`` and the search submits. Screenshots at 1280 and 390 px are kept under the
test's tmp_path (``screenshots/``) for a person to look at.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.server import app_server

pytestmark = pytest.mark.e2e

WIDTHS = ((1280, False), (390, True))


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (1200, 900), colour)
    draw = ImageDraw.Draw(image)
    for i in range(0, 1200, 60):
        draw.ellipse((i, 300 + (i % 180), i + 120, 420 + (i % 180)), fill=(250, 200, 60))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def seed(server: Any) -> None:
    async def work(session: AsyncSession) -> None:
        from domains.market.models import Category, Producer
        from domains.market.schemas import ProductInput, StockAdjust, VariantInput
        from domains.market.services.catalogue import CatalogueService
        from domains.market.services.media import MediaService

        producer = Producer(name="Hill Farm", slug="hill-farm", location="Ashby")
        category = Category(name="Honey & Preserves", slug="preserves")
        session.add_all([producer, category])
        await session.flush()
        catalogue = CatalogueService(session, base_url=server.base_url)
        honey = await catalogue.save(None, ProductInput(
            title="Wildflower Honey", slug="wildflower-honey", status="active", featured=True,
            description_md="Raw and unfiltered honey from the meadow by the river. **Spoon it, spread it.**",
            tags=["honey", "local"], producer_id=producer.id, category_ids=[category.id], variants=[
                VariantInput(sku="HONEY-250", price_minor=500, options={"size": "250 g"}, barcode="4006381333931"),
                VariantInput(sku="HONEY-500", price_minor=900, options={"size": "500 g"}),
                VariantInput(sku="HONEY-1000", price_minor=1600, options={"size": "1 kg"}, compare_at_minor=1800,
                             low_stock_threshold=3)]))
        media = MediaService(session, server.data_dir)
        for colour, alt in (((150, 90, 20), "A jar of honey"), ((90, 130, 60), "The meadow")):
            stored = await media.store(_jpeg(colour), filename="honey.jpg", content_type="image/jpeg")
            await catalogue.add_image(None, honey, stored, alt=alt)
        for i, title in enumerate(("Heather Honey", "Honey Cake", "Beeswax Candle")):
            await catalogue.save(None, ProductInput(
                title=title, status="active", producer_id=producer.id, tags=["honey"] if i < 2 else ["wax"],
                variants=[VariantInput(sku=f"EXTRA-{i}", price_minor=700 + 100 * i)]))
        for sku, n in (("HONEY-250", 12), ("HONEY-500", 0), ("HONEY-1000", 2), ("EXTRA-0", 5), ("EXTRA-1", 5)):
            await catalogue.adjust_stock(None, StockAdjust(sku=sku, set=n))

    server.in_process(work)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.app.test_layout_browser import browser_or_skip

    browser_or_skip()
    tmp = tmp_path_factory.mktemp("market-browser")
    with app_server(tmp, extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server:
        seed(server)
        yield server


def shoot(page: Any, path: Path, width: int) -> None:
    size = page.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                     clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 4000), "scale": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def at_width(page: Any, width: int, mobile: bool) -> None:
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1, mobile=mobile)
    page.wait_for(f"matchMedia('(width: {width}px)').matches")


OFFER = "document.querySelector('#offer .price').textContent.trim() + ' | ' + " \
        "document.querySelector('#offer .availability').textContent.trim()"


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_variant_picker(market: Any, tmp_path: Path, javascript: bool) -> None:
    from tests.app.test_layout_browser import browser_or_skip
    from tests.helpers.cdp import chromium

    with chromium(tmp_path, browser_or_skip()) as page:
        page.set_javascript(javascript)
        for width, mobile in WIDTHS:
            at_width(page, width, mobile)
            page.goto(market.base_url + "/market/wildflower-honey")
            assert page.eval(OFFER) == "€5.00 | In stock"
            # The first image comes with its srcset of resized copies.
            srcset = page.eval("document.querySelector('.product-image').getAttribute('srcset')")
            assert srcset.count("w,") >= 1 and "320w" in srcset
            assert page.eval("document.documentElement.scrollWidth <= innerWidth")
            ld = json.loads(page.eval("document.querySelector('script[type=\"application/ld+json\"]').textContent"))
            assert {o["sku"]: o["availability"].rsplit("/", 1)[1] for o in ld["offers"]} == {
                "HONEY-250": "InStock", "HONEY-500": "OutOfStock", "HONEY-1000": "InStock"}
            mode = "js" if javascript else "nojs"
            shoot(page, tmp_path / "screenshots" / f"product-{width}-{mode}.png", width)
            page.eval("window.__marker = 1")
            page.eval("document.querySelector('input[name=variant][value=\"HONEY-500\"]').click()")
            if javascript:
                # htmx swaps the offer in place: same document (the marker survives), new URL.
                page.wait_for("document.querySelector('#offer .price').dataset.sku === 'HONEY-500'")
                assert page.eval("window.__marker") == 1
                page.wait_for("location.search === '?variant=HONEY-500'")
            else:
                assert page.eval("document.querySelector('#offer .price').dataset.sku") == "HONEY-250"
                page.eval("document.querySelector('.variant-picker button[type=submit]').click()")
                page.wait_for("location.search === '?variant=HONEY-500' && document.readyState === 'complete'")
                assert page.eval("window.__marker") is None  # a real page load
            assert page.eval(OFFER) == "€9.00 | Out of stock"
            shoot(page, tmp_path / "screenshots" / f"product-chosen-{width}-{mode}.png", width)
            page.eval("document.querySelector('input[name=variant][value=\"HONEY-1000\"]').click()")
            if not javascript:
                page.eval("document.querySelector('.variant-picker button[type=submit]').click()")
            page.wait_for("document.querySelector('#offer .price') && "
                          "document.querySelector('#offer .price').dataset.sku === 'HONEY-1000'")
            assert page.eval(OFFER) == "€16.00 | Only 2 left"
    print("screenshots:", tmp_path / "screenshots")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_search_box(market: Any, tmp_path: Path, javascript: bool) -> None:
    from tests.app.test_layout_browser import browser_or_skip
    from tests.helpers.cdp import chromium

    results = "[...document.querySelectorAll('#search-results .product-card-title a')].map(a => a.textContent)"
    with chromium(tmp_path, browser_or_skip()) as page:
        page.set_javascript(javascript)
        for width, mobile in WIDTHS:
            at_width(page, width, mobile)
            page.goto(market.base_url + "/market/search")
            assert len(page.eval(results)) == 4
            page.eval("window.__marker = 1")
            if javascript:
                # Typing: input events; htmx waits for the 300 ms pause, then swaps the results.
                page.eval("const q = document.querySelector('#market-q'); q.focus(); q.value = 'hon';"
                          "q.dispatchEvent(new Event('input', {bubbles: true}))")
                page.wait_for(f"JSON.stringify({results}) === "
                              + json.dumps(json.dumps(["Wildflower Honey", "Honey Cake", "Heather Honey"],
                                                      separators=(",", ":"))), timeout=10)
                assert page.eval("window.__marker") == 1
                page.wait_for("location.search === '?q=hon'")
            else:
                page.eval("document.querySelector('#market-q').value = 'hon';"
                          "document.querySelector('.market-search button[type=submit]').click()")
                page.wait_for("location.search.startsWith('?q=hon') && document.readyState === 'complete'")
                assert page.eval("window.__marker") is None
            found = page.eval(results)
            assert sorted(found) == ["Heather Honey", "Honey Cake", "Wildflower Honey"]
            assert found[0] == "Wildflower Honey"  # title and tag and description
            assert page.eval("document.documentElement.scrollWidth <= innerWidth")
            shoot(page, tmp_path / "screenshots" / f"search-{width}-{'js' if javascript else 'nojs'}.png", width)
        at_width(page, 1280, False)
        page.goto(market.base_url + "/market/")
        shoot(page, tmp_path / "screenshots" / f"index-1280-{'js' if javascript else 'nojs'}.png", 1280)
        at_width(page, 390, True)
        page.goto(market.base_url + "/market/")
        assert page.eval("document.documentElement.scrollWidth <= innerWidth")
        shoot(page, tmp_path / "screenshots" / f"index-390-{'js' if javascript else 'nojs'}.png", 390)


def test_axe_finds_no_serious_violation_on_the_market_pages(market: Any, tmp_path: Path) -> None:
    """The market's public pages (and the market page form) pass axe-core with no serious or critical
    violation, at both widths; the page is loaded without scripts, as the layout test does."""
    from tests.app.test_layout_browser import AXE, AXE_RUN, SERIOUS, browser_or_skip, sign_in
    from tests.helpers.cdp import chromium

    if not AXE.exists():
        pytest.skip("axe-core is not installed (make install, with npm)")
    market.create_user("ada", "correct horse battery staple", admin=True)
    source = AXE.read_text()
    found: list[str] = []
    paths = ["/market/", "/market/wildflower-honey", "/market/search?q=honey", "/market/category/preserves",
             "/market/producer/hill-farm", "/market/pages/", "/market/admin/pages/new"]
    with chromium(tmp_path, browser_or_skip()) as page:
        sign_in(page, market, "ada")
        for width, mobile in WIDTHS:
            at_width(page, width, mobile)
            for path in paths:
                page.set_javascript(False)
                page.goto(market.base_url + path)
                assert page.eval("performance.getEntriesByType('navigation')[0].responseStatus") == 200, path
                page.set_javascript(True)
                page.call("Runtime.evaluate", expression=source)
                for v in json.loads(page.eval(AXE_RUN % json.dumps(list(SERIOUS)))):
                    found.append(f"{path} at {width}px: {v['id']} [{v['impact']}] {v['help']} {v['nodes']}")
    assert not found, "\n".join(found)
