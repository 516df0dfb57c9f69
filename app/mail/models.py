"""The mail log: one row per transactional mail, from queued to sent or failed.

It is where a permanent failure is recorded on the recipient ("550 no such user" for
bob@example.org) and what admins read at /account/admin/mail. Newsletter recipients keep their
own status in the newsletter's tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

QUEUED: Final = "queued"
SENT: Final = "sent"
FAILED: Final = "failed"
MAIL_STATES: Final = (QUEUED, SENT, FAILED)


class MailLog(UUIDv7AuditBase):
    """A mail handed to :func:`app.mail.send_mail`; ``created_at`` is when it was queued.

    ``smtp_code``/``smtp_answer`` hold the server's last answer: the failure of a ``failed`` row,
    or the reason a ``queued`` one is waiting for its next try (0 means no connection).
    """

    __tablename__ = "app_mail_log"
    __table_args__ = (Index("ix_app_mail_log_created_at", "created_at"),)

    to_address: Mapped[str] = mapped_column(String(254), index=True)
    subject: Mapped[str] = mapped_column(Text)
    tag: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    smtp_code: Mapped[int | None] = mapped_column(Integer, default=None)
    smtp_answer: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(255))
    sent_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
