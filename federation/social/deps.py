"""Litestar ``Provide`` for the social hub's services: handlers name what they use
(``timelines: Timelines``) and never build a service by hand.

Every service of a request shares one :class:`Federation` on the request's session. It uses
``app.state.federation_client`` (a :class:`SafeClient`) when the app has one (tests put a mock
transport there); otherwise it opens its own client, closed when the request is done.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.safe_http import SafeClient
from app.settings import Settings
from federation.activitypub.core import Federation
from federation.activitypub.moderation import DomainBlocks
from federation.activitypub.urls import Urls
from federation.social.services import (
    Accounts,
    MemberModeration,
    ModerationQueue,
    Notifications,
    Relations,
    Timelines,
)
from federation.social.services.discovery import Discovery


async def provide_federation(request: Request[Any, Any, Any], db_session: AsyncSession,
                             settings: Settings) -> AsyncGenerator[Federation, None]:
    client = request.app.state.get("federation_client")
    fed = Federation(db_session, settings, client if isinstance(client, SafeClient) else None)
    try:
        yield fed
    finally:
        await fed.aclose()


def provide_discovery(fed: Federation) -> Discovery:
    return Discovery(fed)


def provide_timelines(fed: Federation) -> Timelines:
    return Timelines(fed)


def provide_relations(fed: Federation) -> Relations:
    return Relations(fed)


def provide_accounts(fed: Federation) -> Accounts:
    return Accounts(fed)


def provide_notifications(db_session: AsyncSession, settings: Settings) -> Notifications:
    return Notifications(db_session, Urls(settings.base_url))


def provide_member_moderation(fed: Federation) -> MemberModeration:
    return MemberModeration(fed)


def provide_moderation_queue(db_session: AsyncSession) -> ModerationQueue:
    return ModerationQueue(db_session)


def provide_domain_blocks(db_session: AsyncSession, settings: Settings) -> DomainBlocks:
    return DomainBlocks(db_session, Urls(settings.base_url).host)


def _sync(fn: Any) -> Provide:
    return Provide(fn, sync_to_thread=False)


HUB = {
    "fed": Provide(provide_federation),
    "timelines": _sync(provide_timelines),
    "relations": _sync(provide_relations),
    "accounts": _sync(provide_accounts),
    "notifications": _sync(provide_notifications),
    "discovery": _sync(provide_discovery),
}
"""The hub's pages (``controllers.py``)."""

MEMBER_MODERATION = {"fed": Provide(provide_federation), "moderation": _sync(provide_member_moderation)}
"""A member's blocks and reports (``moderation.py``)."""

ADMIN = {"queue": _sync(provide_moderation_queue), "domain_blocks": _sync(provide_domain_blocks)}
"""The admins' pages (``admin.py``)."""
