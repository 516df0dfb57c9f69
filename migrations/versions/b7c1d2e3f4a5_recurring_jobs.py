"""recurring jobs: app_job.repeat_seconds (app.jobs.queue.every)

Revision ID: b7c1d2e3f4a5
Revises: eea758aaac14
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b7c1d2e3f4a5"
down_revision = "eea758aaac14"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repeat_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app_job", schema=None) as batch_op:
        batch_op.drop_column("repeat_seconds")
