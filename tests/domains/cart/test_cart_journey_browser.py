"""The buyer's journey in Chromium, with JavaScript on and off: an anonymous visitor adds a product
from its (cached, session-less) page, sees it in the cart, signs in (the session cart merges into
the member's), checks out paying on collection, sees the confirmation, receives the receipt by SMTP
(the aiosmtpd fixture) and finds the order under /account/orders. The same with SumUp configured
against the fake (tests/fakes/sumup.py): its hosted page's Pay button, back to a paid order.

With JavaScript the product page's add-to-cart hole (me.add-to-cart) is swapped in and posts with
htmx: "Added" shows in place (no navigation: a marker on ``window`` survives) and the badge
refreshes on ``HX-Trigger: cart-changed``. Without it the page's GET form leads to the private
/cart/add page, whose POST form (with CSRF) is one click more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp, serve_in_thread
from tests.helpers.browser import DB_KINDS, server_database
from tests.helpers.server import app_server
from tests.helpers.smtp import SMTPServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


def seed(server: Any) -> None:
    async def work(session: AsyncSession) -> None:
        from domains.market.models import Producer
        from domains.market.schemas import ProductInput, StockAdjust, VariantInput
        from domains.market.services import CatalogueService

        producer = Producer(name="Hill Farm", slug="hill-farm", location="Ashby")
        session.add(producer)
        await session.flush()
        catalogue = CatalogueService(session, base_url=server.base_url)
        await catalogue.save(None, ProductInput(
            title="Wildflower Honey", slug="wildflower-honey", status="active", producer_id=producer.id,
            description_md="Raw honey.", variants=[
                VariantInput(sku="HONEY-250", price_minor=500, options={"size": "250 g"}),
                VariantInput(sku="HONEY-500", price_minor=900, options={"size": "500 g"})]))
        for sku, n in (("HONEY-250", 10), ("HONEY-500", 0)):
            await catalogue.adjust_stock(None, StockAdjust(sku=sku, set=n))

    server.in_process(work)


@pytest.fixture(scope="module", params=DB_KINDS)
def shop(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    from tests.app.test_layout_browser import browser_or_skip

    browser_or_skip()
    tmp = tmp_path_factory.mktemp("cart-journey")
    with server_database(request.param) as url, SMTPServer() as smtp, app_server(tmp, database_url=url, extra_env={
        "ROSE_ASH_SMTP_URL": smtp.url, "ROSE_ASH_MAIL_FROM": "Rose Ash <noreply@coop.test>",
        "ROSE_ASH_WORKER_IN_PROCESS": "true",
    }) as server:
        seed(server)
        yield server, smtp


@contextmanager
def sumup_fake() -> Iterator[FakeSumUp]:
    """A fake on a thread and event loop of its own, over real HTTP on 127.0.0.1: one per server,
    since each server's order numbers (the checkout references) start again."""
    with serve_in_thread() as fake:
        yield fake


@pytest.fixture(scope="module", params=DB_KINDS)
def sumup_shop(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    from tests.app.test_layout_browser import browser_or_skip

    browser_or_skip()
    tmp = tmp_path_factory.mktemp("cart-journey-sumup")
    with sumup_fake() as fake, server_database(request.param) as url, SMTPServer() as smtp, \
            app_server(tmp, database_url=url, extra_env={
        "ROSE_ASH_SMTP_URL": smtp.url, "ROSE_ASH_MAIL_FROM": "Rose Ash <noreply@coop.test>",
        "ROSE_ASH_WORKER_IN_PROCESS": "true", "ROSE_ASH_SUMUP_API_URL": fake.public_url,
        "ROSE_ASH_SUMUP_API_KEY": API_KEY, "ROSE_ASH_SUMUP_MERCHANT_CODE": MERCHANT_CODE,
    }) as server:
        seed(server)
        yield server, smtp, fake


def navigate(page: Any, click: str, condition: str) -> None:
    """Click ``click`` (a selector) and wait for the next page (the marker proves the navigation)."""
    page.eval("window.__old = true")
    page.eval(f"document.querySelector({json.dumps(click)}).click()")
    page.wait_for(f"window.__old === undefined && document.readyState === 'complete' && ({condition})")


def text(page: Any) -> str:
    return str(page.eval("document.body.innerText"))


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_add_from_product_page_to_order(shop: Any, tmp_path: Path, browser_binary: str, javascript: bool) -> None:
    journey(shop, tmp_path, browser_binary, javascript, "collection")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_add_from_product_page_to_order_paid_by_sumup(sumup_shop: Any, tmp_path: Path, browser_binary: str,
                                                      javascript: bool) -> None:
    server, smtp, fake = sumup_shop
    journey((server, smtp), tmp_path, browser_binary, javascript, "sumup")
    assert fake.checkouts and all(c["status"] == "PAID" for c in fake.checkouts.values())


def journey(shop: Any, tmp_path: Path, browser_binary: str, javascript: bool, payment: str) -> None:
    from tests.helpers.cdp import chromium

    server, smtp = shop
    mode = "js" if javascript else "nojs"
    username = f"buyer{mode}"
    server.create_user(username, PASSWORD, email=f"{username}@example.org")
    before = len(smtp.received)
    with chromium(tmp_path, browser_binary) as page:
        page.set_javascript(javascript)
        page.goto(server.base_url + "/market/wildflower-honey?variant=HONEY-500")
        # Out of stock: no add control at all.
        assert "Out of stock" in text(page)
        assert page.eval("document.querySelector('.add-to-cart-button')") is None
        if javascript:
            # Choosing the variant in stock swaps the offer block in, and its hole loads at once.
            page.eval("document.querySelector('input[name=variant][value=\"HONEY-250\"]').click()")
            page.wait_for("location.search === '?variant=HONEY-250'")
            # The hole is swapped for the visitor's own POST form (with its CSRF token).
            page.wait_for("document.querySelector('#add-to-cart form[method=post] input[name=_csrf_token]') !== null")
            # ... and htmx has processed the swapped-in form (its hx-post is bound).
            page.wait_for("(document.querySelector('#add-to-cart form')['htmx-internal-data'] || {}).initHash"
                          " !== undefined"
                          " && !document.querySelector('#add-to-cart').classList.contains('htmx-settling')")
            page.eval("window.__marker = 1")
            page.eval("document.querySelector('#add-to-cart .add-quantity').value = '2';"
                      "document.querySelector('#add-to-cart .add-to-cart-button').click()")
            page.wait_for("document.querySelector('#add-to-cart .added') !== null")
            assert "Added Wildflower Honey (250 g) to your cart." in page.eval(
                "document.querySelector('#add-to-cart').innerText")
            assert page.eval("window.__marker") == 1  # in place, no navigation
            assert page.eval("location.pathname + location.search") == "/market/wildflower-honey?variant=HONEY-250"
            page.wait_for("document.querySelector('#cart-badge .badge') && "
                          "document.querySelector('#cart-badge .badge').textContent === '2'")
            page.goto(server.base_url + "/cart/")
        else:
            page.goto(server.base_url + "/market/wildflower-honey")
            assert page.eval("typeof htmx") == "undefined"
            page.eval("document.querySelector('#add-to-cart .add-quantity').value = '2'")
            navigate(page, "#add-to-cart .add-to-cart-button", "location.pathname === '/cart/add'")
            assert page.eval("location.search") == "?sku=HONEY-250&quantity=2"
            assert "Wildflower Honey (250 g)" in text(page)
            navigate(page, "form.add-confirm button[type=submit]", "location.pathname === '/cart/'")
            assert "Added Wildflower Honey (250 g) to your cart." in text(page)
        assert page.eval("document.querySelector('#cart input[name=quantity]').value") == "2"
        assert "HONEY-250" in text(page)

        # Sign in: the session's cart becomes the member's.
        page.goto(server.base_url + "/account/login?next=/cart/")
        page.eval(f"document.querySelector('input[name=login]').value = {json.dumps(username)};"
                  f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)}")
        navigate(page, "form[action^='/account/login'] button[type=submit]", "location.pathname === '/cart/'")
        assert page.eval("document.querySelector('#cart input[name=quantity]').value") == "2"
        if javascript:
            page.wait_for("document.querySelector('#cart-badge .badge') && "
                          "document.querySelector('#cart-badge .badge').textContent === '2'")

        navigate(page, "form[action='/cart/checkout'] button[type=submit]", "location.pathname === '/cart/checkout'")
        assert page.eval("document.querySelector('input[name=email]').value") == f"{username}@example.org"
        if payment == "collection":
            assert page.eval("document.querySelector('input[name=payment][value=collection]').checked")
            navigate(page, "form[action='/cart/place'] button[type=submit]",
                     "location.pathname.startsWith('/cart/order/')")
        else:
            page.eval("document.querySelector('input[name=payment][value=sumup]').click()")
            navigate(page, "form[action='/cart/place'] button[type=submit]", "location.pathname.startsWith('/pay/')")
            assert "Pay 10.00 EUR" in text(page)  # the fake's hosted page
            navigate(page, "button[name=action][value=pay]", "location.pathname.startsWith('/cart/order/')")
            assert page.eval("location.origin") == server.base_url
        heading = str(page.eval("document.querySelector('h1').innerText"))
        assert heading.startswith("Order ")
        number = heading.removeprefix("Order ").strip()
        body = text(page)
        assert "€10.00" in body
        if payment == "collection":
            assert f"Thank you! Your order is {number}." in body and "pay when you collect" in body
        else:
            assert "Thank you: your payment is confirmed." in body
            assert page.eval("document.querySelector('.order-state').innerText") == "paid"

        received = smtp.wait_for(before + 1)
        receipts = [r for r in received if number in str(r.message["Subject"])]
        assert len(receipts) == 1
        mail = receipts[0].message
        assert mail["To"].addresses[0].addr_spec == f"{username}@example.org"
        assert number in mail.get_body(preferencelist=("plain",)).get_content()

        page.goto(server.base_url + "/account/orders/")
        assert number in text(page)
        if javascript:  # the cart is empty again: the badge has no count
            page.wait_for("document.querySelector('#cart-badge') && !document.querySelector('#cart-badge .badge')")
