"""Gitea's integer ids beside our UUIDs (issue 19 item 2).

Typed Gitea clients (the OpenAPI-generated ones, the Go SDK behind tea, Renovate's types) decode
``id`` as an integer (swagger ``format: int64``); ours are UUIDv7. Forge keeps its own mapping,
``forge_gitea_id(kind, target, number)``, rather than adding columns to the account domain's tables:
one row per object that was ever shown through the API, numbered per kind from 1 (Gitea's ids are
per table), assigned on first need and never changed or reused. The rows of a deleted object
stay: a number stays that object's, as Gitea's autoincrement never hands an id out twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from forge.gitea_models import ForgeGiteaId

__all__ = ["ForgeGiteaId", "GiteaKind", "gitea_id", "gitea_ids", "target_of"]

GiteaKind = Literal["user", "repo", "hook", "status", "delivery"]
_ATTEMPTS = 8


async def gitea_ids(db: AsyncSession, kind: GiteaKind, targets: Iterable[UUID]) -> dict[UUID, int]:
    """The integer id of every target, assigning the next free number to those that have none.

    Each assignment runs in a savepoint: two requests numbering objects of one kind at once both
    read the same ``max(number)``; the loser's insert violates a unique constraint and retries
    with a fresh read (or finds the row the winner wrote for the same target).
    """
    wanted = list(dict.fromkeys(targets))
    if not wanted:
        return {}
    found: dict[UUID, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        rows = (await db.execute(
            select(ForgeGiteaId.target, ForgeGiteaId.number)
            .where(ForgeGiteaId.kind == kind, ForgeGiteaId.target.in_(chunk))
        )).tuples().all()
        found.update(rows)
    for target in wanted:
        if target not in found:
            found[target] = await _assign(db, kind, target)
    return found


async def gitea_id(db: AsyncSession, kind: GiteaKind, target: UUID) -> int:
    return (await gitea_ids(db, kind, [target]))[target]


async def target_of(db: AsyncSession, kind: GiteaKind, number: int) -> UUID | None:
    """The UUID behind a Gitea id (``/hooks/{id}``), or None."""
    if not 0 < number < 2**31:
        return None
    return (await db.execute(
        select(ForgeGiteaId.target).where(ForgeGiteaId.kind == kind, ForgeGiteaId.number == number)
    )).scalar_one_or_none()


async def _assign(db: AsyncSession, kind: GiteaKind, target: UUID) -> int:
    for _attempt in range(_ATTEMPTS):
        try:
            async with db.begin_nested():
                top = (await db.execute(
                    select(func.coalesce(func.max(ForgeGiteaId.number), 0)).where(ForgeGiteaId.kind == kind)
                )).scalar_one()
                number = int(top) + 1
                db.add(ForgeGiteaId(kind=kind, target=target, number=number))
                await db.flush()
            return number
        except IntegrityError:
            existing = (await db.execute(
                select(ForgeGiteaId.number).where(ForgeGiteaId.kind == kind, ForgeGiteaId.target == target)
            )).scalar_one_or_none()
            if existing is not None:
                return int(existing)
    raise RuntimeError(f"could not assign a Gitea id for {kind} {target}")
