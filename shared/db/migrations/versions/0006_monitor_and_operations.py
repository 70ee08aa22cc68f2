"""monitor and operations

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa
import shared.db.base


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('began', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('duration_ns', sa.BigInteger(), nullable=False),
    sa.Column('params', sa.Text(), nullable=True),
    sa.Column('impersonator', sa.String(length=80), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_log'))
    )
    with op.batch_alter_table('api_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_log_began'), ['began'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_log_username'), ['username'], unique=False)

    op.create_table('dead_letters',
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=False),
    sa.Column('subject', sa.String(length=256), nullable=True),
    sa.Column('datacontenttype', sa.String(length=64), nullable=True),
    sa.Column('data', sa.LargeBinary(), nullable=True),
    sa.Column('error_dest', sa.String(length=1024), nullable=True),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error_data', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('received', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_dead_letters'))
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letters_next_attempt'), ['next_attempt'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_state'), ['state'], unique=False)

    op.create_table('monitor_leases',
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('expires', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_started', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_finished', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_monitor_leases'))
    )
    op.create_table('service_errors',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('origin', sa.String(length=32), nullable=False),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('stack_trace', sa.Text(), nullable=False),
    sa.Column('acknowledged', sa.Boolean(), nullable=False),
    sa.Column('acknowledged_at', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledging_user', sa.String(length=80), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_errors'))
    )
    with op.batch_alter_table('service_errors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_errors_created'), ['created'], unique=False)

    op.create_table('storage_usage',
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('measured', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_bytes', sa.BigInteger(), nullable=True),
    sa.Column('sent', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('reason', 'object_id', name=op.f('pk_storage_usage'))
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('charged_until', shared.db.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('charges_closed', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suspended', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('suspension_message', sa.String(length=512), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('suspension_message')
        batch_op.drop_column('suspended')

    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('charges_closed')
        batch_op.drop_column('charged_until')

    op.drop_table('storage_usage')
    with op.batch_alter_table('service_errors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_errors_created'))

    op.drop_table('service_errors')
    op.drop_table('monitor_leases')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_state'))
        batch_op.drop_index(batch_op.f('ix_dead_letters_next_attempt'))

    op.drop_table('dead_letters')
    with op.batch_alter_table('api_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_log_username'))
        batch_op.drop_index(batch_op.f('ix_api_log_began'))

    op.drop_table('api_log')
