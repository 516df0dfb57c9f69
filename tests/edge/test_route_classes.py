"""The edge strips cookies and caches exactly where the app's router reaches a public route.

deploy/varnish/public-routes.vcl is generated from the route table (fragments/edge.py); these
tests hold the committed file to the routes, and real Varnish (under ``varnishtest``) to the
router's own decision for a URL of every GET route and the tricky neighbours of private ones.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.exceptions import NotFoundException
from litestar.routes import HTTPRoute
from litestar.utils import normalize_path

from app import create_app
from app.caching import CACHEABLE, POLICY_OPT_KEY
from app.settings import Settings
from fragments.edge import STATIC_SHAPES, RouteShape, _overlaps_and_wins, render_vcl, route_shapes, sample_url
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "deploy" / "varnish" / "public-routes.vcl"
COOKIE = "rose_ash_session=s1; csrftoken=t1"
# Private URLs next to public shapes, and public URLs with queries and trailing slashes.
EXTRA_URLS = (
    "/blog/admin", "/blog/admin/", "/blog/admin?page=2", "/blog/admin/new", "/blog/admin/navigation",
    "/blog/admin/posts/00000000-0000-4000-8000-000000000000", "/f/me/account-menu", "/f/me/cart-badge?x=1",
    "/", "/?page=2", "/blog/", "/blog/hello?ref=feed", "/blog/tag/news/", "/f/nav", "/static/css/site.css?v=1",
    "/account", "/account/login", "/social", "/api/v1/user/repos", "/forge/ada", "/forge/ada/repo",
    "/forge/ada/repo/info/refs?service=git-upload-pack", "/oauth/authorize?client_id=x", "/no/such/page",
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    data = tmp_path_factory.mktemp("edge-routes")
    return create_app(Settings.from_env({}, data_dir=data, secret_key="edge-route-table-test-" + "x" * 30))


def router_says_public(app: Litestar, url: str) -> bool:
    """What the app's own router does with ``url``: a public route class, or anything else."""
    path = normalize_path(url.split("?", 1)[0])
    try:
        handler = app.asgi_router.handle_routing(path=path, method="GET")[1]  # type: ignore[arg-type]
    except NotFoundException:
        return False
    static = {h for route in app.routes if isinstance(route, HTTPRoute) and route.path in STATIC_SHAPES
              for h in route.route_handlers}
    return handler.opt.get(POLICY_OPT_KEY) in CACHEABLE or handler in static


def urls_to_check(app: Litestar) -> Iterator[str]:
    seen: set[str] = set()
    for url in [sample_url(shape.path) for shape in route_shapes(app)] + list(EXTRA_URLS):
        if url not in seen:
            seen.add(url)
            yield url


def test_committed_vcl_is_generated_from_the_routes(app: Litestar) -> None:
    assert GENERATED.read_text() == render_vcl(app), (
        "the routes changed: run `python -m fragments.edge > deploy/varnish/public-routes.vcl`")


def test_shadowing_follows_the_router() -> None:
    def wins(private: str, public: str) -> bool:
        return _overlaps_and_wins(RouteShape(private, False), RouteShape(public, True))

    assert wins("/blog/admin", "/blog/{slug:str}")
    assert wins("/f/me/{name:str}", "/f/{area:str}/{name:str}")
    assert not wins("/{handle:str}/{which:str}", "/blog/{slug:str}")  # the router takes /blog first
    assert not wins("/blog/admin/new", "/blog/{slug:str}")  # no URL has both shapes
    assert not wins("/blog/admin/new", "/blog/tag/{slug:str}")
    assert wins("/static/admin", "/static/{file_path:path}")
    assert not wins("/{rest:path}", "/blog/{slug:str}")


def test_varnish_agrees_with_the_router(app: Litestar, tmp_path: Path) -> None:
    """One backend request per private URL visit (cookie kept, never cached); public URLs once
    (cookie gone), then a hit for the next visitor."""
    varnishtest = require_tool("varnishtest")
    server: list[str] = []
    client: list[str] = []
    classes = {url: router_says_public(app, url) for url in urls_to_check(app)}
    assert sum(classes.values()) >= 10 and len(classes) - sum(classes.values()) >= 30
    for url, public in classes.items():
        visits = 1 if public else 2
        for n in range(visits):
            cookie = "<undef>" if public else f'"{COOKIE}"'
            cache = "public, s-maxage=300" if public else "private, no-store"
            server += ["  rxreq", f'  expect req.url == "{url}"', f"  expect req.http.Cookie == {cookie}",
                       f'  txresp -hdr "Cache-Control: {cache}" -body "{url} {n}"']
        for n in range(2):
            client += [f'  txreq -url "{url}" -hdr "Cookie: {COOKIE}"', "  rxresp",
                       f'  expect resp.body == "{url} {0 if public else n}"',
                       f'  expect resp.http.X-Cache == "{"HIT" if public and n else "MISS"}"']
    vtc = tmp_path / "route_classes.vtc"
    vtc.write_text("\n".join([
        'varnishtest "every GET route: cookies stripped and cached exactly where the router is public"',
        "server s1 {", *server, "} -start",
        "varnish v1 -vcl+backend {", f'  include "{ROOT / "deploy" / "varnish" / "rose-ash.vcl"}";', "} -start",
        "client c1 {", *client, "} -run",
    ]) + "\n")
    result = subprocess.run([varnishtest, "-b", "32M", "-t", "120", str(vtc)], capture_output=True, text=True,
                            timeout=180, cwd=tmp_path)
    failures = [line for line in result.stdout.splitlines()
                if line.startswith(("---- ", "*    ", "**   ")) or "EXPECT req.url" in line][-6:]
    assert result.returncode == 0, "\n".join(failures) or result.stdout[-4000:] + result.stderr[-2000:]
