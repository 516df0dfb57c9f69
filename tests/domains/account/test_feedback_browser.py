"""Headless Chromium on the token page, where feedback is the thing under test (issue 14 item 4):
a failed submit moves focus to the error summary and keeps what was typed; a creation answers
with exactly one message, in the one toast region; revoking asks first, with JavaScript
(``hx-confirm``) and without it (a confirmation page whose form carries the CSRF token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"

ONE_FLASH = "document.querySelectorAll('.flash').length"
TOAST = "document.querySelector('#toasts[role=status] .flash')"


def sign_in(page: object, server: AppServer, username: str) -> None:
    from tests.helpers.cdp import Page

    assert isinstance(page, Page)
    server.cli("users", "create", "--username", username, "--email", f"{username}@example.org", "--password", PASSWORD)
    page.goto(server.base_url + "/account/login")
    page.eval(f"document.querySelector('input[name=login]').value = {json.dumps(username)};"
              f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
              "document.querySelector('form[action=\"/account/login\"] button[type=submit]').click()")
    page.wait_for("location.pathname === '/account' && document.readyState === 'complete'")


def submit_token(page: object, name: str, scope: str | None) -> None:
    from tests.helpers.cdp import Page

    assert isinstance(page, Page)
    check = f"document.querySelector('input[name=scopes][value=\"{scope}\"]').checked = true;" if scope else ""
    page.eval(f"document.querySelector('#f-name').value = {json.dumps(name)};{check}"
              "document.querySelector('form[action=\"/account/settings/tokens\"] button[type=submit]').click()")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_token_page_feedback(tmp_path: Path, browser_binary: str, server_database_url: str | None,
                             javascript: bool) -> None:
    from tests.helpers.cdp import chromium

    with app_server(tmp_path, database_url=server_database_url) as server, chromium(tmp_path, browser_binary) as page:
        sign_in(page, server, "wren")
        page.set_javascript(javascript)
        page.goto(server.base_url + "/account/settings/tokens")

        # No scope chosen: the server refuses (422); focus lands on the summary, which links to the
        # field, and the name typed is still there.
        submit_token(page, "laptop", None)
        page.wait_for("document.querySelector('.error-summary') !== null && document.readyState === 'complete'")
        assert page.wait_for("document.activeElement && document.activeElement.classList.contains('error-summary')")
        assert page.eval("document.activeElement.getAttribute('role')") == "alert"
        assert page.eval("document.querySelector('.error-summary a').getAttribute('href')") == "#f-scopes"
        assert page.eval("document.querySelector('#f-scopes') !== null")
        assert page.eval("document.querySelector('#f-name').value") == "laptop"

        # A creation answers with one message, in the toast region, holding the new secret.
        submit_token(page, "laptop", "api")
        page.wait_for(f"{TOAST} !== null && document.readyState === 'complete'")
        assert page.eval(ONE_FLASH) == 1
        assert page.eval("document.querySelector('#toasts #new-token').textContent").startswith("rat_")
        assert page.eval("document.querySelector('.error-summary')") is None

        # Revoke asks before it acts.
        revoke = "document.querySelector('form[hx-confirm][hx-post$=\"/revoke\"] button')"
        assert "Revoke the token “laptop”?" in page.eval(f"{revoke}.closest('form').getAttribute('hx-confirm')")
        if javascript:
            page.wait_for("window.htmx !== undefined")
            # The question survives the navigation that follows in sessionStorage.
            page.eval("window.confirm = (q) => { sessionStorage.setItem('asked', q); return true; }")
            page.eval(f"{revoke}.click()")
            page.wait_for(f"{TOAST} !== null && {TOAST}.textContent.includes('Token revoked.')"
                          " && document.readyState === 'complete'")
        else:
            page.eval(f"{revoke}.click()")
            page.wait_for("location.pathname.endsWith('/revoke') && document.readyState === 'complete'")
            assert page.eval("document.querySelector('h1').textContent") == "Revoke the token “laptop”?"
            assert page.eval("document.querySelector('a.button[href=\"/account/settings/tokens\"]').textContent") \
                == "Cancel"
            page.eval("document.querySelector('form[method=post] button[type=submit]').click()")
            page.wait_for("location.pathname === '/account/settings/tokens' && document.readyState === 'complete'")
        assert page.eval(ONE_FLASH) == 1
        assert "Token revoked." in page.eval(f"{TOAST}.textContent")
        assert page.eval("document.querySelector('tr.revoked') !== null")
        if javascript:  # htmx asked (hx-confirm) before it posted
            assert page.eval("sessionStorage.getItem('asked')").startswith("Revoke the token “laptop”?")
