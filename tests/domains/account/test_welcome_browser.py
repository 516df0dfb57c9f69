"""Headless Chromium: a member who signs up from a page sees the welcome (a private page linking
back), and a message flashed before a redirect to a public, cached page (signing in from it) reaches
the toast region through the account menu's htmx hole."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.federation.social.test_social_browser import PASSWORD, browser, fill, server, submit
from tests.helpers.server import AppServer

pytestmark = pytest.mark.e2e
__all__ = ["server"]  # the fixture, shared with the hub's browser tests


def test_the_welcome_and_the_flash_reach_a_member_on_public_pages(tmp_path: Path, browser_binary: str,
                                                                   server: AppServer) -> None:
    with browser(tmp_path, browser_binary) as page:
        page.goto(server.base_url + "/account/signup?next=/")
        fill(page, {"input[name=username]": "wren", "input[name=email]": "wren@example.org",
                    "input[name=password]": PASSWORD})
        submit(page, "document.querySelector('form[action=\"/account/signup\"] button[type=submit]').click()",
               "location.pathname === '/account/welcome'")
        assert "wren@example.org" in str(page.eval("document.querySelector('main').textContent"))
        submit(page, "[...document.querySelectorAll('main a')].find(a => a.textContent.includes("
                     "'Continue where you were')).click()", "location.pathname === '/'")
        page.wait_for("document.querySelector('#account-menu .account-link')?.textContent === '@wren'")
        assert page.eval("document.querySelectorAll('#toasts .flash').length") == 0  # said once, on the welcome
        # signing in from the (public, cached) home page: the flash arrives with the account menu
        page.call("Network.clearBrowserCookies")
        page.goto(server.base_url + "/account/login?next=/")
        fill(page, {"input[name=login]": "wren", "input[name=password]": PASSWORD})
        submit(page, "document.querySelector('form[action=\"/account/login\"] button[type=submit]').click()",
               "location.pathname === '/'")
        page.wait_for("document.querySelector('#toasts .flash-success')?.textContent === 'Signed in as wren.'")
        assert page.eval("document.querySelectorAll('#toasts').length") == 1  # replaced, not added
        page.goto(server.base_url + "/")
        page.wait_for("document.querySelector('#account-menu .account-link') !== null")
        assert page.eval("document.querySelectorAll('#toasts .flash').length") == 0  # once
