"""Site-level pages that belong to no single domain (the home page).

The home page is a public page composed from shared fragments (fragments/site.py); the
account menu it used to serve here is now the personal fragment ``me.account-menu``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from fragments.keys import HOME
from fragments.pages import public_get, render_page


@public_get("/", name="home")
async def home(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await render_page(request, "home.html", keys=(HOME,))
