"""The main pages in Chromium at desktop and phone width, with JavaScript on and off (issue 14,
items 5 and 6 and the Tests section):

- nothing overflows the viewport: ``document.documentElement.scrollWidth <= innerWidth``;
- at 390 px the header is one row (logo, Menu button, account menu) and the Menu opens the nav
  without JavaScript, every link inside the viewport;
- axe-core (tests/interop/axe, pinned, installed by ``make install``) finds no ``serious`` or
  ``critical`` violation.

Screenshots of every page at both widths are kept under the test's tmp_path (not committed).
The world: an administrator who is also an author, a published post, a public repository, a note
mentioning another member. ``PAGES`` is the one list of pages; ``MAY_BE_ABSENT`` are pages whose
domain may not be installed yet (skipped while they answer 404).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.browser import submit
from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
POST_SLUG = "a-post-for-the-checks"
AXE = Path(__file__).resolve().parents[1] / "interop" / "axe" / "node_modules" / "axe-core" / "axe.min.js"

# (name, path): ``{embed}`` and ``{note}`` are filled from the world. Add pages here.
PAGES: tuple[tuple[str, str], ...] = (
    ("home", "/"),
    ("blog-index", "/blog/"),
    ("post", f"/blog/{POST_SLUG}"),
    ("editor", "/blog/admin/new"),
    ("forge-index", "/forge/"),
    ("repository", "/forge/ada/garden"),
    ("social-home", "/social/"),
    ("social-local", "/social/local"),
    ("social-federated", "/social/federated"),
    ("social-note", "/social/notes/{note}"),
    ("social-notifications", "/social/notifications"),
    ("account", "/account"),
    ("tokens", "/account/settings/tokens"),
    ("embed-index", "/embed"),
    ("embed", "/embed/{embed}/frame"),
    ("admin", "/admin"),
    ("market-admin-new", "/market/admin/new"),
    ("market-admin", "/market/admin/"),
    ("cart", "/cart/"),
    ("order", "/cart/order/{order}"),
)
MAY_BE_ABSENT = frozenset({"/admin"})
WIDTHS = ((1280, False), (390, True))
SERIOUS = ("serious", "critical")
# The personal holes are filled (an embed frame has none).
HOLES_FILLED = "document.readyState === 'complete' && !document.querySelector('#account-menu[hx-get]')"


def browser_or_skip() -> str:
    from tests.helpers.cdp import chromium_path

    path = chromium_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI but is not installed")
        pytest.skip("chromium is not installed")
    return path


def sign_in(page: Any, server: AppServer, username: str) -> None:
    page.goto(server.base_url + "/account/login")
    page.eval(f"document.querySelector('input[name=login]').value = {json.dumps(username)};"
              f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
              "document.querySelector('form[action=\"/account/login\"] button[type=submit]').click()")
    page.wait_for("location.pathname === '/account' && document.readyState === 'complete'")


class World:
    def __init__(self, server: AppServer, values: dict[str, str]) -> None:
        self.server, self.values = server, values

    def pages(self) -> list[tuple[str, str]]:
        return [(name, path.format(**self.values)) for name, path in PAGES]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One server and one set of content for every check (the pages only read it)."""
    from tests.helpers.cdp import chromium

    binary = browser_or_skip()
    tmp_path = tmp_path_factory.mktemp("layout-world")
    with app_server(tmp_path, extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            chromium(tmp_path, binary) as page:
        for name, extra in (("ada", ["--admin"]), ("bob", [])):
            server.cli("users", "create", "--username", name, "--email", f"{name}@example.org",
                       "--password", PASSWORD, *extra)
        server.cli("blog", "grant-author", "ada")
        page.set_javascript(False)
        sign_in(page, server, "ada")
        page.goto(server.base_url + "/blog/admin/new")
        submit(page, {"#f-title": "A post for the checks", "#f-markdown": "Some *text*, a [link](/), and code:\n\n"
                      "    print('a line of code long enough to need scrolling on a phone, inside its box')",
                      "#f-tags": "News"},
               "button[name=action][value=publish]", "document.querySelector('.flash-success') !== null")
        page.goto(server.base_url + "/forge/new")
        submit(page, {"input[name=name]": "garden"}, "form[action=\"/forge/new\"] button[type=submit]",
               "location.pathname === '/forge/ada/garden'")
        page.goto(server.base_url + "/social/")
        submit(page, {"#f-content": "Hello @bob, this is the timeline at phone width: "
                      "https://example.org/" + "averylongpathsegment" * 6},
               "form[action=\"/social/compose\"] button[type=submit]",
               "document.querySelector('article.note') !== null")
        note = str(page.eval("document.querySelector('article.note').id")).removeprefix("note-")
        page.goto(server.base_url + "/embed")
        embed = str(page.eval("document.querySelector('rose-ash-embed').getAttribute('src')")).removeprefix("/embed/")
        order = server.in_process(lambda session: seed_cart(session, server))
        yield World(server, {"note": note, "embed": embed, "order": order})


async def seed_cart(session: Any, server: AppServer) -> str:
    """ada's cart with two lines of long titles, and an order of hers with delivery (its token):
    the tables whose totals were cut at 390 px."""
    from sqlalchemy import select

    from app.settings import Settings
    from domains.account.models import User
    from domains.cart.services import CartService, CheckoutDetails
    from domains.market.models import Producer
    from domains.market.schemas import ProductInput, StockAdjust, VariantInput
    from domains.market.services import CatalogueService

    producer = Producer(name="Hill Farm", slug="hill-farm", location="Ashby")
    session.add(producer)
    await session.flush()
    catalogue = CatalogueService(session, base_url=server.base_url)
    await catalogue.save(None, ProductInput(
        title="Heritage wildflower honey from the hill meadows", slug="hill-honey", status="active",
        producer_id=producer.id, description_md="Raw honey.", variants=[
            VariantInput(sku="HONEY-LONG-250", price_minor=1250, options={"size": "250 g"}),
            VariantInput(sku="HONEY-LONG-500", price_minor=99900, options={"size": "500 g"})]))
    for sku in ("HONEY-LONG-250", "HONEY-LONG-500"):
        await catalogue.adjust_stock(None, StockAdjust(sku=sku, set=50))
    ada = (await session.execute(select(User).where(User.username == "ada"))).scalar_one()
    cart = CartService(session, Settings.from_env(server.env))
    order = await cart.new_cart(user_id=ada.id)
    await cart.add(order, sku="HONEY-LONG-250", quantity="12")
    await cart.add(order, sku="HONEY-LONG-500", quantity="3")
    await cart.start_checkout(order)
    placed = await cart.place(order, CheckoutDetails(email="ada@example.org", fulfilment="delivery",
                                                     address="1 Garden Row\nRosetown"),
                              idempotency_key="layout-order-000000001", actor_id=ada.id)
    again = await cart.new_cart(user_id=ada.id)
    await cart.add(again, sku="HONEY-LONG-250", quantity="2")
    await cart.add(again, sku="HONEY-LONG-500", quantity="11")
    return str(placed.token)


def at_width(page: Any, width: int, mobile: bool) -> None:
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1, mobile=mobile)
    page.wait_for(f"matchMedia('(width: {width}px)').matches")


def screenshot(page: Any, path: Path, width: int) -> None:
    size = page.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                     clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 6000), "scale": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def visit(page: Any, world: World, path: str, javascript: bool) -> bool:
    """Open a page as ada; False when it is one that may not exist yet and doesn't."""
    page.goto(world.server.base_url + path)
    status = page.eval("performance.getEntriesByType('navigation')[0].responseStatus")
    if status == 404 and path in MAY_BE_ABSENT:
        return False
    assert status == 200, (path, status)
    if javascript:
        page.wait_for(HOLES_FILLED)
    return True


# Elements wider than the viewport (the culprits when the page scrolls sideways).
WIDE_JS = """JSON.stringify([...document.querySelectorAll('body *')].filter(e => {
  const r = e.getBoundingClientRect(); return r.width > 0 && r.right > %d + 0.5;
}).slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
  (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '') +
  ' right=' + Math.round(e.getBoundingClientRect().right)))"""


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_no_page_overflows_and_the_phone_header_is_one_row(world: World, tmp_path: Path, javascript: bool) -> None:
    from tests.helpers.cdp import chromium

    problems: list[str] = []
    checked = 0
    with chromium(tmp_path, browser_or_skip()) as page:
        page.set_javascript(javascript)
        sign_in(page, world.server, "ada")
        for width, mobile in WIDTHS:
            at_width(page, width, mobile)
            for name, path in world.pages():
                if not visit(page, world, path, javascript):
                    continue
                checked += 1
                # A phone (mobile emulation) widens its layout viewport to the content and zooms out,
                # so innerWidth alone would hide the overflow: both must stay at the device's width.
                scroll, inner = page.eval("[document.documentElement.scrollWidth, innerWidth]")
                if scroll > inner or inner > width:
                    problems.append(f"{name} ({path}) at {width}px: scrollWidth {scroll}, innerWidth {inner}; "
                                    f"too wide: {page.eval(WIDE_JS % width)}")
                screenshot(page, tmp_path / "screenshots" / f"{name}-{width}-{'js' if javascript else 'nojs'}.png",
                           width)
        # At phone width the header is one row, and its Menu shows the nav (no script needed).
        at_width(page, 390, True)
        visit(page, world, "/", javascript)
        rows = page.eval("""(() => {
          const tops = ['.brand', '.nav-toggle-label', '#account-menu'].map(s => document.querySelector(s));
          const shown = tops.map(e => !!e && e.checkVisibility());
          if (shown.includes(false)) return 'missing: ' + shown;
          const r = tops.map(e => e.getBoundingClientRect());
          return r.every(b => b.top < r[0].bottom && b.bottom > r[0].top) ? 'one row' : JSON.stringify(r);
        })()""")
        assert rows == "one row", rows
        assert page.eval("document.querySelector('.site-nav').checkVisibility()") is False
        page.eval("document.querySelector('.nav-toggle-label').click()")
        page.wait_for("document.querySelector('.site-nav').checkVisibility()")
        links = page.eval("[...document.querySelectorAll('.site-nav a')].map(a => {"
                          " const r = a.getBoundingClientRect();"
                          " return [a.textContent, r.width > 0 && r.left >= 0 && r.right <= innerWidth]; })")
        assert links and all(inside for _label, inside in links), links
        assert page.eval("document.documentElement.scrollWidth <= innerWidth && innerWidth === 390")
        screenshot(page, tmp_path / "screenshots" / f"menu-open-390-{'js' if javascript else 'nojs'}.png", 390)
    assert checked >= 2 * (len(PAGES) - len(MAY_BE_ABSENT))
    assert not problems, "\n".join(problems)


AXE_RUN = """axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(
  r.violations.filter(v => %s.includes(v.impact)).map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' — ' +
      (n.failureSummary || '').split('\\n').slice(1).join(' '))}))))"""


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_axe_finds_no_serious_violation_on_the_main_pages(world: World, tmp_path: Path, javascript: bool) -> None:
    from tests.helpers.cdp import chromium

    if not AXE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{AXE} is missing: `make install` installs tests/interop/axe")
        pytest.skip("axe-core is not installed (make install, with npm)")
    source = AXE.read_text()
    found: list[str] = []
    checked = 0
    with chromium(tmp_path, browser_or_skip()) as page:
        page.set_javascript(javascript)
        sign_in(page, world.server, "ada")
        for width, mobile in WIDTHS:
            at_width(page, width, mobile)
            for name, path in world.pages():
                if not visit(page, world, path, javascript):
                    continue
                # The page has loaded as it does without scripts (htmx never ran); axe itself needs
                # timers, so scripts are back on while it runs, and off again for the next page.
                page.set_javascript(True)
                page.call("Runtime.evaluate", expression=source)
                violations = json.loads(page.eval(AXE_RUN % json.dumps(list(SERIOUS))))
                page.set_javascript(javascript)
                checked += 1
                for v in violations:
                    nodes = "\n      ".join(v["nodes"])
                    found.append(f"{name} ({path}) at {width}px: {v['id']} [{v['impact']}] {v['help']}\n      {nodes}")
    assert checked >= 2 * (len(PAGES) - len(MAY_BE_ABSENT))
    assert not found, f"{len(found)} serious or critical axe violations:\n" + "\n".join(found)


def test_the_page_list_names_the_pages_the_issue_asks_for() -> None:
    paths = {re.sub(r"\{\w+\}", "x", p) for _n, p in PAGES}
    for wanted in ("/", "/blog/", "/blog/admin/new", "/forge/", "/social/", "/social/local", "/social/federated",
                   "/account", "/account/settings/tokens", "/embed/x/frame", "/admin"):
        assert wanted in paths, wanted


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_site_name_is_shown_whole_when_signed_out(world: World, tmp_path: Path, javascript: bool) -> None:
    """Signed out, the header holds the brand, Menu, the cart and "Sign in" (and "Sign up" above
    420 px): at 390 px the site name must still fit (it was cut to "Ro…"), at 1280 px too, nothing
    overflows, and the Menu button, its icon only on phones, is still called "Menu"."""
    from tests.helpers.cdp import chromium

    with chromium(tmp_path, browser_or_skip()) as page:
        page.set_javascript(javascript)
        for width, mobile in WIDTHS:
            at_width(page, width, mobile)
            for path in ("/", "/market/", "/account/login"):
                page.goto(world.server.base_url + path)
                if javascript:
                    page.wait_for("document.readyState === 'complete' && "
                                  "!document.querySelector('#account-menu[hx-get]')")
                brand = page.eval("""(() => { const b = document.querySelector('.brand');
                  const r = b.getBoundingClientRect();
                  return [b.textContent.trim(), b.scrollWidth <= b.clientWidth, r.left >= 0 && r.right <= innerWidth,
                          document.documentElement.scrollWidth <= innerWidth]; })()""")
                assert brand[0].endswith("Rose Ash"), brand
                assert brand[1:] == [True, True, True], (path, width, brand)
                assert page.eval("document.querySelector('.nav-toggle-label').textContent.trim()").endswith("Menu")
                screenshot(page, tmp_path / "screenshots" / f"signed-out{path.replace('/', '_')}-{width}.png", width)



# Every total of the cart's and the order's tables: its text, whether it is shown whole (not cut by
# its box), and whether it lies inside the viewport; and the cart's Remove buttons likewise.
TOTALS_JS = """JSON.stringify([...document.querySelectorAll('.table-stack .cell-total, .table-stack button')]
  .map(e => { const r = e.getBoundingClientRect();
    return [e.textContent.trim(), e.scrollWidth <= e.clientWidth + 1 && r.width > 0,
            r.left >= 0 && r.right <= innerWidth + 0.5]; }))"""


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_cart_and_an_order_fit_a_phone_with_their_totals_whole(world: World, tmp_path: Path,
                                                                     javascript: bool) -> None:
    """At 390 px the cart (two lines) and an order (with delivery) stack their lines: nothing wider
    than the viewport, every total shown whole ("€1,250.00", not "€"), Remove on screen."""
    from tests.helpers.cdp import chromium

    with chromium(tmp_path, browser_or_skip()) as page:
        page.set_javascript(javascript)
        sign_in(page, world.server, "ada")
        at_width(page, 390, True)
        for name, path in (("cart", "/cart/"), ("order", f"/cart/order/{world.values['order']}")):
            assert visit(page, world, path, javascript)
            scroll, inner = page.eval("[document.documentElement.scrollWidth, innerWidth]")
            assert scroll <= inner == 390, (name, scroll, inner, page.eval(WIDE_JS % 390))
            cells = json.loads(page.eval(TOTALS_JS))
            totals = [text for text, _whole, _inside in cells if text.startswith("€")]
            # Two lines and the subtotal (the order: and delivery, and the total).
            assert len(totals) >= 3, (name, cells)
            assert all(re.fullmatch(r"€[\d,]+\.\d\d", text) for text in totals), (name, totals)
            assert all(whole and inside for _text, whole, inside in cells), (name, cells)
            if name == "cart":
                assert {"€25.00", "€10,989.00", "€11,014.00"} <= set(totals), totals
                assert [t for t, _w, _i in cells].count("Remove") == 2, cells
            else:
                assert {"€150.00", "€2,997.00", "€3,147.00"} <= set(totals), totals
            screenshot(page, tmp_path / "screenshots" / f"{name}-390-{'js' if javascript else 'nojs'}.png", 390)


HEADER_JS = """(() => {
  const parts = ['.brand', '.nav-toggle-label', '#cart-badge', '#account-menu'].map(s => document.querySelector(s));
  if (parts.includes(null)) return 'missing';
  const r = parts.map(e => e.getBoundingClientRect()).filter(b => b.width > 0);  // no Menu button when wide
  const brand = parts[0];
  return JSON.stringify({brand: brand.scrollWidth <= brand.clientWidth, text: brand.textContent.trim(),
    inside: r.every(b => b.left >= 0 && b.right <= innerWidth + 0.5),
    row: r.every(b => b.top < r[0].bottom && b.bottom > r[0].top),
    apart: r.every((b, i) => i === 0 || r[i - 1].right <= b.left + 0.5 || r[i - 1].left >= b.right - 0.5),
    cartHeight: parts[2].getBoundingClientRect().height, brandHeight: r[0].height,
    widths: r.map(b => Math.round(b.width)), scroll: document.documentElement.scrollWidth});
})()"""


def test_the_signed_in_header_fits_a_phone_with_items_in_the_cart(world: World, tmp_path: Path) -> None:
    """Signed in, with 13 items in the cart, at 390 px: the site name whole ("Rose …" before), the
    cart one icon and count on one line ("Cart 2" wrapped), its name still "Cart, 13 items"."""
    from tests.helpers.cdp import chromium

    with chromium(tmp_path, browser_or_skip()) as page:
        sign_in(page, world.server, "ada")
        for width, mobile in ((390, True), (1280, False)):
            at_width(page, width, mobile)
            for path in ("/", "/cart/"):
                visit(page, world, path, True)
                page.wait_for("document.querySelector('#cart-badge .badge') !== null")
                got = json.loads(page.eval(HEADER_JS))
                assert got["text"].endswith("Rose Ash") and got["brand"], (width, path, str(got))
                assert got["inside"] and got["row"] and got["apart"], (width, path, str(got))
                assert got["cartHeight"] <= got["brandHeight"] * 1.6, (width, path, got)  # one line, not two
                assert got["scroll"] <= width, (width, path, got)
                name = page.eval("document.querySelector('#cart-badge').textContent.replace(/\\s+/g, ' ').trim()")
                assert name == "Cart 13 items", name
                screenshot(page, tmp_path / "screenshots" / f"header-signed-in{path.replace('/', '_')}-{width}.png",
                           width)


def test_signed_out_the_menu_offers_sign_up_and_sign_in_comes_back(world: World, tmp_path: Path) -> None:
    """Signed out at 390 px "Sign up" is in the Menu (the header has no room for it); the header's
    "Sign in" carries ``?next=`` the page it was on, and signing in lands there (only local paths)."""
    from tests.helpers.cdp import chromium

    with chromium(tmp_path, browser_or_skip()) as page:
        visit(page, world, "/market/", True)
        at_width(page, 390, True)
        visit(page, world, "/market/", True)
        assert page.eval("document.querySelector('.nav-signup').checkVisibility()") is False  # menu closed
        page.eval("document.querySelector('.nav-toggle-label').click()")
        page.wait_for("document.querySelector('.site-nav').checkVisibility()")
        signup = page.eval("(() => { const a = document.querySelector('.nav-signup');"
                           " const r = a.getBoundingClientRect(); return [a.checkVisibility(),"
                           " a.getAttribute('href'), r.left >= 0 && r.right <= innerWidth]; })()")
        # (the page's own path as the server routes it: Litestar drops the trailing slash)
        assert signup[0] and signup[2] and signup[1] in ("/account/signup?next=/market/",
                                                         "/account/signup?next=/market"), signup
        href = page.eval("document.querySelector('#account-menu a[href^=\"/account/login\"]').getAttribute('href')")
        assert href == "/account/login?next=/market/", href
        # On the sign-in page itself the link does not point back at it.
        visit(page, world, "/account/login", True)
        assert page.eval("document.querySelector('#account-menu a[href^=\"/account/login\"]').getAttribute('href')") \
            == "/account/login"
        # Signing in from the link returns to the page.
        visit(page, world, "/market/", True)
        page.eval("window.__old = true; document.querySelector('#account-menu a[href^=\"/account/login\"]').click()")
        page.wait_for("window.__old === undefined && location.pathname === '/account/login' "
                      "&& document.readyState === 'complete'")
        assert page.eval("document.querySelector('input[name=next]').value") == "/market/"
        submit(page, {"input[name=login]": "bob", "input[name=password]": PASSWORD},
               "form[action=\"/account/login\"] button[type=submit]", "location.pathname === '/market/'")
        # Signed in: no "Sign up" anywhere in the header.
        page.wait_for(HOLES_FILLED)
        assert page.eval("document.querySelector('.nav-signup').checkVisibility()") is False


@pytest.mark.parametrize("width", [390, 600])
def test_without_javascript_the_phone_menu_offers_sign_up(world: World, tmp_path: Path, width: int) -> None:
    """Without JavaScript the account menu never learns who is there and says only "Account": a
    visitor on a phone must still find "Sign up", in the Menu (the JS version's signed-out header
    has it, and at 390 px its Menu too). Above 420 px the JS version keeps it in the header only."""
    from tests.helpers.cdp import chromium

    with chromium(tmp_path, browser_or_skip()) as page:
        page.set_javascript(False)
        visit(page, world, "/market/", False)  # (a page first: the width is set on a loaded one)
        at_width(page, width, True)
        visit(page, world, "/market/", False)
        assert page.eval("document.querySelector('#account-menu').textContent.trim()") == "Account"
        assert page.eval("document.querySelector('.nav-signup').checkVisibility()") is False  # menu closed
        page.eval("document.querySelector('.nav-toggle-label').click()")
        page.wait_for("document.querySelector('.site-nav').checkVisibility()")
        signup = page.eval("(() => { const a = document.querySelector('.nav-signup');"
                           " const r = a.getBoundingClientRect(); return [a.checkVisibility(),"
                           " a.getAttribute('href'), r.left >= 0 && r.right <= innerWidth]; })()")
        assert signup[0] and signup[2] and signup[1] in ("/account/signup?next=/market/",
                                                         "/account/signup?next=/market"), signup
        screenshot(page, tmp_path / "screenshots" / f"menu-open-signed-out-{width}-nojs.png", width)
        # With JavaScript, signed out, above 420 px the header has "Sign up" and the Menu does not.
        if width > 420:
            page.set_javascript(True)
            visit(page, world, "/market/", True)
            assert page.eval("document.querySelector('#account-menu .signup-link').checkVisibility()")
            page.eval("document.querySelector('.nav-toggle-label').click()")
            page.wait_for("document.querySelector('.site-nav').checkVisibility()")
            assert page.eval("document.querySelector('.nav-signup').checkVisibility()") is False
