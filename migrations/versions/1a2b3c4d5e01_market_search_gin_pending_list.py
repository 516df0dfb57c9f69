"""market search: a small GIN pending list on the search documents' tsvector index

Revision ID: 1a2b3c4d5e01
Revises: 1a2b3c4d5e03
Create Date: 2026-12-07 08:50:00

With GIN's fast update, new entries wait in a pending list (up to ``gin_pending_list_limit``,
4 MB by default) until a vacuum or an overflow merges them, and every search scans that list
row by row: after the 50,000-row CSV import of bench/market.py, 4,764 pending documents made
the index lookup for "pear & jam" 19 ms instead of 1 ms. A 64 kB list keeps fast update's
batched inserts (the CSV import) and bounds what a search scans. SQLite: nothing to do.
"""

from typing import TYPE_CHECKING

from alembic import op

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("downgrade", "upgrade")

# revision identifiers, used by Alembic.
revision = '1a2b3c4d5e01'
down_revision = '1a2b3c4d5e03'
branch_labels: "str | Sequence[str] | None" = None
depends_on: "str | Sequence[str] | None" = None

INDEX = "ix_market_search_document_document"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX {INDEX} SET (gin_pending_list_limit = 64)")
    # Merge what is pending now, so the first searches after the upgrade do not scan it.
    op.execute(f"SELECT gin_clean_pending_list('{INDEX}'::regclass)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX {INDEX} RESET (gin_pending_list_limit)")
