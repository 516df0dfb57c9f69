"""market CSV import runs: progress and counts of each upload (domains/market/csv_import.py)

Revision ID: d1e2f3a4b5c6
Revises: c5d6e7f8a9b0
Create Date: 2026-12-07 02:10:00

Hand-written; tests/app/test_migrations.py compares the migrated schema with the models on
SQLite and PostgreSQL. The uploaded files and per-row reports live in DATA_DIR, not here.
"""

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op
from advanced_alchemy.types import GUID, DateTimeUTC

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("downgrade", "upgrade")

revision = "d1e2f3a4b5c6"
down_revision = "c5d6e7f8a9b0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "market_csv_import",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("owner_id", GUID(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("processed_rows", sa.Integer(), nullable=False),
        sa.Column("created_count", sa.Integer(), nullable=False),
        sa.Column("updated_count", sa.Integer(), nullable=False),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["account_user.id"],
                                name=op.f("fk_market_csv_import_owner_id_account_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_csv_import")),
    )
    with op.batch_alter_table("market_csv_import", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_market_csv_import_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("market_csv_import", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_market_csv_import_owner_id"))
    op.drop_table("market_csv_import")
