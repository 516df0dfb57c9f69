"""oauth: Mastodon client API apps (their website, PKCE only where the app offers it)

Revision ID: 1a2b3c4d5e08
Revises: 1a2b3c4d5e02
Create Date: 2026-12-07 09:00:00

"""

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("downgrade", "upgrade")

# revision identifiers, used by Alembic.
revision = '1a2b3c4d5e08'
down_revision = '1a2b3c4d5e02'
branch_labels: "str | Sequence[str] | None" = None
depends_on: "str | Sequence[str] | None" = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_client", schema=None) as batch_op:
        batch_op.add_column(sa.Column("website", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("pkce_optional", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("oauth_client", schema=None) as batch_op:
        batch_op.drop_column("pkce_optional")
        batch_op.drop_column("website")
