"""jobs and instances

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import shared.db.base


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('instances',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('application_id', sa.String(length=80), nullable=False),
    sa.Column('application_version', sa.String(length=24), nullable=False),
    sa.Column('application_type', sa.String(length=16), nullable=False),
    sa.Column('specification', sa.Text(), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('job_collection', sa.String(length=80), nullable=True),
    sa.Column('job_job', sa.String(length=80), nullable=True),
    sa.Column('job_version', sa.String(length=24), nullable=True),
    sa.Column('job_name', sa.String(length=80), nullable=True),
    sa.Column('job_image_type', sa.String(length=16), nullable=True),
    sa.Column('image', sa.String(length=256), nullable=True),
    sa.Column('command', sa.Text(), nullable=True),
    sa.Column('outputs', sa.Text(), nullable=False),
    sa.Column('phase', sa.String(length=24), nullable=False),
    sa.Column('launched', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stopped', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('delete_task_id', sa.String(length=64), nullable=True),
    sa.Column('debug', sa.Boolean(), nullable=False),
    sa.Column('callback_url', sa.String(length=2048), nullable=True),
    sa.Column('callback_context', sa.String(length=256), nullable=True),
    sa.Column('callback_token', sa.String(length=22), nullable=True),
    sa.Column('launch_exchange_rate', sa.String(length=40), nullable=True),
    sa.Column('cost', sa.String(length=40), nullable=False),
    sa.Column('coins', sa.String(length=40), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('authorisation_code', sa.Integer(), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instances'))
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instances_deleted'), ['deleted'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_owner'), ['owner'], unique=False)
        batch_op.create_index('ix_instances_project_id_name', ['project_id', 'name'], unique=False)

    op.create_table('job_manifests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('header', sa.Text(), nullable=True),
    sa.Column('params', sa.Text(), nullable=True),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('creator', sa.String(length=80), nullable=True),
    sa.Column('job_definition_files_loaded', sa.Integer(), nullable=True),
    sa.Column('job_definitions_loaded', sa.Integer(), nullable=True),
    sa.Column('last_successful_load_time', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_load_time', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_load_status', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_manifests')),
    sa.UniqueConstraint('url', name=op.f('uq_job_manifests_url'))
    )
    op.create_table('instance_charges',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('sqn', sa.BigInteger(), nullable=False),
    sa.Column('cost', sa.String(length=40), nullable=False),
    sa.Column('total', sa.String(length=40), nullable=False),
    sa.Column('coins', sa.String(length=40), nullable=False),
    sa.Column('timestamp', sa.String(length=40), nullable=False),
    sa.Column('recorded', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_instance_charges_instance_id_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'sqn', name=op.f('pk_instance_charges'))
    )
    op.create_table('instance_logs',
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.BigInteger(), nullable=False),
    sa.Column('last_phase', sa.String(length=24), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_instance_logs_instance_id_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_instance_logs'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('collection', sa.String(length=80), nullable=False),
    sa.Column('job', sa.String(length=80), nullable=False),
    sa.Column('version', sa.String(length=24), nullable=False),
    sa.Column('manifest_id', sa.Integer(), nullable=True),
    sa.Column('definition_file', sa.String(length=2048), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('category', sa.String(length=80), nullable=True),
    sa.Column('keywords', sa.Text(), nullable=False),
    sa.Column('doc_url', sa.String(length=2048), nullable=True),
    sa.Column('image_name', sa.String(length=120), nullable=False),
    sa.Column('image_tag', sa.String(length=24), nullable=False),
    sa.Column('image_type', sa.String(length=16), nullable=False),
    sa.Column('image_project_directory', sa.String(length=260), nullable=False),
    sa.Column('image_working_directory', sa.String(length=260), nullable=False),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('command_encoding', sa.String(length=16), nullable=False),
    sa.Column('definition', sa.Text(), nullable=False),
    sa.Column('required_assets', sa.Text(), nullable=False),
    sa.Column('replaces', sa.Text(), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['manifest_id'], ['job_manifests.id'], name=op.f('fk_jobs_manifest_id_job_manifests'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('collection', 'job', 'version', name=op.f('uq_jobs_collection_job_version'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_manifest_id'), ['manifest_id'], unique=False)

    op.create_table('job_exchange_rates',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('rate', sa.String(length=40), nullable=False),
    sa.Column('comment', sa.String(length=80), nullable=True),
    sa.Column('user', sa.String(length=80), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_exchange_rates_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_exchange_rates'))
    )
    with op.batch_alter_table('job_exchange_rates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_exchange_rates_job_id'), ['job_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('job_exchange_rates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_exchange_rates_job_id'))

    op.drop_table('job_exchange_rates')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_manifest_id'))

    op.drop_table('jobs')
    op.drop_table('instance_logs')
    op.drop_table('instance_charges')
    op.drop_table('job_manifests')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index('ix_instances_project_id_name')
        batch_op.drop_index(batch_op.f('ix_instances_owner'))
        batch_op.drop_index(batch_op.f('ix_instances_deleted'))

    op.drop_table('instances')
