"""The Mastodon client API (``/api/v1``, ``/api/v2``): members use the social hub from Elk, Phanpy,
Tusky, Ivory or Mastodon.py, through the same services as the web hub and our own OAuth provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

__all__ = ["domain"]


def _routes() -> list[ControllerRouterHandler]:
    from federation.mastodon.accounts import routers
    from federation.mastodon.api import router
    from federation.mastodon.discovery import router as discovery
    from federation.mastodon.media import router as media

    return [router, *routers, discovery, media]


domain = Domain(name="mastodon", routes=_routes, setup=("federation.mastodon.jobs",))
