"""Headless Chromium against the real app: holes filled and htmx navigation with JS on; plain
links and a usable page with JS off."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import app_server

pytestmark = pytest.mark.e2e


def test_javascript_on_fills_holes_and_navigates_with_htmx(tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium

    with app_server(tmp_path, extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            chromium(tmp_path, browser_binary) as page:
        server.create_user("yara", "correct horse battery staple")
        httpx.get(server.base_url + "/")  # warm up: a cold first render may exceed the inline deadlines
        page.goto(server.base_url + "/")
        page.wait_for("window.htmx !== undefined")
        # Holes are swapped for the personal fragments (which have no hx-get of their own).
        page.wait_for("!document.querySelector('#account-menu').hasAttribute('hx-get')")
        # The cart's badge is swapped in; it listens for cart-changed instead of loading again.
        page.wait_for("document.querySelector('#cart-badge').getAttribute('hx-trigger') === 'cart-changed from:body'")
        assert page.eval("document.querySelector('#account-menu').textContent").count("Sign in") == 1
        page.wait_for("!document.querySelector('#welcome-actions').hasAttribute('hx-get')")
        assert "Become a member" in page.eval("document.querySelector('#welcome-actions').textContent")
        assert "@yara" in page.eval("document.querySelector('.new-members').textContent")

        # Boosted navigation (the nav has hx-boost): the page changes without a full reload,
        # and the holes of the new page are filled again.
        page.eval("window.__sameDocument = 'yes'")
        page.eval("document.querySelector('nav.site-nav a[href=\"/blog/\"]').click()")
        page.wait_for("location.pathname === '/blog/' && !document.querySelector('.hero')")
        assert page.eval("window.__sameDocument") == "yes"
        page.wait_for("!document.querySelector('#account-menu').hasAttribute('hx-get')")

        # The owner's embed page: the loader fetches the live preview into a shadow root.
        page.goto(server.base_url + "/embed")
        page.wait_for("customElements.get('rose-ash-embed') !== undefined")
        page.wait_for("document.querySelector('#embed-members rose-ash-embed').getAttribute('data-loaded') === 'true'")
        shadow = page.eval("document.querySelector('#embed-members rose-ash-embed').shadowRoot.innerHTML")
        assert "Newest members" in shadow and f"{server.base_url}/@yara" in shadow

        # Signing in (a real form post) fills the account menu for the user.
        page.goto(server.base_url + "/account/login")
        page.eval("document.querySelector('input[name=login]').value = 'yara';"
                  "document.querySelector('input[name=password]').value = 'correct horse battery staple';"
                  "document.querySelector('form[action=\"/account/login\"]').submit()")
        page.wait_for("location.pathname === '/account'")
        page.goto(server.base_url + "/")
        page.wait_for("document.querySelector('#account-menu').textContent.includes('@yara')")
        # The shared home page greets her through its personal hole.
        page.wait_for("document.querySelector('#welcome-actions').textContent.includes('Your timeline')")
        assert "Become a member" not in page.eval("document.querySelector('#welcome-actions').textContent")


def test_javascript_off_shows_plain_links_and_works(tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium

    with app_server(tmp_path, extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            chromium(tmp_path, browser_binary) as page:
        page.set_javascript(False)
        page.goto(server.base_url + "/")
        html = page.html()
        assert re.search(r'id="account-menu"[^>]*hx-get="/f/me/account-menu"', html), "hole must stay unfilled"
        assert re.search(r'id="welcome-actions"[^>]*hx-get="/f/me/welcome"', html), "hole must stay unfilled"
        assert 'href="/account"' in html and 'href="/cart/"' in html  # the cart's plain link, unfilled
        for link in ('href="/embed"', 'href="/account/signup"', 'href="/account/login"'):
            assert link in html
        assert page.eval("typeof window.htmx") == "undefined"  # no script ran
        # Following the plain links works: the embed page and the sign-in form.
        page.goto(server.base_url + "/embed")
        html = page.html()
        assert "Embed Rose Ash on your site" in html and "on Rose Ash</a>" in html  # the no-JS embed link
        page.goto(server.base_url + "/account")  # the hole's fallback link -> sign-in
        page.wait_for("location.pathname === '/account/login'")
        assert 'name="password"' in page.html()
