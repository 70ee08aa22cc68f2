"""ledger charges: the built-in Account Server's charges, organisation members, billing days,
product privacy defaults and coin allowances

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
import shared.db.base


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_processing_charges',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('auth_code', sa.BigInteger(), nullable=False),
    sa.Column('sqn', sa.BigInteger(), nullable=False),
    sa.Column('eoc', sa.Boolean(), nullable=False),
    sa.Column('coins', sa.String(length=40), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('username', sa.Text(), nullable=False),
    sa.Column('product_id', sa.String(length=64), nullable=True),
    sa.Column('unit_id', sa.String(length=64), nullable=True),
    sa.Column('organisation_id', sa.String(length=64), nullable=True),
    sa.Column('merchant_kind', sa.Text(), nullable=False),
    sa.Column('merchant_name', sa.Text(), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('timestamp', sa.Text(), nullable=False),
    sa.Column('received', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('additional_data', sa.Text(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_processing_charges')),
    sa.UniqueConstraint('auth_code', 'sqn', name=op.f('uq_ledger_processing_charges_auth_code_sqn'))
    )
    with op.batch_alter_table('ledger_processing_charges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_processing_charges_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_processing_charges_product_id'), ['product_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_processing_charges_received'), ['received'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_processing_charges_unit_id'), ['unit_id'], unique=False)

    op.create_table('ledger_storage_charges',
    sa.Column('payer_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('item', sa.String(length=256), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('current_bytes', sa.BigInteger(), nullable=False),
    sa.Column('peak_bytes', sa.BigInteger(), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=True),
    sa.Column('auth_code', sa.BigInteger(), nullable=False),
    sa.Column('updated', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('additional_data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('payer_id', 'reason', 'item', 'day', name=op.f('pk_ledger_storage_charges'))
    )
    op.create_table('ledger_organisation_members',
    sa.Column('organisation_id', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['ledger_organisations.id'], name=op.f('fk_ledger_organisation_members_organisation_id_ledger_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('organisation_id', 'username', name=op.f('pk_ledger_organisation_members'))
    )
    with op.batch_alter_table('ledger_organisation_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_organisation_members_username'), ['username'], unique=False)

    with op.batch_alter_table('ledger_organisations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('default_product_privacy', sa.String(length=16), server_default='DEFAULT_PRIVATE', nullable=False))

    with op.batch_alter_table('ledger_products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allowance', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('coin_limit', sa.BigInteger(), nullable=True))

    with op.batch_alter_table('ledger_units', schema=None) as batch_op:
        batch_op.add_column(sa.Column('billing_day', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('default_product_privacy', sa.String(length=16), server_default='DEFAULT_PRIVATE', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('ledger_units', schema=None) as batch_op:
        batch_op.drop_column('default_product_privacy')
        batch_op.drop_column('billing_day')

    with op.batch_alter_table('ledger_products', schema=None) as batch_op:
        batch_op.drop_column('coin_limit')
        batch_op.drop_column('allowance')

    with op.batch_alter_table('ledger_organisations', schema=None) as batch_op:
        batch_op.drop_column('default_product_privacy')
        batch_op.drop_column('owner')

    with op.batch_alter_table('ledger_organisation_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_organisation_members_username'))

    op.drop_table('ledger_organisation_members')
    op.drop_table('ledger_storage_charges')
    with op.batch_alter_table('ledger_processing_charges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_processing_charges_unit_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_processing_charges_received'))
        batch_op.drop_index(batch_op.f('ix_ledger_processing_charges_product_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_processing_charges_organisation_id'))

    op.drop_table('ledger_processing_charges')
