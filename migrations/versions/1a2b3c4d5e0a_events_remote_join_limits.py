"""events: one live place per fediverse account and date; remote places counted per server

Revision ID: 1a2b3c4d5e0a
Revises: 1a2b3c4d5e08
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "1a2b3c4d5e0a"
down_revision = "1a2b3c4d5e08"
branch_labels = None
depends_on = None

LIVE = "state <> 'cancelled' AND remote_actor IS NOT NULL"


def _server(uri: str) -> str:
    try:
        return (urlsplit(uri).hostname or "")[:255]
    except ValueError:
        return ""


def upgrade() -> None:
    op.add_column("events_booking", sa.Column("remote_actor", sa.String(length=2048), nullable=True))
    op.add_column("events_booking", sa.Column("remote_host", sa.String(length=255), nullable=True))
    # Existing remote bookings (ap_event_join) get their account and server. Should an account
    # already hold two live places on a date (the race this index closes), only the first is
    # marked: the index can be built, and the other is still cancelled by the account's Leave.
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT b.id, j.actor_uri, b.event_id, b.occurrence, b.state FROM ap_event_join j "
        "JOIN events_booking b ON b.id = j.booking_id ORDER BY b.created_at, b.id")).all()
    seen: set[tuple[object, str, str]] = set()
    for booking_id, actor_uri, event_id, occurrence, state in rows:
        slot = (event_id, occurrence, actor_uri)
        mark = state == "cancelled" or slot not in seen
        if state != "cancelled":
            seen.add(slot)
        bind.execute(sa.text("UPDATE events_booking SET remote_actor = :actor, remote_host = :host WHERE id = :id"),
                     {"actor": actor_uri if mark else None, "host": _server(actor_uri), "id": booking_id})
    op.create_index("uq_events_booking_remote_date", "events_booking", ["event_id", "occurrence", "remote_actor"],
                    unique=True, postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))


def downgrade() -> None:
    op.drop_index("uq_events_booking_remote_date", table_name="events_booking")
    op.drop_column("events_booking", "remote_host")
    op.drop_column("events_booking", "remote_actor")
