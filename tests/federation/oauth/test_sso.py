"""Single sign-on across hosts (ROSE_ASH_DOMAIN_HOSTS), told apart by the Host header: each host
keeps its own session, signs in through the authorization server with the code flow, and signing
out on one host signs out everywhere. One test client plays the browser: its cookie jar keeps
cookies per host, as a browser does."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

from app.settings import Settings
from tests.conftest import REDIS_URL
from tests.helpers.web import CSRF_FIELD, post_form, signup

pytestmark = pytest.mark.anyio
AS = "http://127.0.0.1:8000"
BLOG = "http://blog.coop.test"
MARKET = "http://market.coop.test"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings.from_env(
        {},
        data_dir=tmp_path / "data", database_url=database_url, redis_url=REDIS_URL or None,
        redis_namespace=f"rose-ash-test-{uuid.uuid4().hex[:8]}",
        secret_key="test-secret-key-not-for-production-0123456789", worker_in_process=False,
        auth_rate_limit=1000, domain_hosts=(("blog", "blog.coop.test"), ("market", "market.coop.test")),
    )


async def browse(client: Any, url: str) -> Any:
    """GET and follow redirects across hosts like a browser; returns the last response."""
    for _ in range(12):
        response = await client.get(url)
        if response.status_code not in (302, 303):
            return response
        url = urljoin(str(response.url), response.headers["location"])
    raise AssertionError("redirect loop")


def origin(response: Any) -> str:
    parts = urlsplit(str(response.url))
    return f"{parts.scheme}://{parts.netloc}"


async def sign_out(client: Any, base: str) -> Any:
    page = await client.get(f"{base}/account")
    match = CSRF_FIELD.search(page.text)
    assert match, page.status_code
    return await client.post(f"{base}/account/logout", data={"_csrf_token": match.group(1)})


def session_cookie(client: Any, host: str) -> str | None:
    for cookie in client.cookies.jar:
        if cookie.name == "rose_ash_session" and cookie.domain.lstrip(".") in (host, f"{host}.local"):
            return str(cookie.value)
    return None


async def test_sign_in_across_hosts_and_sign_out_everywhere(client: Any) -> None:
    await signup(client, "alice")  # signed in at the authorization server only

    assert (await client.get(f"{BLOG}/account")).status_code == 303
    page = await browse(client, f"{BLOG}/account")
    assert origin(page) == BLOG and page.status_code == 200 and "alice" in page.text
    page = await browse(client, f"{MARKET}/account")
    assert origin(page) == MARKET and page.status_code == 200 and "alice" in page.text

    # Each host has its own first-party session cookie.
    cookies = [session_cookie(client, h) for h in ("127.0.0.1", "blog.coop.test", "market.coop.test")]
    assert all(cookies) and len(set(cookies)) == 3, cookies

    # Sign out on the blog host, and every host, the authorization server included, is signed out.
    assert (await sign_out(client, BLOG)).status_code == 303
    assert (await client.get(f"{MARKET}/account")).status_code == 303
    assert (await client.get(f"{AS}/account")).status_code == 303
    assert (await client.get(f"{BLOG}/account")).status_code == 303


async def test_sign_in_on_a_host_when_signed_out_everywhere(client: Any) -> None:
    await signup(client, "bob")
    assert (await sign_out(client, AS)).status_code == 303
    page = await browse(client, f"{BLOG}/account")
    # The authorization server asks for the password, then sends the visitor back to the blog.
    assert origin(page) == AS and page.url.path == "/account/login" and page.status_code == 200
    next_path = parse_qs(urlsplit(str(page.url)).query)["next"][0]
    signed_in = await post_form(client, "/account/login", {
        "login": "bob", "password": "correct horse battery staple", "next": next_path})
    assert signed_in.status_code == 303
    page = await browse(client, urljoin(AS, signed_in.headers["location"]))
    assert origin(page) == BLOG and page.status_code == 200 and "bob" in page.text


async def test_rp_initiated_logout_at_the_server_ends_host_sessions(client: Any) -> None:
    await signup(client, "carol")
    page = await browse(client, f"{MARKET}/account")
    assert origin(page) == MARKET and page.status_code == 200
    confirm = await browse(client, f"{AS}/oauth/logout")
    match = CSRF_FIELD.search(confirm.text)
    assert match
    done = await client.post(f"{AS}/oauth/logout/confirm", data={"_csrf_token": match.group(1)})
    assert done.status_code == 200
    assert (await client.get(f"{MARKET}/account")).status_code == 303


async def test_sso_callback_refuses_forged_responses(client: Any) -> None:
    await signup(client, "dave")
    start = await client.get(f"{BLOG}/oauth/sso/login?next=/account")
    assert start.status_code == 303 and start.headers["location"].startswith(f"{AS}/oauth/authorize?")
    forged = await client.get(f"{BLOG}/oauth/sso/callback?state=wrong&code=x&iss={AS}")
    assert forged.status_code == 400
    assert (await client.get(f"{BLOG}/account")).status_code == 303


async def test_sso_endpoints_only_on_configured_hosts(client: Any) -> None:
    assert (await client.get("/oauth/sso/login")).status_code == 404
    assert (await client.get("/oauth/sso/callback?state=x&code=y")).status_code == 404


async def test_signing_in_again_keeps_the_sso_session(client: Any) -> None:
    await signup(client, "erin")
    page = await browse(client, f"{BLOG}/account")
    assert origin(page) == BLOG and page.status_code == 200
    again = await post_form(client, f"{AS}/account/login",
                            {"login": "erin", "password": "correct horse battery staple"})
    assert again.status_code == 303  # e.g. prompt=login: the password is checked again
    assert (await sign_out(client, AS)).status_code == 303
    assert (await client.get(f"{BLOG}/account")).status_code == 303
