"""Site-level fragments and the home page: the navigation, the home page's parts, the personal holes.

Domains add their own in ``domains/<area>/fragments.py`` with the same decorator (the newest
members and the account menu are in domains/account/fragments.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response

from app.caching import CachePolicy
from fragments.keys import HOME, NAV, SITE
from fragments.pages import public_get, render_page
from fragments.registry import FragmentContext, FragmentData, fragment

__all__ = [
    "NAV_LINKS", "NAV_REVISION", "SavedNavigation", "home", "installed", "owner_installed", "section_links",
    "use_installed", "use_navigation", "use_saved_navigation", "welcome_actions",
]

Links = tuple[tuple[str, str], ...]
# The saved menu as ``((href, label), ...)`` and its revision: the navigation editor's (the blog's).
SavedNavigation = Callable[[FragmentContext], Awaitable[tuple[Links, str]]]

# Bump when the nav's markup changes; the links join it in the seed (``_links_seed``), so installing
# a domain changes the nav's and the sections' ETags without a bump.
NAV_REVISION = "3"
# The installed domains' navigation entries (app/kit.py ``Domain.nav``), set when an app is built.
NAV_LINKS: Links = ()
# The names of the installed domains, set when an app is built: a page shows a domain's parts
# (the cart badge) only when it is installed, so no link leads to a page that does not exist.
_installed: set[str] = set()
# Which installed domain's ``setup`` imported a module (its fragments.py, say): a personal fragment
# another app or a test registered in this process is no part of this one's pages.
_owners: dict[str, str] = {}
_saved: list[SavedNavigation] = []


def use_navigation(links: Links) -> None:
    """The links of the installed domains, in order (the ``fragments`` domain calls this)."""
    global NAV_LINKS
    NAV_LINKS = links


def use_installed(names: tuple[str, ...], owners: dict[str, str] | None = None) -> None:
    """The installed domains' names, and the domain each setup module belongs to (the
    ``fragments`` domain calls this)."""
    _installed.clear()
    _installed.update(names)
    _owners.clear()
    _owners.update(owners or {})


def owner_installed(module: str) -> bool:
    """Whether the domain whose setup module ``module`` is is part of this app (a module no
    installed domain declares, a test's say, counts as part of it)."""
    owner = _owners.get(module)
    return owner is None or owner in _installed


def installed(name: str) -> bool:
    """Jinja global ``installed(name)``: whether the domain ``name`` is part of this app."""
    return name in _installed


def section_links() -> Links:
    """Jinja global ``section_links()``: the installed sections, for the footer and the nav's fallback."""
    return NAV_LINKS


def use_saved_navigation(source: SavedNavigation) -> None:
    """The menu an editor saved replaces the installed links in ``nav`` (one source; the last wins)."""
    _saved[:] = [source]


def _links_seed(links: Links) -> str:
    """The links themselves are in the ETag seed: a default menu follows the installed list."""
    digest = hashlib.sha256(repr(links).encode()).hexdigest()[:12]
    return f"{NAV_REVISION}.{digest}"


@public_get("/", name="home")
async def home(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The home page: a public page composed from the fragments below."""
    return await render_page(request, "home.html", keys=(HOME,))


@fragment("nav", title="Site navigation")
async def nav(ctx: FragmentContext) -> FragmentData:
    """The site's main navigation: the navigation editor's saved menu when one is installed."""
    if not _saved:
        return FragmentData({"links": NAV_LINKS}, keys=(NAV,), seed=_links_seed(NAV_LINKS))
    links, revision = await _saved[0](ctx)
    return FragmentData({"links": links}, keys=(NAV,), seed=f"{_links_seed(links)}.{revision}")


@fragment("site.welcome", title="Welcome")
async def welcome(ctx: FragmentContext) -> FragmentData:
    """The home page's introduction; what it offers the visitor is the ``me.welcome`` hole inside it."""
    return FragmentData({}, keys=(SITE,), seed="2")


@fragment("me.welcome", policy=CachePolicy.PERSONAL, title="Welcome actions",
          template="fragments/site/me_welcome.html", fallback="fragments/site/me_welcome_fallback.html")
async def my_welcome(ctx: FragmentContext) -> FragmentData:
    """A member's next steps on the home page (write, repositories, timeline); sign-up for everyone else."""
    user = ctx.user
    if user is None:
        return FragmentData({"user": None, "actions": ()})
    return FragmentData({"user": user, "actions": welcome_actions(user, {href for href, _ in NAV_LINKS})})


def welcome_actions(user: Any, installed: set[str]) -> tuple[tuple[str, str], ...]:
    """``(href, label)`` of the member's next steps, only into sections that are installed."""
    actions: list[tuple[str, str]] = []
    if "/blog/" in installed and user.can_author:
        actions.append(("/blog/admin/new", "Write a post"))
    elif "/social/" in installed:
        actions.append(("/social/#compose", "Write a post"))  # the timeline opens with its compose box
    if "/forge/" in installed:
        actions.append((f"/forge/{user.username}", "Your repositories"))
    if "/social/" in installed:
        actions.append(("/social/", "Your timeline"))
    return tuple(actions)


@fragment("site.sections", title="Sections")
async def sections(ctx: FragmentContext) -> FragmentData:
    """Cards for each part of the site."""
    return FragmentData({"links": NAV_LINKS}, keys=(SITE,), seed=_links_seed(NAV_LINKS))


@fragment("me.cart-badge", policy=CachePolicy.PERSONAL, title="Cart badge")
async def cart_badge(ctx: FragmentContext) -> FragmentData:
    """The cart link with its item count (the cart domain replaces this with the real count)."""
    return FragmentData({"count": None, "user": ctx.user is not None})
