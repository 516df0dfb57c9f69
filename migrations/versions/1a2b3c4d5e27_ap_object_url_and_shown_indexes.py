"""activitypub: index ap_object.url (notes looked up by their web address) and an account's shown
notes (the Mastodon API's statuses_count, read for every account a page renders)

Revision ID: 1a2b3c4d5e27
Revises: 1a2b3c4d5e21
Create Date: 2026-12-07 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1a2b3c4d5e27"
down_revision: str | None = "1a2b3c4d5e21"
branch_labels = None
depends_on = None

# As federation/activitypub/models.py has it at this revision.
SHOWN = "deleted IS false AND visibility <> 'direct'"


def upgrade() -> None:
    with op.batch_alter_table("ap_object", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ap_object_url"), ["url"], unique=False)
        batch_op.create_index("ix_ap_object_attributed_shown", ["attributed_to", "published"], unique=False,
                              postgresql_where=sa.text(SHOWN), sqlite_where=sa.text(SHOWN))


def downgrade() -> None:
    with op.batch_alter_table("ap_object", schema=None) as batch_op:
        batch_op.drop_index("ix_ap_object_attributed_shown")
        batch_op.drop_index(batch_op.f("ix_ap_object_url"))
