"""Mirror configuration: pull mirrors (fetch a remote into a repository on a schedule) and push
targets (push a repository to another forge), design/forge.md §3.5.

The credential for the remote (a token sent as ``Authorization: token …``) is stored encrypted
with a key derived from SECRET_KEY (:mod:`forge.mirror`), never in the URL.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

MIRROR_DIRECTIONS = ("pull", "push")


class ForgeMirror(UUIDv7AuditBase):
    __tablename__ = "forge_mirror"
    __table_args__ = (UniqueConstraint("repo_id", "direction", "remote_url", name="uq_forge_mirror_repo_dir_url"),)

    repo_id: Mapped[UUID] = mapped_column(ForeignKey("forge_repo.id", ondelete="CASCADE"), index=True)
    # "pull": fetch remote_url into this repository; "push": push this repository to remote_url.
    direction: Mapped[str] = mapped_column(String(8))
    remote_url: Mapped[str] = mapped_column(String(2048))
    # AES-GCM ciphertext of the token for the remote (None = anonymous).
    credential: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    interval_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped whenever the schedule is (re)started; a queued sync job of an older generation is a no-op,
    # so a reconfigured mirror never runs two self-rescheduling chains.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # Set while a sync runs (a lease: syncs of one mirror never overlap; a crashed one expires).
    sync_started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # Pull: follow a force-pushed (or tag-moving) upstream; every replaced tip is first kept under
    # refs/mirror-backup/<UTC time>/... in the same ref transaction. Off: such a sync applies nothing.
    follow_force: Mapped[bool] = mapped_column(Boolean, default=False)
    # Pull: "<backup ref> <oid>" lines of the last sync that kept replaced or deleted tips.
    last_backups: Mapped[str] = mapped_column(Text, default="")
    # Push: JSON {ref: oid} of what this mirror last pushed and the target accepted; each ref's next
    # push is leased on it (never on what the target shows), so work done on the target is kept.
    pushed_refs: Mapped[str] = mapped_column(Text, default="")
