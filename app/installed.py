"""The installed domains, in order: the one list the app, its CLI, Alembic and CSRF are built from.

Adding a domain is a package with ``domain = Domain(...)`` in its ``__init__.py`` plus one line
here (and its migration). Order is the order routes are added and setup modules imported;
navigation sorts by each entry's own ``order``.
"""

from __future__ import annotations

import domains.account
import domains.blog
import domains.cart
import domains.events
import domains.market
import domains.payments
import federation.activitypub
import federation.mastodon
import federation.oauth
import federation.social
import forge
import fragments
from app.kit import Domain

__all__ = ["INSTALLED", "KERNEL_MACHINE_ROUTES", "csrf_exempt", "csrf_public_get"]

# ForgeFed joins forge and federation, which may not import each other: app/forgefed.py does it.
FORGEFED = Domain(name="forgefed", setup=("app.forgefed",))

INSTALLED: tuple[Domain, ...] = (
    domains.account.domain,
    domains.blog.domain,
    domains.market.domain,
    domains.events.domain,
    domains.payments.domain,
    domains.cart.domain,
    fragments.domain,
    forge.domain,
    federation.oauth.domain,
    federation.activitypub.domain,
    federation.social.domain,
    federation.mastodon.domain,
    FORGEFED,
)

# The kernel's own machine paths, beside what the domains declare.
KERNEL_MACHINE_ROUTES = (
    r"^/api/",  # token-authenticated only: the session cookie is never honoured under /api/
    r"^/healthz$",
    r"^/static/",
)


def csrf_exempt(installed: tuple[Domain, ...] = INSTALLED) -> list[str]:
    """Path regexes with no cookie CSRF: machine endpoints with their own authentication."""
    return [*KERNEL_MACHINE_ROUTES, *(pattern for d in installed for pattern in d.machine_routes)]


def csrf_public_get(installed: tuple[Domain, ...] = INSTALLED) -> list[str]:
    """Public, cacheable GET shapes where no CSRF cookie may be set (so no POST may live there)."""
    return [pattern for d in installed for pattern in d.public_get_routes]
