"""Headless Chromium against the real app: an author writes and publishes a post with JS on
(toolbar, live preview, autosave, htmx submit) and with JS off (plain form posts, 303s)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"


def make_author(server: AppServer, username: str) -> None:
    server.cli("users", "create", "--username", username, "--email", f"{username}@example.org",
               "--password", PASSWORD)
    assert f"granted the author role to {username}" in server.cli("blog", "grant-author", username).stdout


def sign_in(page: object, server: AppServer, username: str) -> None:
    from tests.helpers.cdp import Page

    assert isinstance(page, Page)
    page.goto(server.base_url + "/account/login")
    page.eval(f"document.querySelector('input[name=login]').value = {json.dumps(username)};"
              f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
              "document.querySelector('form[action=\"/account/login\"] button[type=submit]').click()")
    page.wait_for("location.pathname === '/account' && document.readyState === 'complete'")


def test_write_and_publish_with_javascript(tmp_path: Path, browser_binary: str,
                                           server_database_url: str | None) -> None:
    from tests.helpers.cdp import chromium

    with app_server(tmp_path, database_url=server_database_url,
                    extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            chromium(tmp_path, browser_binary) as page:
        make_author(server, "wren")
        sign_in(page, server, "wren")
        page.goto(server.base_url + "/blog/admin/new")
        page.wait_for("window.htmx !== undefined && customElements.get('markdown-toolbar') !== undefined")
        page.eval("document.querySelector('#f-title').focus()")
        page.call("Input.insertText", text="Written with JavaScript")
        # The autosave creates the draft and hands its id back out of band.
        page.wait_for("document.querySelector('#autosave').textContent.includes('Draft saved')")
        page.wait_for("document.querySelector('#post-id').value.length > 0")
        # Type the body, then use the vendored toolbar to embolden a word; the preview follows.
        page.eval("document.querySelector('#f-markdown').focus()")
        page.call("Input.insertText", text="Hello from the browser. ")
        page.call("Input.insertText", text="brave")
        page.eval("const t = document.querySelector('#f-markdown'); t.setSelectionRange(t.value.length - 5, "
                  "t.value.length); document.querySelector('md-bold').click()")
        page.wait_for("document.querySelector('#f-markdown').value.endsWith('**brave**')")
        page.wait_for("document.querySelector('#preview').innerHTML.includes('<strong>brave</strong>')")
        assert "<script" not in page.eval("document.querySelector('#preview').innerHTML")
        page.eval("document.querySelector('#f-tags').value = 'News'")
        page.eval("document.querySelector('button[name=action][value=publish]').click()")
        page.wait_for("document.querySelector('#editor .flash-success') !== null")
        assert "Published." in page.eval("document.querySelector('#editor .flash-success').textContent")
        page.wait_for("location.pathname.startsWith('/blog/admin/posts/')")  # hx-push-url
        page.goto(server.base_url + "/blog/written-with-javascript")
        assert page.eval("document.querySelector('.post-body strong').textContent") == "brave"
        # Readers find it in the feed, on its tag page and on the home page.
        assert "Written with JavaScript" in httpx.get(server.base_url + "/blog/feed.atom").text
        assert "Written with JavaScript" in httpx.get(server.base_url + "/blog/tag/news").text
        assert "Written with JavaScript" in httpx.get(server.base_url + "/").text
        # One post only: the autosaved draft was published, not duplicated.
        assert httpx.get(server.base_url + "/blog/written-with-javascript-2").status_code == 404


def test_write_and_publish_without_javascript(tmp_path: Path, browser_binary: str,
                                              server_database_url: str | None) -> None:
    from tests.helpers.cdp import chromium

    with app_server(tmp_path, database_url=server_database_url,
                    extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            chromium(tmp_path, browser_binary) as page:
        make_author(server, "moss")
        page.set_javascript(False)
        sign_in(page, server, "moss")
        page.goto(server.base_url + "/blog/admin/new")
        assert page.eval("typeof window.htmx") == "undefined"  # no page script ran
        page.eval("document.querySelector('#f-title').value = 'Written without JavaScript';"
                  "document.querySelector('#f-markdown').value = 'Plain *forms* work.';"
                  "document.querySelector('#f-tags').value = 'News';"
                  "document.querySelector('button[name=action][value=preview]').click()")
        page.wait_for("document.querySelector('#preview em') !== null")  # server-rendered preview, not saved
        assert page.eval("document.querySelector('#f-title').value") == "Written without JavaScript"
        page.eval("document.querySelector('button[name=action][value=publish]').click()")
        page.wait_for("location.pathname.startsWith('/blog/admin/posts/') && document.readyState === 'complete'"
                      " && document.querySelector('.flash-success') !== null")
        assert "Published." in page.eval("document.querySelector('.flash-success').textContent")
        page.goto(server.base_url + "/blog/written-without-javascript")
        assert page.eval("document.querySelector('.post-body em').textContent") == "forms"
        # Invalid input: the form comes back (422) with the error and what was typed.
        page.goto(server.base_url + "/blog/admin/new")
        page.eval("document.querySelector('#f-title').value = 'Clash';"
                  "document.querySelector('#f-slug').value = 'written-without-javascript';"
                  "document.querySelector('button[name=action][value=save]').click()")
        page.wait_for("document.querySelector('.suggested-slug') !== null")
        assert page.eval("document.querySelector('.suggested-slug').textContent") == "written-without-javascript-2"
        assert "Written without JavaScript" in httpx.get(server.base_url + "/blog/feed.rss").text


def test_first_autosave_moves_the_url_so_a_reload_keeps_the_draft(tmp_path: Path, browser_binary: str,
                                                                   server_database_url: str | None) -> None:
    """Issue 14 item 7: the first autosave answers HX-Replace-Url; reloading that address shows
    the draft. Also: the preview sits beside the textarea at 1280 px and below it at 390 px, and
    the tag field suggests existing tags after a comma."""
    from tests.helpers.cdp import chromium

    with app_server(tmp_path, database_url=server_database_url,
                    extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            chromium(tmp_path, browser_binary) as page:
        make_author(server, "fern")
        sign_in(page, server, "fern")
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        page.goto(server.base_url + "/blog/admin/new")
        page.wait_for("window.htmx !== undefined")
        history_length = page.eval("history.length")
        page.eval("document.querySelector('#f-title').focus()")
        page.call("Input.insertText", text="Do not lose this")
        page.eval("document.querySelector('#f-markdown').focus()")
        page.call("Input.insertText", text="A draft typed before any save.")
        page.wait_for("location.pathname.startsWith('/blog/admin/posts/')")
        page.wait_for("document.querySelector('#autosave').textContent.includes('Draft saved')")
        assert page.eval("history.length") == history_length  # replaced, not pushed: Back leaves the editor
        where = page.eval("location.href")
        page.wait_for("document.querySelector('#preview').textContent.includes('before any save')")
        # Wide: the preview is to the right of the textarea, on the same row.
        assert page.eval("(() => { const t = document.querySelector('#f-markdown').getBoundingClientRect();"
                         " const p = document.querySelector('.preview-box').getBoundingClientRect();"
                         " return p.left >= t.right && p.top < t.bottom; })()")
        page.goto(where)  # a reload of the new address
        assert page.eval("document.querySelector('#f-title').value") == "Do not lose this"
        assert page.eval("document.querySelector('#f-markdown').value").startswith("A draft typed before any save")
        # Phones: stacked, the preview below the textarea.
        page.call("Emulation.setDeviceMetricsOverride", width=390, height=800, deviceScaleFactor=1, mobile=True)
        assert page.wait_for("(() => { const t = document.querySelector('#f-markdown').getBoundingClientRect();"
                             " const p = document.querySelector('.preview-box').getBoundingClientRect();"
                             " return p.top >= t.bottom; })()")
        # The tag picker: existing tags after what was typed.
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        page.eval("document.querySelector('#f-tags').value = 'Garden, Apples';"
                  "document.querySelector('button[name=action][value=save]').click()")
        page.wait_for("document.querySelector('#editor .flash-success') !== null")
        page.goto(server.base_url + "/blog/admin/new")
        assert page.eval("[...document.querySelectorAll('#tag-suggestions option')].map(o => o.value)") == [
            "Apples", "Garden"]
        page.eval("document.querySelector('#f-tags').focus()")
        page.call("Input.insertText", text="Garden,")
        assert page.wait_for("[...document.querySelectorAll('#tag-suggestions option')].map(o => o.value)"
                             ".join('|') === 'Garden, Apples'")
