"""The market import's table: one row per CSV upload with its progress (domains/market/csv_import.py).

The upload itself and its per-row report are files in ``DATA_DIR/market/imports/``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["DONE", "FAILED", "QUEUED", "RUNNING", "CsvImport"]

QUEUED: Final = "queued"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"


class CsvImport(UUIDv7AuditBase):
    """One CSV upload and its progress. The counts change in the transaction of each chunk."""

    __tablename__ = "market_csv_import"

    owner_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    @property
    def percent(self) -> int:
        if self.state == DONE:
            return 100
        return min(99, self.processed_rows * 100 // self.total_rows) if self.total_rows else 0

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)
