"""cart: what an order was paid and refunded, and its online payment attempt

Revision ID: 1a2b3c4d5e03
Revises: 8d1a703e1718
Create Date: 2026-12-07 08:50:00.000000

"""

import warnings
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op
from advanced_alchemy.types import GUID, ORA_JSONB, Bool, DateTimeUTC, JsonB
from sqlalchemy import Text  # noqa: F401


if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("downgrade", "upgrade", "schema_upgrades", "schema_downgrades", "data_upgrades", "data_downgrades")

sa.GUID = GUID
sa.Bool = Bool
sa.DateTimeUTC = DateTimeUTC
sa.JsonB = JsonB
sa.ORA_JSONB = ORA_JSONB

# revision identifiers, used by Alembic.
revision = '1a2b3c4d5e03'
down_revision = '8d1a703e1718'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        schema_upgrades()
        data_upgrades()


def downgrade() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        data_downgrades()
        schema_downgrades()


def schema_upgrades() -> None:
    """schema upgrade migrations go here."""
    # server_default only to fill the rows already there; the model gives every new row its value.
    with op.batch_alter_table('cart_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paid_minor', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('refunded_minor', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('payment_attempt', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('cart_order', schema=None) as batch_op:
        batch_op.alter_column('paid_minor', server_default=None)
        batch_op.alter_column('refunded_minor', server_default=None)
        batch_op.alter_column('payment_attempt', server_default=None)
        batch_op.create_check_constraint(op.f('ck_cart_order_refund_within_paid'),
                                         'refunded_minor >= 0 AND refunded_minor <= paid_minor')


def schema_downgrades() -> None:
    """schema downgrade migrations go here."""
    with op.batch_alter_table('cart_order', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_cart_order_refund_within_paid'), type_='check')
        batch_op.drop_column('payment_attempt')
        batch_op.drop_column('refunded_minor')
        batch_op.drop_column('paid_minor')


def data_upgrades() -> None:
    """Orders marked paid before this revision: paid what they cost."""
    op.execute("UPDATE cart_order SET paid_minor = total_minor "
               "WHERE state IN ('paid', 'partially_fulfilled', 'fulfilled', 'refunded')")


def data_downgrades() -> None:
    """Add any optional data downgrade migrations here!"""
