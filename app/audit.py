"""The audit log: who did what to whose data, written in the same transaction as the action.

Every administrator action on another member's data (role changes, edits of others' posts,
access to or changes of others' private repositories, ...) calls :func:`record` with the
acting user and a short action name; the row commits or rolls back with the action itself, so
the log never claims what did not happen and never misses what did. The kernel owns the table
so no domain writes another domain's rows: domains call :func:`record` and pass plain values.

Actors and subjects are kept as ids plus the username at the time, without foreign keys: the
log outlives the accounts it names. Administrators read it newest first at
``/account/admin/audit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Index, String, Text, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

SYSTEM: Final = "(system)"
PER_PAGE: Final = 50
MAX_DETAIL: Final = 2000


class Actor(Protocol):
    """Who acted: the account domain's ``User`` fits (the kernel imports no domain)."""

    @property
    def id(self) -> UUID: ...

    @property
    def username(self) -> str: ...


class AuditEntry(UUIDv7AuditBase):
    """One audited action. ``created_at`` (UUIDv7AuditBase) is when; ids are time-ordered."""

    __tablename__ = "app_audit_entry"
    __table_args__ = (Index("ix_app_audit_entry_created_at", "created_at"),)  # the page reads newest first

    actor_id: Mapped[UUID | None] = mapped_column(default=None, index=True)
    actor_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    # What was acted on, as people read it: "@bob", "bob/secret", "post “Hello” (hello)".
    target: Mapped[str] = mapped_column(String(300))
    # The member whose data it is, when there is one.
    subject_id: Mapped[UUID | None] = mapped_column(default=None, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


async def record(db: AsyncSession, actor: Actor | None, action: str, target: str, detail: str = "", *,
                 subject_id: UUID | None = None) -> AuditEntry:
    """Add an entry to ``db``'s transaction (it commits or rolls back with the caller's change).

    ``actor`` None means the system itself: the command line, an import.
    """
    entry = AuditEntry(
        actor_id=actor.id if actor is not None else None,
        actor_name=actor.username if actor is not None else SYSTEM,
        action=action[:64], target=target[:300], subject_id=subject_id, detail=detail[:MAX_DETAIL],
    )
    db.add(entry)
    await db.flush()
    return entry


async def page_of(db: AsyncSession, page: int = 1, per_page: int = PER_PAGE) -> tuple[Sequence[AuditEntry], int]:
    """Entries newest first, one page of them, and the total count."""
    total = int((await db.execute(select(func.count()).select_from(AuditEntry))).scalar_one())
    rows = (await db.execute(
        select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    )).scalars().all()
    return rows, total
