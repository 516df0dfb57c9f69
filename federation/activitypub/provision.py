"""Local actors exist before anyone asks for them.

A member's actor row and signing key are written in the transaction that creates the member
(and refreshed when the profile changes), through the account domain's ``user_saved`` hook;
the domain actors and the instance actor are written at startup. So serving an actor document,
a WebFinger answer or a collection, and signing a delivery, only read. (An account made with
a bare session, which carries no settings, still gets its actor on first use.)
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import settings_of
from app.settings import Settings
from domains.account import hooks
from domains.account.models import User
from federation.activitypub.core import DOMAIN_ACTORS, Federation

log = logging.getLogger("rose_ash.federation")


@hooks.on_user_saved
async def provision_member(session: AsyncSession, user: User) -> None:
    settings = settings_of(session)
    if settings is not None and user.is_active:
        await Federation(session, settings).provision_user(user)


async def provision_service_actors(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Create (or re-sync) the domain actors and the instance actor with their keys."""
    try:
        async with sessionmaker() as session, session.begin():
            fed = Federation(session, settings)
            for name in DOMAIN_ACTORS:
                await fed.provision_service(name)
    except (OperationalError, ProgrammingError) as exc:
        # A database not yet migrated: the actors are then made on first use instead.
        log.warning("could not create the local actors (run `rose-ash database upgrade`): %s", exc)
