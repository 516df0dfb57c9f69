"""Password reset in Chromium with JavaScript OFF (issue 15, Tests): a real server with its
in-process worker, a real SMTP server on loopback, the link taken from the parsed mail.

Screenshots of the reset form and of the page after it are kept under the test's tmp_path.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.domains.account._mail_helpers import LINK
from tests.helpers.browser import submit
from tests.helpers.server import app_server
from tests.helpers.smtp import SMTPServer

pytestmark = pytest.mark.e2e

OLD = "correct horse battery staple"
NEW = "a passphrase chosen offline"


def screenshot(page: Any, path: Path) -> None:
    shot = page.call("Page.captureScreenshot", format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_password_reset_without_javascript(tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium

    with SMTPServer() as smtp, app_server(tmp_path, extra_env={
        "ROSE_ASH_SMTP_URL": smtp.url, "ROSE_ASH_MAIL_FROM": "Rose Ash <noreply@coop.test>",
        "ROSE_ASH_WORKER_IN_PROCESS": "true",
    }) as server, chromium(tmp_path, browser_binary) as page:
        server.create_user("erin", OLD)
        page.set_javascript(False)
        page.goto(server.base_url + "/account/login")
        assert page.eval("typeof htmx") == "undefined"  # really no script on the page
        page.eval("window.__old = true")
        page.eval("document.querySelector('a[href=\"/account/password/forgot\"]').click()")
        page.wait_for("window.__old === undefined && location.pathname === '/account/password/forgot'"
                      " && document.readyState === 'complete'")
        submit(page, {"#f-email": "erin@example.org"}, "form[action='/account/password/forgot'] button[type=submit]",
               "location.pathname === '/account/password/forgot/sent'")
        assert "If an account uses the address" in page.eval("document.body.innerText")

        [received] = smtp.wait_for(1)  # the in-process worker ran the job and sent the mail
        mail = received.message
        assert mail["To"].addresses[0].addr_spec == "erin@example.org"
        text = mail.get_body(preferencelist=("plain",)).get_content()
        [url] = [u for u in LINK.findall(text) if "/account/password/reset/" in u]
        assert url.startswith(server.base_url + "/")

        page.goto(url)
        assert page.eval("performance.getEntriesByType('navigation')[0].responseStatus") == 200
        assert page.eval("document.querySelector('h1').innerText") == "Choose a new password"
        screenshot(page, tmp_path / "screenshots" / "reset-form.png")
        # Two different passwords: the form comes back (422) with a message, the link still works.
        submit(page, {"#f-password": NEW, "#f-confirm_password": NEW + "!"},
               "form[action^='/account/password/reset/'] button[type=submit]",
               "document.querySelector('#e-confirm_password') !== null")
        assert page.eval("performance.getEntriesByType('navigation')[0].responseStatus") == 422
        assert "The two passwords differ" in page.eval("document.body.innerText")
        screenshot(page, tmp_path / "screenshots" / "reset-error.png")
        submit(page, {"#f-password": NEW, "#f-confirm_password": NEW},
               "form[action^='/account/password/reset/'] button[type=submit]", "location.pathname === '/account'")
        body = page.eval("document.body.innerText")
        assert "Your new password is set" in body and "Hello, erin" in body
        screenshot(page, tmp_path / "screenshots" / "reset-done.png")

        # The link is spent; the new password is the one that signs in.
        page.goto(url)
        assert page.eval("performance.getEntriesByType('navigation')[0].responseStatus") == 410
        page.call("Network.clearBrowserCookies")
        page.goto(server.base_url + "/account/login")
        submit(page, {"input[name=login]": "erin", "input[name=password]": OLD},
               "form[action='/account/login'] button[type=submit]", "location.pathname === '/account/login'")
        assert "don't match an account" in page.eval("document.body.innerText")
        submit(page, {"input[name=login]": "erin", "input[name=password]": NEW},
               "form[action='/account/login'] button[type=submit]", "location.pathname === '/account'")
