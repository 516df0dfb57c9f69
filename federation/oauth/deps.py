"""Litestar dependencies for the OAuth server, so no handler builds its store by hand.

Handlers and controllers declare ``dependencies=DEPENDENCIES`` and take ``oauth_store: OAuthStore``,
which works in the request's ``db_session``.
"""

from __future__ import annotations

from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from federation.oauth.store import OAuthStore

__all__ = ["DEPENDENCIES", "provide_oauth_store"]


def provide_oauth_store(db_session: AsyncSession) -> OAuthStore:
    return OAuthStore(db_session)


DEPENDENCIES = {"oauth_store": Provide(provide_oauth_store, sync_to_thread=False)}
