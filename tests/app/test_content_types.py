"""Every page is served as HTML and every JSON route as JSON (issue 14, item 1).

The route table decides what each GET route must answer: a handler that renders a template (a
``Template``/``HTMXTemplate`` answer, a return annotation that is one, or a page composed by
``render_page``) answers ``text/html; charset=utf-8``; a handler whose return annotation is a
dict, list or msgspec Struct answers JSON. Path parameters come from the access matrix's seeded
world (a post, repositories, a member...), requests are made as a signed-in administrator, and
only answers of 200 are judged. The OAuth consent page, once served as ``application/json``, is
reached with a registered client's real authorize URL.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
from typing import Any, get_origin
from urllib.parse import urlencode

import msgspec
import pytest
from httpx import Cookies
from litestar import Litestar, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Template
from litestar.routes import HTTPRoute
from sqlalchemy import select

from federation.oauth.models import OAuthClient
from tests.app.test_access_matrix import build, cases, fill

pytestmark = pytest.mark.anyio

HTML = "text/html; charset=utf-8"
TEMPLATE_CALL = re.compile(r"\b(HTMXTemplate|Template)\(|\brender_page\(")


def renders_template(handler: HTTPRouteHandler) -> bool:
    annotation = handler.parsed_fn_signature.return_type.annotation
    names = {getattr(a, "__name__", "") for a in (annotation, get_origin(annotation))}
    if names & {"Template", "HTMXTemplate"}:
        return True
    try:
        source = inspect.getsource(handler.fn)
    except (OSError, TypeError):
        return False
    return bool(TEMPLATE_CALL.search(source))


def answers_json(handler: HTTPRouteHandler) -> bool:
    annotation = handler.parsed_fn_signature.return_type.annotation
    origin = get_origin(annotation) or annotation
    if origin in (dict, list):
        return True
    return isinstance(origin, type) and issubclass(origin, msgspec.Struct)


def kinds(app: Litestar) -> dict[str, str]:
    """Route path → "html" or "json" for every GET handler whose kind the table tells."""
    found: dict[str, str] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if "GET" not in handler.http_methods:
                continue
            if renders_template(handler):
                found[route.path] = "html"
            elif answers_json(handler):
                found[route.path] = "json"
    return found


def is_json(ctype: str) -> bool:
    media = ctype.split(";", 1)[0].strip()
    return media == "application/json" or media.endswith("+json")


async def authorize_url(db_session: Any, scope: str = "openid profile") -> str:
    client = (await db_session.execute(select(OAuthClient).where(OAuthClient.name == "Matrix RP"))).scalars().first()
    assert client is not None
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return "/oauth/authorize?" + urlencode({
        "client_id": client.client_id, "response_type": "code", "redirect_uri": "https://rp.example.test/cb",
        "scope": scope, "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256",
    })


async def test_pages_are_html_and_json_routes_json(app, client, db_session) -> None:  # type: ignore[no-untyped-def]
    table = kinds(app)
    assert table.get("/oauth/authorize") == "html", "the consent page's handler must count as a page"
    assert sum(1 for k in table.values() if k == "html") > 30 and "json" in table.values()
    world = await build(client, db_session)
    client.cookies = Cookies(world.jars["ada"])  # the administrator reaches every page
    all_cases, _ = cases(app)
    urls = {case.path: fill(case, world) for case in all_cases if case.method == "GET" and case.variant != "private"}
    # Pages that need a query to be themselves: the consent page for a client ada never approved.
    urls["/oauth/authorize"] = await authorize_url(db_session)

    failures: list[str] = []
    judged: set[str] = set()
    for path, kind in sorted(table.items()):
        url = urls.get(path)
        if url is None:
            continue
        response = await client.get(url)
        if response.status_code != 200:
            continue
        judged.add(path)
        ctype = response.headers.get("content-type", "")
        if kind == "html" and ctype != HTML:
            failures.append(f"GET {url}: a page answered {ctype!r}")
        if kind == "json" and not is_json(ctype):
            failures.append(f"GET {url}: a JSON route answered {ctype!r}")
        if path == "/oauth/authorize":
            assert 'name="decision"' in response.text, "not the consent page"
    # The authorize error page (no parameters at all) is a page too.
    error = await client.get("/oauth/authorize")
    assert error.status_code == 400
    if error.headers.get("content-type") != HTML:
        failures.append(f"GET /oauth/authorize (error page): {error.headers.get('content-type')!r}")
    assert {"/oauth/authorize", "/", "/blog", "/account"} <= judged
    print(f"judged {len(judged)} of {len(table)} routes")
    assert len(judged) > 25, sorted(judged)
    assert not failures, "\n".join(failures)


def test_the_table_is_read_from_handlers() -> None:
    """A handler returning a Template without a page media type is still found, and so is JSON."""
    @get("/page", sync_to_thread=False)
    def page() -> Template:
        return Template("home.html")

    @get("/data", sync_to_thread=False)
    def data() -> dict[str, Any]:
        return {}

    bare = Litestar([page, data], openapi_config=None)
    assert kinds(bare) == {"/page": "html", "/data": "json"}


