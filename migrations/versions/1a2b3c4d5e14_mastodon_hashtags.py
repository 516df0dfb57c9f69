"""ap_hashtag and ap_media: notes' hashtags (the tag timeline, hashtag search) and members'
uploaded images (the Mastodon API's media)

Revision ID: 1a2b3c4d5e14
Revises: 1a2b3c4d5e0a
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op

revision = "1a2b3c4d5e14"
down_revision: str | None = "1a2b3c4d5e13"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ap_hashtag",
        sa.Column("object_id", GUID(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["object_id"], ["ap_object.id"], name=op.f("fk_ap_hashtag_object_id_ap_object"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ap_hashtag")),
        sa.UniqueConstraint("name", "object_id", name="uq_ap_hashtag_name_object"),
    )
    with op.batch_alter_table("ap_hashtag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ap_hashtag_object_id"), ["object_id"], unique=False)
    op.create_table(
        "ap_media",
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("object_id", GUID(length=16), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("widths", JsonB, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["account_user.id"], name=op.f("fk_ap_media_user_id_account_user"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["object_id"], ["ap_object.id"], name=op.f("fk_ap_media_object_id_ap_object"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ap_media")),
    )
    with op.batch_alter_table("ap_media", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ap_media_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ap_media_object_id"), ["object_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ap_media_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ap_media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ap_media_sha256"))
        batch_op.drop_index(batch_op.f("ix_ap_media_object_id"))
        batch_op.drop_index(batch_op.f("ix_ap_media_user_id"))
    op.drop_table("ap_media")
    with op.batch_alter_table("ap_hashtag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ap_hashtag_object_id"))
    op.drop_table("ap_hashtag")
