"""Durable mirror syncs: the ``forge.mirror.sync`` job (design/forge.md §3.5, ARCHITECTURE.md "Persistence").

A pull mirror or push target is refreshed by a recurring job (:func:`app.jobs.every`, keyed
``forge.mirror.sync:<mirror id>``): one durable row per mirror, which each completed run
re-writes ``interval_seconds`` later, so however many workers run there is one schedule per
mirror. Each run records its outcome on the mirror row (``last_sync_at``, ``last_error``,
scrubbed of credentials). "Sync now" moves the schedule's next run to now under a new
generation (re-arming a schedule whose run went dead); a worker re-arms every enabled mirror's
schedule when it starts; removing or disabling a mirror ends it. The one-shot runs queued by
accepted pushes for push targets (and the retry of a run that found another sync in progress)
never recur.

No database transaction spans the network: the fetch (or push) runs between two short ones.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, cancel_every, enqueue, every, job_handler, registry
from app.settings import Settings
from forge.events import PushEvent, push_events
from forge.mirror import SYNC_JOB, MirrorService, MirrorSyncPayload, apply_incoming
from forge.mirror_models import ForgeMirror
from forge.models import ForgeRepo
from forge.remote import (
    MAX_ERROR_CHARS,
    NETWORK_DEADLINE,
    STAGING,
    GitRemote,
    MirrorError,
    MirrorPush,
    drop_staging,
    fetch_to_staging,
    push_mirror,
)
from forge.runtime import runtime_for
from forge.services import RepoService
from forge.storage import RepoStore

log = logging.getLogger("rose_ash.forge.mirror")
# A sync's lease outlives its longest network step; a busy chain job retries after RETRY_BUSY seconds.
LEASE = NETWORK_DEADLINE + 120
RETRY_BUSY = 60


@job_handler(SYNC_JOB, payload_type=MirrorSyncPayload, max_attempts=3)
async def sync_mirror(ctx: JobContext, payload: MirrorSyncPayload) -> None:
    settings = ctx.settings
    store = runtime_for(settings).store
    mirror_id = uuid.UUID(payload.mirror_id)
    error = ""
    remote: GitRemote | None = None
    async with ctx.sessionmaker() as session, session.begin():
        mirror = await session.get(ForgeMirror, mirror_id)
        if mirror is None or not mirror.enabled:
            if payload.chain:
                await cancel_every(session, schedule_key(mirror_id))
            return
        # No generation check: a mirror has one schedule row, and "sync now" re-keys that row's
        # payload, so a run already under way when it was pressed still syncs (a leftover chain
        # job from before the schedules were recurring syncs once more and then ends).
        repo = await session.get(ForgeRepo, mirror.repo_id)
        if repo is None:
            return
        service = MirrorService(session, store, settings)
        if not await _take_lease(session, mirror_id):
            # Another sync of this mirror is running; the chain tries again a little later.
            if payload.chain:  # a one-shot retry: the schedule itself keeps its interval
                await enqueue(session, SYNC_JOB, MirrorSyncPayload(payload.mirror_id, payload.generation),
                              run_at=datetime.now(UTC) + timedelta(seconds=RETRY_BUSY),
                              unique_key=f"{SYNC_JOB}:retry:{mirror_id}")
            return
        direction, repo_id, follow_force = mirror.direction, repo.id, mirror.follow_force
        pushed = _pushed_refs(mirror)
        try:
            remote = await service.remote_of(mirror)
        except MirrorError as exc:
            error = str(exc)
    # The network part, outside any transaction.
    staging = f"{STAGING}/{mirror_id}"
    incoming: dict[str, str] | None = None
    outcome: MirrorPush | None = None
    if remote is not None:
        try:
            if direction == "pull":
                incoming = await fetch_to_staging(remote, store, repo_id, staging)
            else:
                outcome = await push_mirror(store, repo_id, remote, pushed)
                error = outcome.error
        except MirrorError as exc:
            error = str(exc)
    try:
        async with ctx.sessionmaker() as session, session.begin():
            mirror = await session.get(ForgeMirror, mirror_id)
            repo = await session.get(ForgeRepo, repo_id)
            if mirror is None or repo is None:
                return
            if outcome is not None:
                # What the target accepted from us: the leases of the next push.
                mirror.pushed_refs = json.dumps(outcome.pushed, sort_keys=True, separators=(",", ":"))
            if incoming is not None:
                report = await apply_incoming(RepoService(session, store), repo, incoming,
                                              follow_force=follow_force)
                error = report.error
                if report.backups:
                    mirror.last_backups = report.backup_note
                    log.warning("mirror %s of repo %s followed a force-push; replaced tips kept: %s",
                                mirror_id, repo_id, ", ".join(ref for ref, _oid in report.backups))
            await _record(session, store, settings, mirror, payload, error, remote)
    except Exception as exc:  # applying failed: record why in a fresh transaction, so the chain survives
        log.exception("mirror %s of repo %s: sync failed", mirror_id, repo_id)
        async with ctx.sessionmaker() as session, session.begin():
            mirror = await session.get(ForgeMirror, mirror_id)
            if mirror is not None:
                await _record(session, store, settings, mirror, payload,
                              f"sync failed: {exc.__class__.__name__}: {exc}", remote)
    finally:
        if remote is not None and direction == "pull":  # also after a fetch that failed half-way
            await drop_staging(store, repo_id, staging)


def _pushed_refs(mirror: ForgeMirror) -> dict[str, str]:
    try:
        raw = json.loads(mirror.pushed_refs or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def schedule_key(mirror_id: uuid.UUID | str) -> str:
    """The unique key of a mirror's recurring sync."""
    return f"{SYNC_JOB}:{mirror_id}"


async def schedule_mirror(session: AsyncSession, mirror: ForgeMirror, *, now: bool = True) -> None:
    """Write (or re-arm) the mirror's recurring sync under its current generation and interval;
    with ``now`` its next run is due at once. In the caller's transaction."""
    await every(session, sync_mirror, timedelta(seconds=mirror.interval_seconds), schedule_key(mirror.id),
                MirrorSyncPayload(str(mirror.id), mirror.generation, chain=True),
                start_at=datetime.now(UTC) if now else None)


async def unschedule_mirror(session: AsyncSession, mirror_id: uuid.UUID) -> None:
    await cancel_every(session, schedule_key(mirror_id))


@registry.on_worker_start
async def ensure_mirror_schedules(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Every enabled mirror has its schedule (idempotent): after a deploy from the old chain
    jobs, or once a run went dead, a worker start re-arms it."""
    async with sessionmaker() as session, session.begin():
        for mirror in (await session.execute(select(ForgeMirror).where(ForgeMirror.enabled.is_(True)))).scalars():
            await schedule_mirror(session, mirror, now=False)


async def _record(session: AsyncSession, store: RepoStore, settings: Settings, mirror: ForgeMirror,
                  payload: MirrorSyncPayload, error: str, remote: GitRemote | None) -> None:
    """Note the outcome on the mirror row (never a credential); the queue writes the next run."""
    if remote is not None:
        error = remote.scrub(error)
    mirror.sync_started_at = None
    mirror.last_sync_at = datetime.now(UTC)
    mirror.last_error = error[:MAX_ERROR_CHARS]
    if error:
        log.warning("mirror %s (%s) of repo %s: %s", mirror.id, mirror.direction, mirror.repo_id, mirror.last_error)


async def _take_lease(session: AsyncSession, mirror_id: uuid.UUID) -> bool:
    """Compare-and-set ``sync_started_at``: True if no other sync of this mirror holds a live lease.

    Two overlapping pulls could otherwise apply an older fetch after a newer one (moving refs back,
    or deleting refs the newer fetch created)."""
    now = datetime.now(UTC)
    result = await session.execute(
        update(ForgeMirror)
        .where(ForgeMirror.id == mirror_id,
               or_(ForgeMirror.sync_started_at.is_(None), ForgeMirror.sync_started_at < now - timedelta(seconds=LEASE)))
        .values(sync_started_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


@job_handler("forge.mirror.push-targets", payload_type=PushEvent)
async def push_to_targets(ctx: JobContext, event: PushEvent) -> None:
    """Every accepted ref change queues a one-shot sync of the repository's push targets."""
    async with ctx.sessionmaker() as session, session.begin():
        rows = await session.execute(select(ForgeMirror).where(
            ForgeMirror.repo_id == uuid.UUID(event.repo_id), ForgeMirror.direction == "push",
            ForgeMirror.enabled.is_(True)))
        for mirror in rows.scalars():
            await enqueue(session, SYNC_JOB, MirrorSyncPayload(str(mirror.id), mirror.generation),
                          unique_key=f"{SYNC_JOB}:push:{mirror.id}")


push_events.subscribe(push_to_targets)
