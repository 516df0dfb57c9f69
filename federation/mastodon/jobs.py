"""The Mastodon API's recurring job: the sweep of uploads no note took, and of the image files no
upload names any more (those of deleted notes, whose rows leave with the note).

An app uploads an image before the member posts (``POST /api/v2/media``); a member who gives up
leaves the upload behind. Mastodon removes unattached uploads after a day
(``Scheduler::MediaCleanupScheduler``); so do we (:data:`~federation.mastodon.media.UNATTACHED_TTL`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio.to_thread
import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext, job_handler, registry
from domains.market.models import Media as MarketMedia
from domains.market.services.media import MEDIA_NAME, media_dir
from federation.activitypub.models import MediaAttachment
from federation.mastodon.media import UNATTACHED_TTL

__all__ = ["SWEEP_MEDIA", "SweepMedia", "sweep_media", "sweep_unattached"]

SWEEP_MEDIA = "mastodon.sweep-media"
# A file younger than this is left alone even when no row names it: an upload writes its files
# before its row commits, and the sweep must not take them in between.
FRESH_FILE = timedelta(hours=1)


def _stored(directory: Path) -> dict[str, list[Path]]:
    """The image files in ``directory`` by content digest (other names are not ours to judge)."""
    if not directory.is_dir():
        return {}
    found: dict[str, list[Path]] = {}
    for path in directory.iterdir():
        if (match := MEDIA_NAME.fullmatch(path.name)) is not None:
            found.setdefault(match.group("sha"), []).append(path)
    return found


def _remove_stale(paths: list[Path], before: float) -> int:
    removed = 0
    for path in paths:
        try:
            if path.stat().st_mtime < before:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # another sweep took it
    return removed


async def sweep_unattached(session: AsyncSession, data_dir: Path, *, now: datetime | None = None) -> tuple[int, int]:
    """Delete uploads older than a day that no note carries, then the files of ``DATA_DIR/media``
    that neither an upload here nor the market's images name. Returns (rows, files) removed.

    The directory is the market's too (the same content-addressed store), so a file stays while
    the market's ``Media`` table names its digest."""
    now = now or datetime.now(UTC)
    gone = await session.execute(delete(MediaAttachment).where(
        MediaAttachment.object_id.is_(None), MediaAttachment.created_at < now - UNATTACHED_TTL))
    rows = int(getattr(gone, "rowcount", 0) or 0)
    await session.flush()
    directory = media_dir(data_dir)
    stored = await anyio.to_thread.run_sync(_stored, directory)
    if not stored:
        return rows, 0
    digests = list(stored)
    named: set[str] = set()
    for start in range(0, len(digests), 500):  # bounded IN lists
        chunk = digests[start:start + 500]
        named.update((await session.scalars(select(MediaAttachment.sha256).where(
            MediaAttachment.sha256.in_(chunk)))).all())
        named.update((await session.scalars(select(MarketMedia.sha256).where(MarketMedia.sha256.in_(chunk)))).all())
    orphans = [path for sha, paths in stored.items() if sha not in named for path in paths]
    before = (now - FRESH_FILE).timestamp()
    files = await anyio.to_thread.run_sync(_remove_stale, orphans, before)
    return rows, files


class SweepMedia(msgspec.Struct, frozen=True):
    pass


@job_handler(SWEEP_MEDIA, backoff_base=60.0, backoff_cap=3600.0)
async def sweep_media(ctx: JobContext, payload: SweepMedia) -> None:
    async with ctx.sessionmaker() as session, session.begin():
        await sweep_unattached(session, ctx.settings.data_dir)


# Hourly: an abandoned upload lives at most a day and an hour; each run is one short transaction.
registry.every(sweep_media, timedelta(hours=1), "mastodon:sweep-media", SweepMedia())
