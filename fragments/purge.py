"""Edge invalidation: durable ``edge.purge`` jobs carrying surrogate keys (design §7).

A service calls :func:`emit_purge` with its own session, so the purge is written in the same
transaction as the change. The worker sends ``PURGE /`` with ``xkey-soft: <keys>`` (keeps
grace, so stale-while-revalidate still serves) or, for takedowns, ``xkey: <keys>`` to every
URL in ``settings.edge_purge_urls``. With none configured nothing is sent and the job is done.

Keys are :data:`SurrogateKey` values built in one place per domain (``domains/<area>/keys.py``,
``forge/keys.py``, ``fragments/keys.py`` for the site's own), and both the response that is
tagged and the change that purges use the same builder, so the two cannot drift apart
(tests/fragments/test_purge_paths.py checks every key a page or fragment emits).

The same keys invalidate the in-process/Redis fragment cache (fragments/cache.py): the keys are
noted on the session, and when its transaction commits they are dropped everywhere before the
response that follows is sent; a rollback forgets them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NewType

import httpx
import msgspec
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from app.db import settings_of
from app.jobs import JobContext, enqueue, job_handler
from app.jobs.models import Job

__all__ = ["PURGE_KIND", "PurgePayload", "SurrogateKey", "emit_purge", "send_purge"]

log = logging.getLogger("rose_ash.fragments.purge")

PURGE_KIND = "edge.purge"
PURGE_TIMEOUT = 10.0

# A string a keys module built: emit_purge takes nothing else, so a purge cannot be spelled by hand.
SurrogateKey = NewType("SurrogateKey", str)

_PENDING = "rose_ash.purge_keys"  # session.info: keys to drop from the fragment cache on commit


class PurgePayload(msgspec.Struct, frozen=True):
    keys: list[str]
    hard: bool = False


async def emit_purge(session: AsyncSession, keys: Iterable[SurrogateKey], *, hard: bool = False) -> Job | None:
    """Queue a purge of ``keys`` in ``session``'s transaction (flushed, not committed)."""
    wanted = sorted({k.strip() for k in keys if k and k.strip()})
    if not wanted:
        return None
    for key in wanted:
        if any(c.isspace() for c in key):
            raise ValueError(f"surrogate keys contain no whitespace: {key!r}")
    session.sync_session.info.setdefault(_PENDING, set()).update(wanted)
    return await enqueue(session, PURGE_KIND, PurgePayload(keys=wanted, hard=hard))


@event.listens_for(Session, "after_commit")
def _invalidate_committed(session: Session) -> None:
    keys = session.info.pop(_PENDING, None)
    if keys:
        from fragments.cache import invalidate

        invalidate(settings_of(session), keys)


@event.listens_for(Session, "after_transaction_end")
def _forget_rolled_back(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the keys are gone already; after the outermost rollback they were never true.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


async def send_purge(urls: Iterable[str], payload: PurgePayload, *, client: httpx.AsyncClient | None = None) -> int:
    """Send the purge to every edge; raise if any refuses (the job is then retried). Returns sends."""
    header = "xkey" if payload.hard else "xkey-soft"
    sent = 0
    own = client is None
    http = client or httpx.AsyncClient(timeout=PURGE_TIMEOUT)
    try:
        failures: list[str] = []
        for url in urls:
            try:
                response = await http.request("PURGE", url, headers={header: " ".join(payload.keys)})
            except httpx.HTTPError as exc:
                failures.append(f"{url}: {exc!r}")
                continue
            if response.status_code >= 300:
                failures.append(f"{url}: HTTP {response.status_code}")
                continue
            sent += 1
            log.info("purged %s at %s (%s): %s", " ".join(payload.keys), url, header, response.reason_phrase)
        if failures:
            raise RuntimeError("edge purge failed: " + "; ".join(failures))
    finally:
        if own:
            await http.aclose()
    return sent


@job_handler(PURGE_KIND, backoff_base=2.0, backoff_cap=300.0)
async def run_purge(ctx: JobContext, payload: PurgePayload) -> None:
    # This process's fragment caches too: without Redis, a purge committed by another process (a
    # `rose-ash` command, a separate worker) reaches the web process this way, when its worker runs.
    from fragments.cache import invalidate

    invalidate(None, payload.keys)
    urls = tuple(getattr(ctx.settings, "edge_purge_urls", ()) or ())
    if not urls:
        return  # no edge configured: nothing to send, the job is done
    client = ctx.services.get("http") if ctx.services else None
    await send_purge(urls, payload, client=client if isinstance(client, httpx.AsyncClient) else None)
