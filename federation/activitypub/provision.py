"""Local actors exist before anyone asks for them.

A member's actor row and signing key are written in the transaction that creates the member
(and refreshed when the profile changes), through the account domain's ``user_saved`` hook;
the domain actors and the instance actor are written at startup. So serving an actor document,
a WebFinger answer or a collection, and signing a delivery, only read. (An account made with
a bare session, which carries no settings, still gets its actor on first use.)
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import settings_of
from app.settings import Settings
from domains.account import hooks
from domains.account.models import User
from federation.activitypub.core import DOMAIN_ACTORS, Federation
from federation.activitypub.models import Actor
from federation.activitypub.sanitize import sanitize_html, text_to_html

log = logging.getLogger("rose_ash.federation")


@hooks.on_user_saved
async def provision_member(session: AsyncSession, user: User) -> None:
    """Keep the member's actor in step with their account; when what other servers show of it
    (name, bio) changed, tell the followers with an Update (any profile edit: the web form, the
    Mastodon API)."""
    settings = settings_of(session)
    if settings is None or not user.is_active:
        return
    fed = Federation(session, settings)
    # Columns, not the row: the database's values, even when the actor is loaded and changed.
    before = (await session.execute(select(Actor.name, Actor.summary).where(
        Actor.uri == fed.urls.user(user.username)))).first()
    actor = await fed.provision_user(user)
    actor.summary = sanitize_html(text_to_html(user.bio)) if user.bio else ""
    if before is not None and tuple(before) != (actor.name, actor.summary):
        from federation.activitypub.outbox import Outbox  # the outbox builds on this module's imports

        await Outbox(fed).update_actor(actor)


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
