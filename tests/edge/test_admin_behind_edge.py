"""A real admin behind real Varnish (deploy/varnish/default.vcl) in front of the real app:
signs in, opens the editor and saves a draft through the edge; public pages stay cached."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.helpers.edge import varnish_in_front
from tests.helpers.server import app_server

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


def test_admin_reaches_the_editor_through_the_edge(tmp_path: Path, server_database_url: str | None) -> None:
    require_tool("varnishd")
    with app_server(tmp_path, database_url=server_database_url,
                    extra_env={"ROSE_ASH_WORKER_IN_PROCESS": "false"}) as server, \
            varnish_in_front(server.port, tmp_path) as edge:
        server.create_user("ada", PASSWORD, admin=True)
        # The public host is the app's (the edge forwards Host as a real deployment's would).
        host = {"Host": f"127.0.0.1:{server.port}"}
        with httpx.Client(base_url=edge, headers=host) as anon:
            first = anon.get("/")
            assert first.status_code == 200 and "set-cookie" not in first.headers
            assert anon.get("/").headers["x-cache"] == "HIT"

        with httpx.Client(base_url=edge, headers=host) as browser:
            login = browser.get("/account/login")
            assert login.headers["x-cache"] == "MISS" and "csrftoken" in browser.cookies
            signed_in = browser.post("/account/login", data={"login": "ada", "password": PASSWORD,
                                                             "_csrf_token": csrf(login)})
            assert signed_in.status_code == 303, signed_in.text[:500]

            for _ in range(2):  # both visits reach the app with the session: never cached, never shared
                editor = browser.get("/blog/admin/new")
                assert editor.status_code == 200, editor.headers
                assert editor.headers["x-cache"] == "MISS"
                assert "no-store" in editor.headers["cache-control"]
                assert 'id="editor"' in editor.text and "Sign in" not in editor.text
            listing = browser.get("/blog/admin")
            assert listing.status_code == 200 and listing.headers["x-cache"] == "MISS"

            action = re.search(r'<form id="editor"[^>]* action="([^"]+)"', editor.text)
            assert action
            saved = browser.post(action.group(1), data={
                "_csrf_token": csrf(editor), "title": "Through the edge", "markdown": "Hello.",
                "type": "post", "action": "save"})
            assert saved.status_code == 303, saved.text[:500]
            draft = browser.get(saved.headers["location"])
            assert draft.status_code == 200 and "Through the edge" in draft.text

            # The public home page is still the shared cached copy, whatever cookies come with it.
            home = browser.get("/")
            assert home.headers["x-cache"] == "HIT" and home.content == first.content

        # Someone else asking for the editor gets the app's sign-in redirect, not the admin's page.
        with httpx.Client(base_url=edge, headers=host) as stranger:
            other = stranger.get("/blog/admin/new")
            assert other.status_code in (302, 303) and "/account/login" in other.headers["location"]
            assert "Through the edge" not in other.text
