"""forge mirrors: follow_force, last_backups (pull) and pushed_refs (push leases)

Revision ID: f2a3b4c5d6e7
Revises: 4e9f138acc30
Create Date: 2026-12-07 05:30:00.000000

"""

import warnings

import sqlalchemy as sa
from alembic import op

__all__ = ("downgrade", "upgrade")

# revision identifiers, used by Alembic.
revision = "f2a3b4c5d6e7"
down_revision = "4e9f138acc30"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        with op.batch_alter_table("forge_mirror", schema=None) as batch_op:
            batch_op.add_column(sa.Column("follow_force", sa.Boolean(), nullable=False, server_default=sa.false()))
            batch_op.add_column(sa.Column("last_backups", sa.Text(), nullable=False, server_default=""))
            batch_op.add_column(sa.Column("pushed_refs", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        with op.batch_alter_table("forge_mirror", schema=None) as batch_op:
            batch_op.drop_column("pushed_refs")
            batch_op.drop_column("last_backups")
            batch_op.drop_column("follow_force")
