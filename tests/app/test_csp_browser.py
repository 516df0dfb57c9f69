"""Headless Chromium under the real Content-Security-Policy: the main pages load with no CSP
violation and no console error, and the editor's live preview, autosave and htmx actions, the
social hub's htmx buttons, the embed loader and the OAuth consent form still work.

A listener injected before any page script records every ``securitypolicyviolation``; a
deliberate inline script proves the policy is enforced and the listener hears it.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import REDIS_URL
from tests.federation.social.test_social_browser import (
    browser,
    button,
    click,
    compose,
    fill,
    note_id,
    screenshot,
    sign_in,
    submit,
)
from tests.helpers.server import app_server

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"
LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " at " +
                    e.sourceFile + ":" + e.lineNumber);
});
"""
# Where the test leaves its 1280px screenshots (a temporary directory unless this is set).
SHOTS = os.environ.get("ROSE_ASH_SCREENSHOT_DIR")


def violations(page: Any) -> list[str]:
    return list(page.eval("window.__csp || ['listener missing']"))


def visit(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for("window.htmx !== undefined || document.querySelector('script[src*=htmx]') === null")
    # Let the personal holes (hx-trigger=load) fill in before looking.
    page.wait_for("document.querySelectorAll('[hx-trigger^=load]').length === 0")
    assert violations(page) == [], (url, violations(page))


def test_main_pages_run_under_the_policy(tmp_path: Path, browser_binary: str,
                                         server_database_url: str | None) -> None:
    env = {"ROSE_ASH_WORKER_IN_PROCESS": "false"}
    if server_database_url and REDIS_URL:
        env |= {"ROSE_ASH_REDIS_URL": REDIS_URL, "ROSE_ASH_REDIS_NAMESPACE": f"rose-ash-csp-{uuid.uuid4().hex[:8]}"}
    shots = Path(SHOTS) if SHOTS else tmp_path / "shots"
    with app_server(tmp_path, database_url=server_database_url, extra_env=env) as server, \
            browser(tmp_path, browser_binary) as page:
        base = server.base_url
        server.create_user("wren", PASSWORD, author=True)
        created = server.cli("oauth", "create-client", "--name", "Garden Planner",
                             "--redirect-uri", "http://127.0.0.1:9/callback", "--scope", "openid profile")
        client_id = json.loads(created.stdout.strip().splitlines()[-1])["client_id"]
        page.call("Page.addScriptToEvaluateOnNewDocument", source=LISTENER)

        # Anonymous public pages first.
        visit(page, base + "/")
        # The policy is enforced, and the listener hears it: an injected inline script never runs.
        page.eval("const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
                  "document.body.append(s)")
        page.wait_for("window.__csp.length > 0")
        assert page.eval("window.__ran") is None
        assert violations(page)[0].startswith("script-src-elem blocked inline"), violations(page)
        page.eval("window.__csp = []")
        page.ws.events.clear()  # the console logged that deliberate violation too
        visit(page, base + "/embed")
        page.wait_for("[...document.querySelectorAll('rose-ash-embed')].every(e => e.dataset.loaded === 'true')")
        # The embed is styled by a constructed stylesheet, not an inline <style>.
        assert page.eval("document.querySelector('rose-ash-embed').shadowRoot.adoptedStyleSheets.length") == 1
        assert page.eval("document.querySelector('rose-ash-embed').shadowRoot.querySelector('style')") is None
        visit(page, base + "/embed/blog/latest/frame")
        assert page.eval("getComputedStyle(document.body).marginTop") == "0px"  # embed-frame.css applied

        # The author writes and publishes with htmx: live preview, autosave, the publish swap.
        sign_in(page, server, "wren")
        visit(page, base + "/blog/admin/new")
        page.wait_for("customElements.get('markdown-toolbar') !== undefined")
        page.eval("document.querySelector('#f-title').focus()")
        page.call("Input.insertText", text="Under the policy")
        page.wait_for("document.querySelector('#autosave').textContent.includes('Draft saved')")
        page.eval("document.querySelector('#f-markdown').focus()")
        page.call("Input.insertText", text="A **bold** claim.\n\n| a | b |\n|:-:|--:|\n| 1 | 2 |\n")
        page.wait_for("document.querySelector('#preview strong')?.textContent === 'bold'")
        page.wait_for("document.querySelector('#preview td') !== null")
        # The table's alignment is a style attribute from the sanitiser, which the policy allows.
        assert page.eval("getComputedStyle(document.querySelector('#preview td')).textAlign") == "center"
        if SHOTS:
            page.eval("document.activeElement.blur(); window.scrollTo(0, 0)")
            screenshot(page, shots / "editor-1280.png", 1280, mobile=False)
        page.eval("document.querySelector('#f-tags').value = 'News'")
        page.eval("document.querySelector('button[name=action][value=publish]').click()")
        page.wait_for("document.querySelector('#editor .flash-success')?.textContent.includes('Published.')")
        assert violations(page) == []

        visit(page, base + "/blog/")
        assert page.eval("document.body.textContent.includes('Under the policy')")
        visit(page, base + "/blog/under-the-policy")
        assert page.eval("document.querySelector('.post-body strong').textContent") == "bold"
        if SHOTS:
            screenshot(page, shots / "post-1280.png", 1280, mobile=False)
        visit(page, base + "/")
        if SHOTS:
            screenshot(page, shots / "home-1280.png", 1280, mobile=False)

        # The social hub: compose (a form post), then like with htmx (a swap in place).
        visit(page, base + "/social/")
        compose(page, "Posted under a strict policy")
        note = note_id(page, "Posted under a strict policy")
        page.eval(click(note, "like"))
        page.wait_for(f"document.querySelector('#{note} form[action$=\"/unlike\"]') !== null")
        assert button(page, note, "unlike") == "★ Liked 1"
        assert violations(page) == []

        # The forge: create a repository, open its page.
        visit(page, base + "/forge/new")
        fill(page, {"input[name=name]": "garden"})
        submit(page, "document.querySelector('form[action=\"/forge/new\"] button[type=submit]').click()",
               "location.pathname === '/forge/wren/garden'")
        visit(page, base + "/forge/wren/garden")
        assert page.eval("document.querySelector('h1').textContent").count("garden") >= 1

        # The OAuth consent page, with a working form.
        query = urlencode({"response_type": "code", "client_id": client_id, "scope": "openid profile",
                           "redirect_uri": "http://127.0.0.1:9/callback", "state": "s1",
                           "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                           "code_challenge_method": "S256"})
        visit(page, base + "/oauth/authorize?" + query)
        assert page.eval("document.querySelector('form[action=\"/oauth/authorize\"]') !== null")
        assert page.eval("document.body.textContent.includes('Garden Planner')")
        assert violations(page) == []
    if SHOTS:
        for name in ("editor", "post", "home"):
            assert (shots / f"{name}-1280.png").stat().st_size > 10_000

