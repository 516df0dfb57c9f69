"""A member's profile as the fediverse sees it: display name, bio and avatar, changed from the
hub's apps (the Mastodon API's ``update_credentials``).

Names and bios go through the account domain's own :meth:`AccountService.update_profile` (its
rules and its ``user_saved`` hook, which refreshes the member's actor). Avatars get the market's
image handling (:func:`domains.market.services.media.process_image`: type sniffed by Pillow and
checked against the name and declared type, decompression bombs refused, EXIF and every other
metadata dropped by re-encoding) under a tighter size cap, and are stored by content as
``DATA_DIR/avatars/<sha256>-<width>.<ext>``; the actor's ``icon`` then points at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import select

from domains.account.models import User
from domains.account.services import AccountService
from domains.market.services.media import MEDIA_NAME, ImageRefused, process_image, write_atomically
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor
from federation.activitypub.outbox import Outbox
from federation.activitypub.sanitize import sanitize_html, text_to_html

__all__ = ["AVATAR_NAME", "AVATAR_PIXELS", "AVATAR_WIDTH", "IMAGE_WORK", "MAX_AVATAR_BYTES", "Avatar", "Profiles",
           "avatar_dir"]

MAX_AVATAR_BYTES = 2 * 1024 * 1024  # Mastodon's avatar limit (docs.joinmastodon.org/user/profile/)
# Decoding costs memory by pixels, not bytes: a 170 KB PNG can hold 40 megapixels (~420 MB and
# seconds of CPU). An avatar is shown 400 pixels wide, so 8 megapixels is any camera's photo.
AVATAR_PIXELS = 8_000_000
# Members' image decoding (avatars here, the Mastodon API's media uploads) runs at most two at a
# time, in threads of its own budget: many uploads at once wait their turn instead of taking every
# worker thread and the memory of all their decodes together.
IMAGE_WORK = anyio.CapacityLimiter(2)
AVATAR_WIDTH = 400  # Mastodon's avatar size; a smaller picture is kept at its own width
AVATAR_NAME = MEDIA_NAME


@dataclass(frozen=True)
class Avatar:
    """An uploaded file as the request carried it."""

    data: bytes
    filename: str
    content_type: str


def avatar_dir(data_dir: Path) -> Path:
    return data_dir / "avatars"


def _store(directory: Path, name: str, data: bytes) -> None:
    """Write once, atomically (the name is the content's digest, so an existing file is this one)."""
    path = directory / name
    if path.exists():
        return
    write_atomically(path, data)


class Profiles:
    """Changes to the member's own profile, over this request's :class:`Federation`."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.session = fed.session

    async def update(self, user: User, *, display_name: str | None = None, bio: str | None = None,
                     avatar: Avatar | None = None, locked: bool | None = None) -> Actor:
        """Change what is given (None: leave it). Raises InputProblems (ImageRefused for the
        avatar) before anything is written, so a refused change leaves the profile as it was."""
        processed = None
        if avatar is not None:
            if len(avatar.data) > MAX_AVATAR_BYTES:
                raise ImageRefused(f"The avatar is {len(avatar.data) / 1048576:.1f} MB; upload one of "
                                   f"{MAX_AVATAR_BYTES // 1048576} MB at most.")
            processed = await anyio.to_thread.run_sync(lambda: process_image(
                avatar.data, filename=avatar.filename, content_type=avatar.content_type, widths=(AVATAR_WIDTH,),
                max_pixels=AVATAR_PIXELS), limiter=IMAGE_WORK)
        shown = await self._shown(user)  # what other servers show of the profile now
        if display_name is not None or bio is not None:
            await AccountService(self.session).update_profile(
                user, user.display_name if display_name is None else display_name,
                user.bio if bio is None else bio)
        me = await self.fed.local_actor_for_user(user)
        me.name = user.name
        me.summary = sanitize_html(text_to_html(user.bio)) if user.bio else ""
        if locked is not None:
            me.manually_approves = locked
        if processed is not None:
            width, data = next(iter(processed.copies.items()))
            name = f"{processed.sha256}-{width}.{processed.format}"
            directory = avatar_dir(self.fed.settings.data_dir)
            await anyio.to_thread.run_sync(lambda: _store(directory, name, data))
            me.icon_url = f"{self.fed.urls.base.rstrip('/')}/social/avatars/{name}"
        await self.session.flush()
        if shown != (me.name, me.summary, me.icon_url, me.manually_approves):
            # The followers' servers get the new profile (one Update for the whole edit: the
            # account hook's, for a name or bio, is refreshed rather than followed by a second).
            await Outbox(self.fed).update_actor(me)
        return me

    async def _shown(self, user: User) -> tuple[Any, ...] | None:
        row = (await self.session.execute(select(
            Actor.name, Actor.summary, Actor.icon_url, Actor.manually_approves).where(
            Actor.uri == self.fed.urls.user(user.username)))).first()
        return tuple(row) if row is not None else None
