"""The app as `make run` starts it, over real HTTP: sign up, sign out, sign in, tokens."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import app_server

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
pytestmark = pytest.mark.e2e


def form_token(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text[:500]
    match = CSRF.search(page.text)
    assert match
    return match.group(1)


def test_signup_signout_signin_over_real_http(tmp_path: Path, server_database_url: str | None) -> None:
    with app_server(tmp_path, database_url=server_database_url) as server, \
            httpx.Client(base_url=server.base_url, timeout=10) as browser:
        home = browser.get("/")
        assert home.status_code == 200
        assert "site-header" in home.text and "site-footer" in home.text

        token = form_token(browser, "/account/signup")
        created = browser.post("/account/signup", data={
            "username": "alice", "email": "alice@example.org", "password": "correct horse battery staple",
            "_csrf_token": token})
        assert created.status_code == 303, created.text[:500]
        assert browser.get("/account").status_code == 200
        menu = browser.get("/f/me/account-menu")
        assert "@alice" in menu.text

        out = browser.post("/account/logout", data={"_csrf_token": form_token(browser, "/account")})
        assert out.status_code == 303
        assert browser.get("/account").status_code == 303

        token = form_token(browser, "/account/login")
        wrong = browser.post("/account/login", data={"login": "alice", "password": "wrong wrong wrong",
                                                     "_csrf_token": token})
        assert wrong.status_code == 401
        back = browser.post("/account/login", data={"login": "alice", "password": "correct horse battery staple",
                                                    "_csrf_token": form_token(browser, "/account/login")})
        assert back.status_code == 303
        dashboard = browser.get("/account")
        assert dashboard.status_code == 200 and "Hello, alice" in dashboard.text

        made = browser.post("/account/settings/tokens", data={
            "name": "laptop", "scopes": ["api"], "_csrf_token": form_token(browser, "/account/settings/tokens")})
        assert made.status_code == 303
        secret = re.search(r'id="new-token">([^<]+)<', browser.get("/account/settings/tokens").text)
        assert secret
        api = httpx.get(f"{server.base_url}/api/v1/user", headers={"Authorization": f"token {secret.group(1)}"})
        assert api.status_code == 200 and api.json()["username"] == "alice"


def test_cli_creates_users_and_tokens(tmp_path: Path, server_database_url: str | None) -> None:
    with app_server(tmp_path, database_url=server_database_url) as server:
        made = server.cli("users", "create", "--username", "root1", "--email", "root1@example.org",
                          "--password", "correct horse battery staple", "--admin")
        assert "created user root1 (admin)" in made.stdout
        dup = server.cli("users", "create", "--username", "root1", "--email", "x@example.org",
                         "--password", "correct horse battery staple", check=False)
        assert dup.returncode == 1 and "username is taken" in dup.stderr
        bad = server.cli("tokens", "create", "--username", "root1", "--scope", "nope", check=False)
        assert bad.returncode == 1 and "Unknown scope" in bad.stderr
        out = server.cli("tokens", "create", "--username", "root1", "--scope", "api", "--scope", "repo:write")
        secret = out.stdout.strip().splitlines()[-1]
        me = httpx.get(f"{server.base_url}/api/v1/user", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 200
        assert me.json()["is_admin"] is True
