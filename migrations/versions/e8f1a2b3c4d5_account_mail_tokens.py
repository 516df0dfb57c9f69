"""account mail links: account_mail_token, account_user.email_verified_at (issue 15 item 2)

Revision ID: e8f1a2b3c4d5
Revises: c3d4e5f6a7b8
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "e8f1a2b3c4d5"
down_revision = "c3d4e5f6a7b8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing members start unconfirmed: nobody ever proved they read mail at their address.
    with op.batch_alter_table("account_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_verified_at", DateTimeUTC(timezone=True), nullable=True))
    op.create_table(
        "account_mail_token",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("new_email", sa.String(length=254), nullable=True),
        sa.Column("expires_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("used_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["account_user.id"],
                                name=op.f("fk_account_mail_token_user_id_account_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_mail_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_mail_token_token_hash")),
    )
    with op.batch_alter_table("account_mail_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_mail_token_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_mail_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_mail_token_user_id"))
    op.drop_table("account_mail_token")
    with op.batch_alter_table("account_user", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")
