"""Headless Chromium against the real app's social hub (/social/).

With JavaScript the like/boost buttons are htmx swaps of the one note they belong to (the page
is not reloaded); without it the same buttons are plain form posts answered by 303s. Members on
the same instance follow each other by handle, and a locked account approves or rejects
follow requests in the browser. Every page is watched for console errors, uncaught exceptions
and failed loads (which is also where Chromium reports CSP violations).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REDIS_URL
from tests.helpers.browser import screenshot_at as screenshot
from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"
TIMELINE = ("/social/", "/social")  # the forms' "next" is the request path, which Litestar has no slash on


@pytest.fixture
def server(tmp_path: Path, server_database_url: str | None) -> Iterator[AppServer]:
    """The app on a fresh database. No worker: members of one instance reach each other directly.
    On the PostgreSQL leg it keeps its sessions in Redis too, as in production."""
    env = {"ROSE_ASH_WORKER_IN_PROCESS": "false"}
    if server_database_url and REDIS_URL:
        env |= {"ROSE_ASH_REDIS_URL": REDIS_URL, "ROSE_ASH_REDIS_NAMESPACE": f"rose-ash-e2e-{uuid.uuid4().hex[:8]}"}
    with app_server(tmp_path, database_url=server_database_url, extra_env=env) as running:
        yield running


class EventLog:
    """Stands in for the page's websocket and keeps the CDP events ``Page.call`` would drop."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    def send(self, message: str) -> None:
        self.ws.send(message)

    def recv(self, timeout: float | None = None) -> str | bytes:
        raw = self.ws.recv(timeout=timeout)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return raw  # type: ignore[no-any-return]

    def problems(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console.error: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                if entry.get("url", "").endswith("/favicon.ico"):
                    continue  # the browser asks for it unprompted; the site has none (site-wide, not the hub's)
                found.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        return found


@contextmanager
def browser(tmp_path: Path, binary: str) -> Iterator[Any]:
    """A Chromium page whose console errors, exceptions and failed loads are recorded."""
    from tests.helpers.cdp import chromium

    with chromium(tmp_path, binary) as page:
        log = EventLog(page.ws)
        page.ws = log
        page.call("Log.enable")
        page.call("Network.enable")
        yield page
        page.eval("1")  # drain the events still queued on the socket
        assert log.problems() == [], log.problems()


def submit(page: Any, click: str, condition: str) -> None:
    """Click something that makes a full-page request and wait for the new document to satisfy
    ``condition``: the marker set on the old document proves a navigation happened."""
    page.eval("window.__oldDocument = true")
    page.eval(click)
    page.wait_for(f"window.__oldDocument === undefined && document.readyState === 'complete' && ({condition})")


def fill(page: Any, values: dict[str, str]) -> None:
    for selector, value in values.items():
        page.eval(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")


def sign_up(page: Any, server: AppServer, username: str) -> None:
    page.call("Network.clearBrowserCookies")
    page.goto(server.base_url + "/account/signup")
    fill(page, {"input[name=username]": username, "input[name=email]": f"{username}@example.org",
                "input[name=password]": PASSWORD})
    submit(page, "document.querySelector('form[action=\"/account/signup\"] button[type=submit]').click()",
           "location.pathname === '/account'")


def sign_in(page: Any, server: AppServer, username: str) -> None:
    page.call("Network.clearBrowserCookies")
    page.goto(server.base_url + "/account/login")
    fill(page, {"input[name=login]": username, "input[name=password]": PASSWORD})
    submit(page, "document.querySelector('form[action=\"/account/login\"] button[type=submit]').click()",
           "location.pathname === '/account'")


def note_id(page: Any, text: str) -> str:
    """The element id of the (single) note on the page whose body contains ``text``."""
    ids = page.eval(f"[...document.querySelectorAll('article.note')].filter(a => "
                    f"a.querySelector('.note-content').textContent.includes({json.dumps(text)})).map(a => a.id)")
    assert isinstance(ids, list) and len(ids) == 1, ids
    return str(ids[0])


def button(page: Any, note: str, action: str) -> str:
    """The label of the button posting to ``action`` inside note ``note`` ('' when absent)."""
    return str(page.eval(f"document.querySelector('#{note} form[action$=\"/{action}\"] button')?.textContent ?? ''"))


def click(note: str, action: str) -> str:
    return f"document.querySelector('#{note} form[action$=\"/{action}\"] button').click()"


def compose(page: Any, content: str, *, summary: str = "", visibility: str = "public") -> None:
    fill(page, {"#f-content": content, "#f-summary": summary, "#f-visibility": visibility})
    submit(page, "document.querySelector('form[action=\"/social/compose\"] button[type=submit]').click()",
           "document.querySelector('.flash-success')?.textContent.includes('Posted.')")


def accept_dialog(page: Any) -> None:
    """Answer OK to the confirm() dialog that is opening (hx-confirm)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            page.call("Page.handleJavaScriptDialog", accept=True)
            return
        except RuntimeError:  # no dialog yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def processed(selector: str) -> str:
    """A wait condition: htmx has bound the element (an element swapped in is in the DOM a moment
    before htmx processes it, and a click in that moment is a plain form post)."""
    return f"document.querySelector({json.dumps(selector)})?.['htmx-internal-data']?.initHash !== undefined"


def test_compose_like_boost_reply_with_javascript(tmp_path: Path, browser_binary: str, server: AppServer) -> None:
    with browser(tmp_path, browser_binary) as page:
        sign_up(page, server, "ivy")
        page.goto(server.base_url + "/social/")
        page.wait_for("window.htmx !== undefined")
        compose(page, "Hello from a real browser", summary="Mind the spoilers")
        assert page.eval("location.pathname") in TIMELINE  # back where the form was
        note = note_id(page, "Hello from a real browser")
        # The content warning hides the body until the reader opens it.
        assert page.eval(f"document.querySelector('#{note} details summary').textContent") == "Mind the spoilers"
        assert page.eval(f"document.querySelector('#{note} .note-content').checkVisibility()") is False
        page.eval(f"document.querySelector('#{note} details summary').click()")
        page.wait_for(f"document.querySelector('#{note} .note-content').checkVisibility()")
        assert page.eval(f"document.querySelector('#{note} .note-actions').textContent").count("Delete") == 1

        # Like and boost are htmx swaps of this one note: same document, same URL.
        page.eval("window.__sameDocument = 'yes'")
        assert button(page, note, "like") == "☆ Like"
        page.eval(click(note, "like"))
        page.wait_for(f"document.querySelector('#{note} form[action$=\"/unlike\"]') !== null")
        assert button(page, note, "unlike") == "★ Liked 1"
        assert button(page, note, "boost") == " Boost"
        page.wait_for(processed(f'#{note} form[action$="/boost"]'))
        page.eval(click(note, "boost"))
        page.wait_for(f"document.querySelector('#{note} form[action$=\"/unboost\"]') !== null")
        assert button(page, note, "unboost") == " Boosted 1"
        # The swapped-in note carries a working form (and CSRF token): unlike it again, from the
        # keyboard this time, and the focus stays on the button that was pressed.
        page.wait_for(processed(f'#{note} form[action$="/unlike"]'))
        page.eval(f"document.querySelector('#{note} form[action$=\"/unlike\"] button').focus()")
        for kind in ("keyDown", "keyUp"):
            page.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                      **({"text": "\r"} if kind == "keyDown" else {}))
        page.wait_for(f"document.querySelector('#{note} form[action$=\"/like\"]') !== null")
        assert button(page, note, "like") == "☆ Like"
        assert page.eval(f"document.activeElement === document.querySelector('#{note} form[action$=\"/like\"] button')")
        assert page.eval("window.__sameDocument") == "yes"
        assert page.eval("location.pathname") in TIMELINE
        assert page.eval(f"document.querySelectorAll('#{note}').length") == 1
        assert page.eval("document.querySelectorAll('article.note').length") == 1  # boosting didn't duplicate it
        # The server kept what the swaps showed.
        page.goto(server.base_url + "/social/")
        assert button(page, note, "like") == "☆ Like" and button(page, note, "unboost") == " Boosted 1"
        page.eval(click(note, "like"))
        page.wait_for(f"document.querySelector('#{note} form[action$=\"/unlike\"]') !== null")

        # Reply from the note's own page.
        submit(page, f"document.querySelector('#{note} .note-actions a[href*=\"reply_to=\"]').click()",
               "location.pathname.startsWith('/social/notes/') && document.querySelector('#reply #f-content') !== null")
        thread_path = page.eval("location.pathname")
        assert thread_path == f"/social/notes/{note.removeprefix('note-')}"
        assert page.eval("document.querySelector('#reply input[name=in_reply_to]').value").startswith(
            server.base_url + "/")
        compose(page, "A reply typed in Chromium")
        assert page.eval("location.pathname") == thread_path
        reply = note_id(page, "A reply typed in Chromium")
        assert reply != note
        assert page.eval(f"document.querySelector('#{note}').compareDocumentPosition("
                         f"document.querySelector('#{reply}')) & Node.DOCUMENT_POSITION_FOLLOWING")
        assert button(page, note, "unlike") == "★ Liked 1"  # the thread shows the like made on the timeline
        screenshot(page, tmp_path / "screenshots" / "thread-mobile.png", 390, mobile=True)
        page.goto(server.base_url + "/social/")
        note_id(page, "A reply typed in Chromium")  # the reply is on the home timeline too

        # A long unbroken link must wrap inside its card, not widen the page on a phone.
        long_link = "https://example.org/" + "averylongpathsegment" * 8
        compose(page, f"Worth reading: {long_link}")
        assert page.eval(f"document.querySelector('.note-content a[href={json.dumps(long_link)}]') !== null")
        for width, mobile, name in ((1280, False, "desktop"), (390, True, "mobile")):
            screenshot(page, tmp_path / "screenshots" / f"timeline-{name}.png", width, mobile=mobile)

        # Delete is in the post's menu, and asks first (hx-confirm): accepting deletes the reply.
        reply = note_id(page, "A reply typed in Chromium")
        page.eval(f"document.querySelector('#{reply} .note-menu summary').click()")
        assert page.eval(f"document.querySelector('#{reply} .note-delete').checkVisibility()")
        page.eval("window.__oldDocument = true")
        # confirm() blocks the page until answered: click from a timer, then answer the dialog.
        page.eval(f"setTimeout(() => document.querySelector('#{reply} .note-delete').click(), 0)")
        accept_dialog(page)
        page.wait_for("window.__oldDocument === undefined && document.readyState === 'complete'"
                      " && document.querySelector('article.note') !== null")
        assert "Post deleted." in page.eval("document.querySelector('.flash-success').textContent")
        assert page.eval("document.body.textContent.includes('A reply typed in Chromium')") is False
        note_id(page, "Hello from a real browser")


def test_compose_like_boost_reply_without_javascript(tmp_path: Path, browser_binary: str, server: AppServer) -> None:
    with browser(tmp_path, browser_binary) as page:
        page.set_javascript(False)
        sign_up(page, server, "moss")
        page.goto(server.base_url + "/social/")
        assert page.eval("typeof window.htmx") == "undefined"  # no page script ran
        compose(page, "Posted with scripts off", summary="Spoiler")
        note = note_id(page, "Posted with scripts off")
        assert page.eval(f"document.querySelector('#{note} details summary').textContent") == "Spoiler"

        # Each button is a form post answered by a 303 back to the timeline: a new document.
        submit(page, click(note, "like"), f"document.querySelector('#{note} form[action$=\"/unlike\"]') !== null")
        assert page.eval("location.pathname") in TIMELINE
        assert button(page, note, "unlike") == "★ Liked 1"
        submit(page, click(note, "boost"), f"document.querySelector('#{note} form[action$=\"/unboost\"]') !== null")
        assert page.eval("location.pathname") in TIMELINE
        assert button(page, note, "unboost") == " Boosted 1" and button(page, note, "unlike") == "★ Liked 1"
        submit(page, click(note, "unlike"), f"document.querySelector('#{note} form[action$=\"/like\"]') !== null")
        assert button(page, note, "like") == "☆ Like"

        # Likes made on the local timeline come back to the local timeline.
        page.goto(server.base_url + "/social/local")
        submit(page, click(note, "like"), f"document.querySelector('#{note} form[action$=\"/unlike\"]') !== null")
        assert page.eval("location.pathname") == "/social/local"

        submit(page, f"document.querySelector('#{note} .note-actions a[href*=\"reply_to=\"]').click()",
               "document.querySelector('#reply #f-content') !== null")
        thread_path = page.eval("location.pathname")
        compose(page, "Replied with scripts off")
        assert page.eval("location.pathname") == thread_path
        reply = note_id(page, "Replied with scripts off")

        # Delete, from the menu (a <details>, no script): a confirmation page, then the post.
        page.eval(f"document.querySelector('#{reply} .note-menu summary').click()")
        submit(page, f"document.querySelector('#{reply} .note-delete').click()",
               "document.querySelector('h1')?.textContent === 'Delete this post?'")
        assert "Replied with scripts off" in page.eval("document.querySelector('main').textContent")
        submit(page, "document.querySelector('main form button.button-danger').click()",
               "document.querySelector('.flash-success') !== null")
        assert page.eval("location.pathname") == thread_path
        assert page.eval("document.body.textContent.includes('Replied with scripts off')") is False


def test_follow_by_handle_and_approve_requests(tmp_path: Path, browser_binary: str, server: AppServer) -> None:
    with browser(tmp_path, browser_binary) as page:
        for name in ("wren", "finch", "robin", "crow"):
            sign_up(page, server, name)
        handle = f"@wren@{server.base_url.removeprefix('http://')}"
        sign_in(page, server, "wren")
        page.goto(server.base_url + "/social/")
        assert f"You are {handle}" in page.eval("document.querySelector('main').textContent")

        def follow(who: str, flash: str) -> None:
            sign_in(page, server, who)
            page.goto(server.base_url + "/social/following")
            fill(page, {"#f-handle": handle.removeprefix("@")})  # typed as user@host
            submit(page, "document.querySelector('form[action=\"/social/follow\"] button').click()",
                   "document.querySelector('.flash-success') !== null")
            assert flash in page.eval("document.querySelector('.flash-success').textContent")

        # An open account: following takes effect at once, and wren is told.
        follow("finch", f"Following {handle}.")
        assert "· accepted" in page.eval("document.querySelector('.follow-list').textContent")
        sign_in(page, server, "wren")
        page.goto(server.base_url + "/social/")
        assert page.eval("document.querySelector('.social-nav a[href=\"/social/notifications\"]').textContent") \
            == "Notifications (1)"
        page.goto(server.base_url + "/social/notifications")
        assert page.eval("document.querySelector('.notification-follow').textContent").split()[:3] == \
            ["finch", "followed", "you"]
        page.goto(server.base_url + "/social/")
        assert page.eval("document.querySelector('.social-nav a[href=\"/social/notifications\"]').textContent") \
            == "Notifications"  # read now

        # Wren locks the account.
        page.goto(server.base_url + "/social/followers")
        page.eval("document.querySelector('input[name=locked]').checked = true")
        submit(page, "document.querySelector('form[action=\"/social/settings/locked\"] button').click()",
               "document.querySelector('.flash-success')?.textContent.includes('Saved.')")
        assert page.eval("document.querySelector('input[name=locked]').checked") is True

        # Now follows are requests, answered in the browser.
        follow("robin", f"Follow request sent to {handle}.")
        assert "· pending" in page.eval("document.querySelector('.follow-list').textContent")
        screenshot(page, tmp_path / "screenshots" / "following-mobile.png", 390, mobile=True)
        follow("crow", f"Follow request sent to {handle}.")
        sign_in(page, server, "wren")
        page.goto(server.base_url + "/social/notifications")
        requests = page.eval("[...document.querySelectorAll('.notification-follow_request')].map(li => li.textContent)")
        assert len(requests) == 2 and all("asked to follow you" in r for r in requests)
        assert page.eval("document.querySelector('.social-nav [aria-current=page]').textContent") == "Notifications"
        screenshot(page, tmp_path / "screenshots" / "notifications-mobile.png", 390, mobile=True)
        page.goto(server.base_url + "/social/followers")
        assert page.eval("document.querySelector('.social-nav [aria-current=page]').textContent") == "Followers"
        screenshot(page, tmp_path / "screenshots" / "followers-mobile.png", 390, mobile=True)
        rows = "[...document.querySelectorAll('.follow-list li')]"
        row_of = f"{rows}.find(li => li.querySelector('strong').textContent === %s)"
        assert page.eval(f"({row_of % json.dumps('finch')}).textContent").count("accepted") == 1
        submit(page, f"({row_of % json.dumps('robin')}).querySelector('form[action$=\"/approve\"] button').click()",
               "document.querySelector('.flash-success')?.textContent.includes('Follower approved.')")
        assert "· accepted" in page.eval(f"({row_of % json.dumps('robin')}).textContent")
        submit(page, f"({row_of % json.dumps('crow')}).querySelector('form[action$=\"/reject\"] button').click()",
               "document.querySelector('.flash-success')?.textContent.includes('Follow request rejected.')")
        assert page.eval(f"{row_of % json.dumps('crow')} === undefined")
        compose_for_followers = "Only for my followers"
        page.goto(server.base_url + "/social/")
        compose(page, compose_for_followers, visibility="followers")

        # The approved follower sees followers-only posts; the rejected one neither follows nor sees them.
        sign_in(page, server, "robin")
        page.goto(server.base_url + "/social/following")
        assert "· accepted" in page.eval("document.querySelector('.follow-list').textContent")
        page.goto(server.base_url + "/social/")
        note_id(page, compose_for_followers)
        sign_in(page, server, "crow")
        page.goto(server.base_url + "/social/following")
        assert "wren" not in page.eval("document.querySelector('.follow-list').textContent")
        page.goto(server.base_url + "/social/")
        assert page.eval(f"document.body.textContent.includes({json.dumps(compose_for_followers)})") is False


def test_author_name_opens_account_page_and_follow_with_and_without_javascript(
        tmp_path: Path, browser_binary: str, server: AppServer) -> None:
    with browser(tmp_path, browser_binary) as page:
        sign_up(page, server, "heron")
        page.goto(server.base_url + "/social/")
        compose(page, "Heron on the mudflats")
        host = server.base_url.removeprefix("http://")
        account = f"/social/accounts/heron@{host}"
        counts = "[...document.querySelectorAll('.account-counts span')].map(s => s.textContent)"
        sign_up(page, server, "egret")

        # The author's name on a timeline opens the account page.
        page.goto(server.base_url + "/social/local")
        page.wait_for("window.htmx !== undefined")
        note = note_id(page, "Heron on the mudflats")
        assert page.eval(f"document.querySelector('#{note} .note-author').getAttribute('href')") == account
        submit(page, f"document.querySelector('#{note} .note-author').click()",
               f"location.pathname === {json.dumps(account)}")
        assert page.eval("document.querySelector('h1').textContent") == "heron"
        assert page.eval("document.querySelector('.account-handle').textContent").startswith(f"@heron@{host}")
        note_id(page, "Heron on the mudflats")  # the account's posts are on its page
        assert page.eval("document.querySelector('#relation-button').textContent") == "Follow"
        screenshot(page, tmp_path / "screenshots" / "account-mobile.png", 390, mobile=True)

        # With JavaScript the follow box is swapped in place; focus stays on its button. Wait until
        # htmx has processed this page: a click before that is a plain form post (a 303 and a new page).
        page.wait_for("window.htmx !== undefined && document.readyState === 'complete'")
        page.eval("window.__sameDocument = 'yes'")
        page.eval("document.querySelector('#relation-button').focus()")
        page.eval("document.querySelector('#relation-button').click()")
        page.wait_for("document.querySelector('#relation-button').textContent === 'Unfollow'")
        assert page.eval("document.querySelector('.relation-state').textContent") == "Following"
        assert page.eval("document.querySelector('.relation-message').textContent") == f"Following @heron@{host}."
        assert page.eval("document.activeElement?.id") == "relation-button"
        page.wait_for(processed("#relation form"))
        page.eval("document.querySelector('#relation-button').click()")
        page.wait_for("document.querySelector('#relation-button').textContent === 'Follow'")
        assert page.eval("document.querySelector('.relation-message').textContent") == "Unfollowed."
        assert page.eval("window.__sameDocument") == "yes" and page.eval("location.pathname") == account
        page.wait_for(processed("#relation form"))
        page.eval("document.querySelector('#relation-button').click()")
        page.wait_for("document.querySelector('#relation-button').textContent === 'Unfollow'")
        page.goto(server.base_url + account)  # the server kept it
        assert page.eval("document.querySelector('#relation-button').textContent") == "Unfollow"
        assert page.eval(counts) == ["1 post", "0 following", "1 follower"]

        # Without JavaScript the same buttons are form posts answered by a 303 back to the page.
        page.set_javascript(False)
        page.goto(server.base_url + account)
        assert page.eval("typeof window.htmx") == "undefined"
        submit(page, "document.querySelector('#relation-button').click()",
               "document.querySelector('.flash-success')?.textContent === 'Unfollowed.'")
        assert page.eval("location.pathname") == account
        assert page.eval("document.querySelector('#relation-button').textContent") == "Follow"
        assert page.eval(counts) == ["1 post", "0 following", "0 followers"]
        submit(page, "document.querySelector('#relation-button').click()",
               "document.querySelector('.flash-success') !== null")
        assert page.eval("document.querySelector('.flash-success').textContent") == f"Following @heron@{host}."
        assert page.eval("document.querySelector('#relation-button').textContent") == "Unfollow"

        # The lookup box (a plain GET form) opens an account by handle; an unknown one is a 404 page
        # with the message, and the box keeps what was typed.
        page.goto(server.base_url + "/social/")
        fill(page, {"#f-lookup": f"@egret@{host}"})
        submit(page, "document.querySelector('form.account-lookup button').click()",
               f"location.pathname === '/social/accounts/egret@{host}'")
        assert page.eval("document.querySelector('.relation').textContent").strip().startswith("This is you.")
        fill(page, {"#f-lookup": f"nobody@{host}"})
        submit(page, "document.querySelector('form.account-lookup button').click()",
               "document.querySelector('.flash-error') !== null")
        assert page.eval("document.querySelector('.flash-error').textContent") == f"There is no account nobody@{host}."
        assert page.eval("document.querySelector('#f-lookup').value") == f"nobody@{host}"
        page.eval("1")  # Chromium logs the 404 document load as a failed load: that one was expected
        page.ws.events = [e for e in page.ws.events
                          if "/social/accounts?q=nobody" not in e.get("params", {}).get("entry", {}).get("url", "")]

        # A locked account: the button asks, and the page says the request is pending.
        page.set_javascript(True)
        sign_in(page, server, "heron")
        page.goto(server.base_url + "/social/followers")
        page.eval("document.querySelector('input[name=locked]').checked = true")
        submit(page, "document.querySelector('form[action=\"/social/settings/locked\"] button').click()",
               "document.querySelector('.flash-success')?.textContent.includes('Saved.')")
        page.goto(server.base_url + f"/social/accounts/egret@{host}")
        assert page.eval("document.querySelector('.relation .badge')?.textContent") == "Follows you"
        sign_in(page, server, "egret")
        page.goto(server.base_url + account)
        page.wait_for("window.htmx !== undefined")
        page.eval("document.querySelector('#relation-button').click()")
        page.wait_for("document.querySelector('#relation-button').textContent === 'Request to follow'")
        page.wait_for(processed("#relation form"))
        page.eval("document.querySelector('#relation-button').click()")
        page.wait_for("document.querySelector('#relation-button').textContent === 'Cancel request'")
        assert page.eval("document.querySelector('.relation-state').textContent") == "Follow requested"
        assert page.eval("document.querySelector('.relation-message').textContent") == \
            f"Follow request sent to @heron@{host}."


def test_older_posts_load_in_place_with_javascript_and_as_a_page_without(
        tmp_path: Path, browser_binary: str, server: AppServer) -> None:
    with browser(tmp_path, browser_binary) as page:
        sign_up(page, server, "pat")
        page.goto(server.base_url + "/social/local")
        # 45 posts, one page of 40 and five older ones, written through the compose form's own POST.
        posted = page.eval("""(async () => {
            const token = document.querySelector('form[action="/social/compose"] [name=_csrf_token]').value;
            for (let i = 0; i < 45; i++) {
                const body = new URLSearchParams({content: `paged post ${i}`, visibility: 'public',
                                                  _csrf_token: token});
                const r = await fetch('/social/compose', {method: 'POST', body});
                if (!r.ok) return r.status;
            }
            return 'ok';
        })()""")
        assert posted == "ok"
        shown = ("[...document.querySelectorAll('.timeline > article.note')]"
                 ".map(a => a.textContent.match(/paged post (\\d+)/)[1])")
        page.goto(server.base_url + "/social/local")
        page.wait_for("window.htmx !== undefined")
        assert page.eval(shown) == [str(i) for i in range(44, 4, -1)]
        # With JavaScript the older posts are appended where the link was: same document, same URL.
        page.eval("window.__sameDocument = 'yes'")
        page.eval("document.querySelector('.timeline .older a').click()")
        page.wait_for("document.querySelectorAll('.timeline > article.note').length === 45")
        assert page.eval(shown) == [str(i) for i in range(44, -1, -1)]
        assert page.eval("window.__sameDocument") == "yes" and page.eval("location.pathname") == "/social/local"
        assert page.eval("document.querySelector('.timeline .older')") is None  # that was the last page
        # The appended notes work: like the oldest one in place.
        oldest = note_id(page, "paged post 0")
        page.wait_for(processed(f'#{oldest} form[action$="/like"]'))
        page.eval(click(oldest, "like"))
        page.wait_for(f"document.querySelector('#{oldest} form[action$=\"/unlike\"]') !== null")

        # Without JavaScript the same link is an ordinary page of older posts.
        page.set_javascript(False)
        page.goto(server.base_url + "/social/local")
        submit(page, "document.querySelector('.timeline .older a').click()", "location.search.startsWith('?before=')")
        assert page.eval(shown) == [str(i) for i in range(4, -1, -1)]
        assert "Back to the newest" in page.eval("document.body.textContent")
