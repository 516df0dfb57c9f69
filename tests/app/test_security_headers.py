"""Security headers per route class (app/headers.py; issue 11 item 6), on every database.

The route table is walked: every GET route with no path parameters, plus a concrete URL for
every public/shared/embed route, is requested anonymously and held to its class's headers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from app.caching import CACHEABLE, POLICY_OPT_KEY, CachePolicy
from app.headers import PERMISSIONS_POLICY, document_csp, merge_csp, parse_csp, resource_csp
from app.settings import Settings
from tests.fragments.test_fragment_headers import cacheable_urls
from tests.helpers.web import login, signup

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_CSP = document_csp(allow_http=True)
EMBED_CSP = document_csp(allow_http=True, embed=True)
# Routes a GET walk must not call: they start a flow that redirects off-site or end the session.
SKIP = {"/oauth/sso/login", "/oauth/sso/callback", "/oauth/logout"}


def plain_get_routes(app: Litestar) -> dict[str, CachePolicy | None]:
    """Every GET route without path parameters, with its declared route class."""
    out: dict[str, CachePolicy | None] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "{" in route.path or route.path in SKIP:
            continue
        for handler in route.route_handlers:
            if "GET" in handler.http_methods:
                out[route.path] = handler.opt.get(POLICY_OPT_KEY)
    return out


def assert_common(url: str, headers: Any) -> None:
    assert headers["x-content-type-options"] == "nosniff", url
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin", url
    assert "strict-transport-security" not in headers, url  # http base URL
    csp = parse_csp(headers["content-security-policy"])
    if csp["frame-ancestors"] == "'none'":
        assert headers["x-frame-options"] == "DENY", url
    else:
        assert "x-frame-options" not in headers, url


def is_html(headers: Any) -> bool:
    return str(headers.get("content-type", "")).startswith("text/html")


async def test_every_route_carries_its_class_headers(app, client) -> None:  # type: ignore[no-untyped-def]
    urls: dict[str, CachePolicy | None] = {**plain_get_routes(app), **cacheable_urls(app)}
    assert len(urls) > 40
    seen_classes: set[str] = set()
    for url, policy in sorted(urls.items()):
        response = await client.get(url)
        assert response.status_code < 500, url
        headers = response.headers
        assert_common(url, headers)
        # An HTML page sent under another type gets the no-document policy and breaks in browsers.
        assert is_html(headers) or not response.text.lstrip().lower().startswith("<!doctype html"), url
        csp = headers["content-security-policy"]
        embed = policy is CachePolicy.EMBED
        if is_html(headers):
            seen_classes.add(f"html:{policy}")
            assert csp == (EMBED_CSP if embed else DOCUMENT_CSP), url
            assert headers["permissions-policy"] == PERMISSIONS_POLICY, url
            private = not embed and policy not in CACHEABLE
            assert headers.get("cross-origin-opener-policy") == ("same-origin" if private else None), url
        elif response.status_code == 200:
            seen_classes.add(f"other:{policy}")
            assert csp == (resource_csp(embed=embed)), url
            assert "permissions-policy" not in headers, url
            assert "cross-origin-opener-policy" not in headers, url
    # The walk really covered public, shared, personal-less private, embed pages and non-HTML.
    assert {"html:public", "html:shared_fragment", "html:embed", "html:None", "other:None",
            "other:embed"} <= seen_classes, seen_classes


async def test_public_page_fragment_embed_and_static(client) -> None:  # type: ignore[no-untyped-def]
    # The first page of a new app compiles its templates; on a loaded machine an inlined fragment
    # can pass its 0.3 s budget then and the page is served degraded (no ETag). That fallback has
    # its own tests (tests/fragments/test_fragment_guard_failures.py); this one is about headers.
    await client.get("/")
    home = await client.get("/")
    assert "etag" in home.headers, home.headers
    assert home.headers["content-security-policy"] == DOCUMENT_CSP
    assert home.headers["x-frame-options"] == "DENY" and "cross-origin-opener-policy" not in home.headers
    assert "script-src 'self'" in DOCUMENT_CSP and "'unsafe-eval'" not in DOCUMENT_CSP
    assert "'unsafe-inline'" not in parse_csp(DOCUMENT_CSP)["script-src"]

    # A 304 carries the page's policy: browsers merge its headers into the stored 200.
    again = await client.get("/", headers={"If-None-Match": home.headers["etag"]})
    assert again.status_code == 304 and again.headers["content-security-policy"] == DOCUMENT_CSP

    nav = await client.get("/f/nav")
    assert nav.headers["content-security-policy"] == DOCUMENT_CSP and nav.headers["x-frame-options"] == "DENY"

    # Personal holes are private: COOP, never framed.
    hole = await client.get("/f/me/account-menu")
    assert hole.headers["cross-origin-opener-policy"] == "same-origin"
    assert hole.headers["x-frame-options"] == "DENY"

    # Embeds: any site may frame them; the handler's own frame-ancestors survives the merge.
    for url in ("/embed/members/frame", "/embed/members"):
        embed = await client.get(url)
        assert embed.status_code == 200, url
        csp = parse_csp(embed.headers["content-security-policy"])
        assert csp["frame-ancestors"] == "*" and csp["script-src"] == "'self'", url
        assert "x-frame-options" not in embed.headers and "cross-origin-opener-policy" not in embed.headers
    loader = await client.get("/embed/loader.js")
    assert loader.headers["content-security-policy"] == resource_csp(embed=True)
    assert loader.headers["x-content-type-options"] == "nosniff"

    css = await client.get("/static/css/site.css")
    assert css.status_code == 200 and css.headers["content-security-policy"] == resource_csp()
    assert css.headers["x-content-type-options"] == "nosniff" and css.headers["x-frame-options"] == "DENY"


async def test_private_pages_api_and_router_errors(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "hedda")
    await login(client, "hedda")
    for url in ("/account", "/account/settings/tokens", "/social", "/forge/new"):
        page = await client.get(url)
        assert page.status_code == 200 and is_html(page.headers), url
        assert page.headers["content-security-policy"] == DOCUMENT_CSP, url
        assert page.headers["x-frame-options"] == "DENY", url
        assert page.headers["cross-origin-opener-policy"] == "same-origin", url
        assert page.headers["permissions-policy"] == PERMISSIONS_POLICY, url
        assert "<script>" not in page.text and " onclick=" not in page.text, url

    api = await client.get("/api/v1/repos/hedda/nothing-here")
    assert api.status_code == 404 and api.headers["content-security-policy"] == resource_csp()
    assert api.headers["x-content-type-options"] == "nosniff"
    meta = await client.get("/.well-known/openid-configuration")
    assert meta.status_code == 200 and meta.headers["content-security-policy"] == resource_csp()

    # The router answers these before any middleware runs; the hook still sees them.
    missing = await client.get("/no/such/page")
    assert missing.status_code == 404 and missing.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in missing.headers["content-security-policy"]
    wrong_method = await client.delete("/")
    assert wrong_method.status_code == 405 and wrong_method.headers["x-content-type-options"] == "nosniff"


async def test_hsts_only_on_an_https_base_url(settings: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    from app import create_app

    secure = msgspec.structs.replace(settings, base_url="https://coop.example")
    async with AsyncTestClient(app=create_app(secure), base_url="https://coop.example") as client:
        for url in ("/", "/static/css/site.css", "/no/such/page"):
            response = await client.get(url)
            assert response.headers["strict-transport-security"] == "max-age=31536000", url
        # An https deployment takes remote images and frames over https only.
        csp = parse_csp((await client.get("/")).headers["content-security-policy"])
        assert csp["img-src"] == "'self' data: https:" and "http:" not in csp["frame-src"]


def test_merge_keeps_the_handlers_directives() -> None:
    merged = parse_csp(merge_csp(DOCUMENT_CSP, "frame-ancestors *; sandbox allow-scripts"))
    assert merged["frame-ancestors"] == "*" and merged["sandbox"] == "allow-scripts"
    assert merged["script-src"] == "'self'" and merged["default-src"] == "'self'"
    assert parse_csp("Script-Src 'self'; script-src *; ;") == {"script-src": "'self'"}


# Data blocks (JSON, schema.org JSON-LD) are never run, so the policy does not govern them (HTML
# "data block"); everything else inline would be refused by script-src 'self'.
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/(ld\+)?json\")[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"""\s(on[a-z]+|hx-on[:\w-]*)\s*=""", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.IGNORECASE)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:|hx-vals\s*=\s*["']js:""", re.IGNORECASE)


# Mail templates are not pages: mail clients need inline styles and no page serves them (the admin
# shows them in a sandboxed frame).
@pytest.mark.parametrize("template", sorted(p for p in (ROOT / "templates").rglob("*.html")
                                            if "mail" not in p.relative_to(ROOT / "templates").parts[:1]),
                         ids=lambda p: str(p.relative_to(ROOT / "templates")))
def test_templates_have_no_inline_script_or_handlers(template: Path) -> None:
    text = template.read_text()
    for pattern in (INLINE_SCRIPT, INLINE_HANDLER, INLINE_STYLE, JS_URL):
        match = pattern.search(text)
        assert match is None, f"{template.name}: {match.group(0) if match else ''} (move it under static/)"


def test_htmx_runs_without_eval_or_injected_styles() -> None:
    base = (ROOT / "templates" / "base.html").read_text()
    config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'", base)
    assert config is not None

    values = json.loads(config.group(1))
    assert values["includeIndicatorStyles"] is False and values["allowEval"] is False
    css = (ROOT / "static" / "css" / "site.css").read_text()
    assert ".htmx-indicator" in css and ".htmx-request .htmx-indicator" in css


SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)


async def test_no_page_asks_for_a_script_the_policy_refuses(app, client) -> None:  # type: ignore[no-untyped-def]
    """Under ``script-src 'self'`` a page whose scripts are inline or on another origin is blank.
    The OpenAPI viewers (/api/schema, /api/schema/swagger…) were: they load from third-party CDNs."""
    urls = [*plain_get_routes(app), *(f"/api/schema/{viewer}" for viewer in ("swagger", "redoc", "elements",
                                                                                "rapidoc", "scalar"))]
    for url in urls:
        page = await client.get(url)
        assert page.status_code < 500, url
        if not is_html(page.headers):
            continue
        for attrs in SCRIPT_TAG.findall(page.text):
            src = re.search(r'\bsrc="([^"]*)"', attrs)
            assert src, f"{url}: inline <script{attrs}>"
            assert src.group(1).startswith("/") and not src.group(1).startswith("//"), (url, src.group(1))
    schema = await client.get("/api/schema")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
    assert (await client.get("/api/schema/openapi.yaml")).status_code == 200
