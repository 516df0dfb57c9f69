"""Single sign-on across hosts (ROSE_ASH_DOMAIN_HOSTS), told apart by the Host header: each host
keeps its own session, signs in through the authorization server with the code flow, and signing
out on one host signs out everywhere. One test client plays the browser: its cookie jar keeps
cookies per host, as a browser does."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import msgspec
import pytest

from app.settings import Settings
from tests.conftest import REDIS_URL
from tests.helpers.web import CSRF_FIELD, post_form, signup

pytestmark = pytest.mark.anyio
AS = "http://127.0.0.1:8000"
BLOG = "http://blog.coop.test"
MARKET = "http://market.coop.test"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, store_kind: str) -> Settings:
    """The SSO handshake keeps its state in the "sso" store: memory or Redis by the leg."""
    return Settings.from_env(
        {},
        data_dir=tmp_path / "data", database_url=database_url,
        redis_url=REDIS_URL if store_kind == "redis" else None,
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


# --- hosts come from configuration (issue 11, item 11) ------------------------------------------------

CRAFTED = "blog.coop.test:@evil.test"  # the blog's name with an attacker's origin after it


async def sso_blog_redirect_uris(db_session: Any) -> list[str] | None:
    from sqlalchemy import select

    from federation.oauth.models import OAuthClient

    db_session.expire_all()
    client = (await db_session.execute(select(OAuthClient).where(OAuthClient.client_id == "sso-blog"))).scalar()
    return None if client is None else list(client.redirect_uris)


async def test_crafted_host_cannot_take_over_an_account(client: Any, db_session: Any) -> None:
    """The reported takeover, replayed: it must fail at its first step."""
    await signup(client, "victim")  # the victim is signed in at the authorization server

    # Step 1 (attacker): a crafted Host once registered its callback on the consent-less sso-blog
    # client. Now it is refused before any handler runs, and nothing is registered.
    for host in (CRAFTED, "blog.coop.test:8081", "evil.test"):
        refused = await client.get("/oauth/sso/login?next=/", headers={"Host": host})
        assert refused.status_code == 400 and "invalid host header" in refused.text, host
        assert "set-cookie" not in refused.headers
    assert await sso_blog_redirect_uris(db_session) is None

    # A real sign-in on the blog creates the client with the configured callback alone.
    page = await browse(client, f"{BLOG}/account")
    assert origin(page) == BLOG and page.status_code == 200 and "victim" in page.text
    assert await sso_blog_redirect_uris(db_session) == [f"{BLOG}/oauth/sso/callback"]

    # Step 2 (victim follows the attacker's link): no code is sent to the attacker's origin.
    link = f"{AS}/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": "sso-blog", "scope": "openid profile", "state": "s",
        "redirect_uri": f"http://{CRAFTED}/oauth/sso/callback",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSstw-cM", "code_challenge_method": "S256"})
    answer = await client.get(link)
    assert answer.status_code == 400, answer.status_code
    assert "evil.test" not in answer.headers.get("location", "") and "code=" not in answer.headers.get("location", "")
    assert await sso_blog_redirect_uris(db_session) == [f"{BLOG}/oauth/sso/callback"]


async def test_a_session_belongs_to_the_host_that_issued_it(client: Any) -> None:
    await signup(client, "frank")
    page = await browse(client, f"{BLOG}/account")
    assert origin(page) == BLOG and page.status_code == 200 and "frank" in page.text
    main, blog = session_cookie(client, "127.0.0.1"), session_cookie(client, "blog.coop.test")
    assert main and blog and main != blog
    client.cookies.clear()

    async def account(base: str, cookie: str) -> Any:
        return await client.get(f"{base}/account", headers={"Cookie": f"rose_ash_session={cookie}"})

    # Each cookie works on its own host ...
    assert (await account(AS, main)).status_code == 200
    assert (await account(BLOG, blog)).status_code == 200
    # ... and is no session anywhere else: signed out, and the foreign cookie is left alone.
    for base, cookie in ((AS, blog), (BLOG, main), (MARKET, blog), (MARKET, main)):
        answer = await account(base, cookie)
        assert answer.status_code == 303, (base, answer.status_code)
        assert "rose_ash_session" not in answer.headers.get("set-cookie", ""), base
    assert (await account(AS, main)).status_code == 200  # the probes did not end the real session
    # A session started on the blog under the main host's cookie gets an id of its own: an id the
    # host did not issue is never adopted (session fixation).
    start = await client.get(f"{BLOG}/oauth/sso/login", headers={"Cookie": f"rose_ash_session={main}"})
    assert start.status_code == 303
    issued = [c for c in start.headers.get_list("set-cookie") if c.startswith("rose_ash_session=")]
    assert len(issued) == 1 and main not in issued[0]


async def test_domain_hosts_match_the_port(settings: Settings, engine: Any) -> None:
    from litestar.testing import AsyncTestClient

    from app import create_app

    parsed = Settings.from_env({"ROSE_ASH_DOMAIN_HOSTS": "blog=Blog.Coop.Test:8081, shop=shop.coop.test:80",
                                "ROSE_ASH_BASE_URL": "http://coop.test:80/"}, data_dir=settings.data_dir)
    assert parsed.domain_hosts == (("blog", "blog.coop.test:8081"), ("shop", "shop.coop.test"))
    assert parsed.allowed_hosts == ("coop.test", "blog.coop.test:8081", "shop.coop.test")

    ported = msgspec.structs.replace(settings, domain_hosts=(("blog", "blog.coop.test:8081"),))
    async with AsyncTestClient(app=create_app(ported), base_url=AS) as c:
        c.follow_redirects = False
        start = await c.get("http://blog.coop.test:8081/oauth/sso/login?next=/")
        assert start.status_code == 303, start.text
        query = parse_qs(urlsplit(start.headers["location"]).query)
        assert query["redirect_uri"] == ["http://blog.coop.test:8081/oauth/sso/callback"]
        for other in ("http://blog.coop.test/", "http://blog.coop.test:8082/", "http://127.0.0.1/"):
            refused = await c.get(other + "oauth/sso/login")
            assert refused.status_code == 400 and "invalid host header" in refused.text, other


async def test_unknown_hosts_are_refused_before_anything_runs(client: Any, db_session: Any) -> None:
    from sqlalchemy import func, select

    from domains.account.models import User

    token = CSRF_FIELD.search((await client.get("/account/signup")).text)
    assert token
    for host in ("evil.test", "127.0.0.1", "127.0.0.1:9999", CRAFTED, "[::1]:8001", "localhost"):
        answer = await client.post("/account/signup", headers={"Host": host}, data={
            "username": "mallory", "email": "mallory@example.org", "password": "correct horse battery staple",
            "_csrf_token": token.group(1)})
        assert answer.status_code == 400 and "invalid host header" in answer.text, host
        assert "set-cookie" not in answer.headers
    assert await db_session.scalar(select(func.count()).select_from(User)) == 0  # nothing was written
    # Load balancers probe the health check by address: it answers whatever the Host.
    assert (await client.get("/healthz", headers={"Host": "10.0.0.5:8000"})).status_code == 200
    assert (await client.get("/", headers={"Host": "127.0.0.1:8000"})).status_code == 200
    # A loopback BASE_URL also answers this machine's other names for it, on its port only.
    for alias in ("localhost:8000", "[::1]:8000"):
        assert (await client.get("/", headers={"Host": alias})).status_code == 200, alias


async def test_a_malformed_or_repeated_host_is_a_400_not_a_500(client: Any) -> None:
    # Litestar's router refuses a Host it cannot parse before any middleware runs; the error page
    # must not parse it again (it answered 500: "Port could not be cast to integer value").
    for host in ("127.0.0.1:8000 ", "127.0.0.1:80a0", "blog.coop.test:"):
        for accept in ("text/html", "application/json"):
            answer = await client.get("/account/login?next=/x", headers={"Host": host, "Accept": accept})
            assert answer.status_code == 400, (host, accept, answer.status_code)
            assert "set-cookie" not in answer.headers
