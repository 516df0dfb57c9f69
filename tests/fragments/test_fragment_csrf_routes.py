"""Every POST route stays CSRF-protected except the machine endpoints (design §2)."""

from __future__ import annotations

import re
import uuid

import pytest
from litestar.routes import HTTPRoute

from app.installed import csrf_exempt, csrf_public_get
from app.settings import Settings
from tests.conftest import on_store

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings, store_kind: str) -> Settings:
    """Memory or Redis stores by the database leg (tests/conftest.py ``store_kind``)."""
    return on_store(settings, store_kind)

CSRF_EXEMPT = csrf_exempt()
CSRF_PUBLIC_GET = csrf_public_get()
PARAM = re.compile(r"\{([^}:]+)(?::([^}]+))?\}")


def concrete(path: str) -> str:
    def sample(m: re.Match[str]) -> str:
        kind = m.group(2) or "str"
        if m.group(1) == "handle":
            return "@sample"  # /@<username> routes
        return str(uuid.uuid4()) if kind == "uuid" else "1" if kind == "int" else "sample"

    return PARAM.sub(sample, path)


def post_routes(app) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.http_methods & {"POST", "PUT", "PATCH", "DELETE"}:
                found.append((route.path, handler.opt))
    return found


async def test_public_get_exclusions_match_no_action_route(app) -> None:  # type: ignore[no-untyped-def]
    routes = post_routes(app)
    assert routes, "expected some POST routes"
    for path, opt in routes:
        url = concrete(path)
        assert not any(re.search(p, url) for p in CSRF_PUBLIC_GET), f"{path} is under a public GET exclusion"
        machine = any(re.search(p, url) for p in CSRF_EXEMPT)
        assert machine or not opt.get("exclude_from_csrf"), f"{path} opted out of CSRF"


async def test_every_non_machine_post_refuses_a_missing_token(app, client) -> None:  # type: ignore[no-untyped-def]
    checked = 0
    for path, _opt in post_routes(app):
        url = concrete(path)
        if any(re.search(p, url) for p in CSRF_EXEMPT):
            continue
        await client.get("/f/me/account-menu")  # a csrftoken cookie, as a browser would have
        response = await client.post(url, data={"x": "1"})
        assert response.status_code == 403, (path, response.status_code)
        checked += 1
    assert checked >= 3
