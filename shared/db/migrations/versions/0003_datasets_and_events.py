"""datasets and events

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import shared.db.base


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('name', sa.String(length=260), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('labels', sa.Text(), nullable=False),
    sa.Column('last_updated', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets'))
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_datasets_owner'), ['owner'], unique=False)

    op.create_table('inbox',
    sa.Column('consumer', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('handled_at', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_inbox'))
    )
    op.create_table('outbox',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=False),
    sa.Column('subject', sa.String(length=256), nullable=True),
    sa.Column('datacontenttype', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_created'), ['created'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_delivered_at'), ['delivered_at'], unique=False)

    op.create_table('dataset_editors',
    sa.Column('dataset_id', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_editors_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_id', 'username', name=op.f('pk_dataset_editors'))
    )
    with op.batch_alter_table('dataset_editors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_editors_username'), ['username'], unique=False)

    op.create_table('dataset_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dataset_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('file_name', sa.String(length=260), nullable=False),
    sa.Column('source_ref', sa.String(length=1024), nullable=False),
    sa.Column('mime_type', sa.String(length=64), nullable=False),
    sa.Column('format_extra_variables', sa.Text(), nullable=True),
    sa.Column('processing_stage', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=True),
    sa.Column('records', sa.BigInteger(), nullable=True),
    sa.Column('storage_key', sa.String(length=1024), nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('authorisation_code', sa.Integer(), nullable=True),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('annotations', sa.Text(), nullable=False),
    sa.Column('last_updated', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleting_user', sa.String(length=80), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_versions_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_versions')),
    sa.UniqueConstraint('dataset_id', 'version', name=op.f('uq_dataset_versions_dataset_id_version'))
    )
    with op.batch_alter_table('dataset_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_versions_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_versions_digest'), ['digest'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('dataset_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_versions_digest'))
        batch_op.drop_index(batch_op.f('ix_dataset_versions_dataset_id'))

    op.drop_table('dataset_versions')
    with op.batch_alter_table('dataset_editors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_editors_username'))

    op.drop_table('dataset_editors')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_delivered_at'))
        batch_op.drop_index(batch_op.f('ix_outbox_created'))

    op.drop_table('outbox')
    op.drop_table('inbox')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_datasets_owner'))

    op.drop_table('datasets')
