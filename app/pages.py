"""Site-level pages that belong to no single domain (the home page)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.datastructures import CacheControlHeader
from litestar.response import Template


@get("/", name="home")
async def home() -> Template:
    return Template("home.html")


@get("/f/me/account-menu", name="fragment:account-menu",
     cache_control=CacheControlHeader(private=True, no_cache=True))
async def account_menu(request: Request[Any, Any, Any]) -> Template:
    """The personal hole in the layout's header; anonymous callers get sign-in links."""
    return Template("fragments/account_menu.html", context={"user": request.scope.get("user")},
                    headers={"Vary": "Cookie"})
