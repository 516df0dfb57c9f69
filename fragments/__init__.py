"""Fragments: pages composed of cacheable parts, the edge purge queue and the home page.

Below the domains (they register their fragments here); the site navigation and the home page's
sections list the installed domains' ``nav`` entries (app/kit.py), handed over when an app is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, navigation

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

__all__ = ["domain"]


def _routes() -> list[ControllerRouterHandler]:
    from fragments.routes import router
    from fragments.site import home

    return [home, router]


def _use_navigation(installed: tuple[Domain, ...]) -> None:
    from fragments.site import use_installed, use_navigation

    use_navigation(navigation(installed))
    use_installed(tuple(d.name for d in installed), {module: d.name for d in installed for module in d.setup})


domain = Domain(
    name="fragments",
    routes=_routes,
    setup=("fragments.purge", "fragments.site"),  # the edge.purge job; the site-level fragments
    # Public, cacheable GET shapes (design/fragments.md §2): no CSRF cookie may be set there. The
    # exclusion is method-agnostic, so no POST route may live on these paths
    # (tests/fragments/test_fragment_csrf_routes.py checks every POST route). Public handlers also
    # opt out per handler with app.caching.route_opt().
    public_get_routes=(
        r"^/$",
        r"^/f/(?!me/)[a-z0-9.-]+(/[a-z0-9.-]+)?$",
        r"^/embed(/[a-z0-9.-]+(/frame)?)?$",
    ),
    on_installed=_use_navigation,
)
