"""cart money: VAT class on market products; VAT, weight and collection slot on orders and lines

Revision ID: 1a2b3c4d5e02
Revises: 1a2b3c4d5e05
Create Date: 2026-12-07 08:50:00.000000

"""

import warnings

import sqlalchemy as sa
from alembic import op

__all__ = ("data_downgrades", "data_upgrades", "downgrade", "schema_downgrades", "schema_upgrades", "upgrade")

# revision identifiers, used by Alembic.
revision = '1a2b3c4d5e02'
down_revision = '1a2b3c4d5e05'
branch_labels = None
depends_on = None


# Each migration runs in one transaction (PostgreSQL DDL is transactional), so a failed
# upgrade leaves the schema as it was. New columns carry server defaults so existing rows
# (orders placed before VAT was shown: 0 VAT, no slot) stay valid.
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
    with op.batch_alter_table('market_product', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax_class', sa.String(length=32), server_default='', nullable=False))
    with op.batch_alter_table('cart_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax_minor', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('shipping_rate_bp', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('weight_grams', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('collection_location', sa.String(length=120), server_default='',
                                      nullable=False))
        batch_op.add_column(sa.Column('collection_slot', sa.String(length=40), server_default='', nullable=False))
        batch_op.create_check_constraint(op.f('ck_cart_order_tax_within_total'),
                                         'tax_minor >= 0 AND tax_minor <= total_minor')
    with op.batch_alter_table('cart_order_line', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax_class', sa.String(length=32), server_default='', nullable=False))
        batch_op.add_column(sa.Column('tax_rate_bp', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('unit_weight_grams', sa.Integer(), server_default='0', nullable=False))


def schema_downgrades() -> None:
    with op.batch_alter_table('cart_order_line', schema=None) as batch_op:
        batch_op.drop_column('unit_weight_grams')
        batch_op.drop_column('tax_rate_bp')
        batch_op.drop_column('tax_class')
    with op.batch_alter_table('cart_order', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_cart_order_tax_within_total'), type_='check')
        batch_op.drop_column('collection_slot')
        batch_op.drop_column('collection_location')
        batch_op.drop_column('weight_grams')
        batch_op.drop_column('shipping_rate_bp')
        batch_op.drop_column('tax_minor')
    with op.batch_alter_table('market_product', schema=None) as batch_op:
        batch_op.drop_column('tax_class')


def data_upgrades() -> None:
    """Add any optional data upgrade migrations here!"""


def data_downgrades() -> None:
    """Add any optional data downgrade migrations here!"""
