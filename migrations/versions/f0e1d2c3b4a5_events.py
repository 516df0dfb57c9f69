"""events: events_calendar and events_event

Revision ID: f0e1d2c3b4a5
Revises: f2a3b4c5d6e7
Create Date: 2026-12-07 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op

revision = "f0e1d2c3b4a5"
down_revision = "f2a3b4c5d6e7"
branch_labels = None
depends_on = None


def _audit() -> list[sa.Column[object]]:
    return [sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
            sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
            sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "events_calendar",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        *_audit(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_calendar")),
    )
    op.create_index(op.f("ix_events_calendar_slug"), "events_calendar", ["slug"], unique=True)
    op.create_table(
        "events_event",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("calendar_id", GUID(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=191), nullable=False),
        sa.Column("description_md", sa.Text(), nullable=False),
        sa.Column("description_html", sa.Text(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("starts_local", sa.DateTime(timezone=False), nullable=False),
        sa.Column("ends_local", sa.DateTime(timezone=False), nullable=False),
        sa.Column("starts_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("ends_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("rrule", sa.String(length=500), nullable=False),
        sa.Column("exdates", JsonB, nullable=False),
        sa.Column("series_ends_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("place_name", sa.String(length=200), nullable=False),
        sa.Column("place_address", sa.String(length=400), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("online_url", sa.String(length=500), nullable=False),
        sa.Column("organiser", sa.String(length=200), nullable=False),
        sa.Column("tags", JsonB, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("visibility", sa.String(length=10), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        *_audit(),
        sa.CheckConstraint("ends_at >= starts_at", name=op.f("ck_events_event_ends_after_start")),
        sa.CheckConstraint("status IN ('scheduled', 'cancelled', 'postponed')",
                           name=op.f("ck_events_event_status_known")),
        sa.CheckConstraint("visibility IN ('public', 'members', 'unlisted')",
                           name=op.f("ck_events_event_visibility_known")),
        sa.ForeignKeyConstraint(["calendar_id"], ["events_calendar.id"],
                                name=op.f("fk_events_event_calendar_id_events_calendar"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events_event")),
    )
    for column, unique in (("calendar_id", False), ("slug", True), ("starts_at", False), ("series_ends_at", False),
                           ("status", False), ("visibility", False)):
        op.create_index(op.f(f"ix_events_event_{column}"), "events_event", [column], unique=unique)


def downgrade() -> None:
    op.drop_table("events_event")
    op.drop_table("events_calendar")
