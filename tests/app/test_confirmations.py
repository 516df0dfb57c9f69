"""Destructive actions ask first (issue 14 item 4): every destructive button carries ``hx-confirm``
and, without JavaScript, opens a confirmation page whose form POSTs (with the CSRF token) every
value the button sent along. htmx gets ``HX-Redirect`` back, so the next page shows one message.

The world is the access matrix's (tests/app/test_access_matrix.py): alice owns a token, an
authorised application, repositories, a note and a post; bob is a member she may block.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from httpx import Cookies

from tests.app.test_access_matrix import build

pytestmark = pytest.mark.anyio

DESTRUCTIVE = re.compile(r"/(delete|revoke|block)$")


class Forms(HTMLParser):
    """Each form: its attributes, its hidden inputs and the classes of its submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"attrs": a, "hidden": {}, "buttons": []})
        elif self.forms and tag == "input" and a.get("type") == "hidden":
            self.forms[-1]["hidden"][a.get("name", "")] = a.get("value", "")
        elif self.forms and tag == "button" and a.get("type", "submit") == "submit":
            self.forms[-1]["buttons"].append(a.get("class", ""))


def bob_page(app: Any) -> str:
    return f"/social/accounts/bob@{urlsplit(app.state.settings.base_url).netloc}"


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


async def test_every_destructive_button_asks_first(app, client, db_session) -> None:  # type: ignore[no-untyped-def]
    world = await build(client, db_session)
    client.cookies = Cookies(world.jars["alice"])
    pages = ["/account/settings/tokens", "/account/settings/applications", "/forge/alice/pub/settings",
             f"/social/notes/{world.ids['note']}", f"/blog/admin/posts/{world.ids['post']}",
             "/social/blocks", bob_page(app)]
    seen: set[str] = set()
    for path in pages:
        page = await client.get(path)
        assert page.status_code == 200, path
        for form in forms_of(page.text):
            action = form["attrs"].get("hx-post") or form["attrs"].get("action", "")
            if not DESTRUCTIVE.search(action) or not any("button-danger" in b for b in form["buttons"]):
                continue
            assert form["attrs"].get("hx-confirm"), f"{path}: {action} deletes without asking"
            assert form["attrs"].get("hx-post") == action, f"{path}: hx-confirm only asks before an htmx request"
            seen.add(DESTRUCTIVE.sub(r"/\1", action).rsplit("/", 1)[-1] + " " + path)
    # Each kind was found (a page that lost its button would otherwise pass quietly).
    assert {s.split()[0] for s in seen} == {"delete", "revoke", "block"}
    assert len(seen) == len(pages), seen


async def test_confirmation_pages_without_javascript(app, client, db_session) -> None:  # type: ignore[no-untyped-def]
    world = await build(client, db_session)
    client.cookies = Cookies(world.jars["alice"])
    # Every destructive form that is not the repository's (its typed name is its confirmation)
    # opens a page with GET, keeping the values it sends.
    confirmed: set[str] = set()
    for path in ["/account/settings/tokens", "/account/settings/applications", f"/social/notes/{world.ids['note']}",
                 f"/blog/admin/posts/{world.ids['post']}", bob_page(app)]:
        for form in forms_of((await client.get(path)).text):
            action = form["attrs"].get("action", "")
            if not form["attrs"].get("hx-confirm") or "/forge/" in action:
                continue
            assert form["attrs"].get("method") == "get" and "_csrf_token" not in form["hidden"], action
            query = urlencode(form["hidden"])
            page = await client.get(action + (f"?{query}" if query else ""))
            assert page.status_code == 200 and "Cancel</a>" in page.text, action
            (post,) = [f for f in forms_of(page.text) if f["attrs"].get("method") == "post"]
            assert post["attrs"]["action"] == action
            assert post["hidden"].pop("_csrf_token")
            assert post["hidden"] == form["hidden"], f"{action}: the values sent along are kept"
            confirmed.add(path)
    assert len(confirmed) == 5, confirmed  # each page had its button

    # Confirming does it: bob's block, from his page, posted from the confirmation with its values.
    (button,) = [f for f in forms_of((await client.get(bob_page(app))).text)
                 if f["attrs"].get("action") == "/social/block"]
    page = await client.get("/social/block?" + urlencode(button["hidden"]))
    assert "Block " in page.text and "?</h1>" in page.text
    (post,) = [f for f in forms_of(page.text) if f["attrs"].get("method") == "post"]
    done = await client.post("/social/block", data=post["hidden"])
    assert done.status_code == 303 and done.headers["location"] == button["hidden"]["next"]
    blocks = await client.get("/social/blocks")
    assert blocks.text.count('class="flash ') == 1 and "Blocked" in blocks.text

    # Without the CSRF token the confirmation's POST is refused.
    token = world.ids["token"]
    refused = await client.post(f"/account/settings/tokens/{token}/revoke", data={})
    assert refused.status_code == 403


async def test_htmx_gets_a_client_redirect_and_one_message(client, db_session) -> None:  # type: ignore[no-untyped-def]
    world = await build(client, db_session)
    client.cookies = Cookies(world.jars["alice"])
    page = await client.get("/account/settings/tokens")
    csrf = client.cookies.get("csrftoken")
    assert csrf and page.status_code == 200
    answer = await client.post(f"/account/settings/tokens/{world.ids['token']}/revoke",
                               headers={"HX-Request": "true", "x-csrftoken": csrf})
    assert answer.status_code == 200 and answer.headers["hx-redirect"] == "/account/settings/tokens"
    after = await client.get("/account/settings/tokens")
    assert after.text.count('class="flash ') == 1 and "Token revoked." in after.text
    # Another member's token: absent, whichever way it is asked for.
    client.cookies = Cookies(world.jars["bob"])
    assert (await client.get(f"/account/settings/tokens/{world.ids['token']}/revoke")).status_code == 404
