"""workflows: Workflow definitions, their runs in Projects and the steps of each run

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
import shared.db.base


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('running_workflows',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('workflow_id', sa.String(length=64), nullable=False),
    sa.Column('workflow_name', sa.String(length=80), nullable=False),
    sa.Column('workflow_version', sa.String(length=80), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('running_user', sa.String(length=80), nullable=False),
    sa.Column('stopping_user', sa.String(length=80), nullable=True),
    sa.Column('variables', sa.Text(), nullable=False),
    sa.Column('debug', sa.String(length=80), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('error_num', sa.Integer(), nullable=False),
    sa.Column('error_msg', sa.Text(), nullable=True),
    sa.Column('started', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_running_workflows'))
    )
    with op.batch_alter_table('running_workflows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_running_workflows_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_running_workflows_running_user'), ['running_user'], unique=False)
        batch_op.create_index(batch_op.f('ix_running_workflows_workflow_id'), ['workflow_id'], unique=False)

    op.create_table('workflows',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('creator', sa.String(length=80), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('scope_id', sa.String(length=64), nullable=True),
    sa.Column('definition', sa.Text(), nullable=False),
    sa.Column('workflow_name', sa.Text(), nullable=True),
    sa.Column('workflow_description', sa.Text(), nullable=True),
    sa.Column('validation_error_num', sa.Integer(), nullable=False),
    sa.Column('validation_error_msg', sa.Text(), nullable=True),
    sa.Column('version', sa.String(length=80), nullable=True),
    sa.Column('source_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['workflows.id'], name=op.f('fk_workflows_source_id_workflows')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workflows'))
    )
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workflows_created'), ['created'], unique=False)
        batch_op.create_index(batch_op.f('ix_workflows_creator'), ['creator'], unique=False)
        batch_op.create_index(batch_op.f('ix_workflows_scope_id'), ['scope_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_workflows_source_id'), ['source_id'], unique=False)

    op.create_table('running_workflow_steps',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('running_workflow_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('replica', sa.Integer(), nullable=False),
    sa.Column('replicas', sa.Integer(), nullable=False),
    sa.Column('prior_step_id', sa.String(length=64), nullable=True),
    sa.Column('variables', sa.Text(), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=True),
    sa.Column('task_id', sa.String(length=64), nullable=True),
    sa.Column('outputs', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('error_num', sa.Integer(), nullable=False),
    sa.Column('error_msg', sa.Text(), nullable=True),
    sa.Column('started', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['running_workflow_id'], ['running_workflows.id'], name=op.f('fk_running_workflow_steps_running_workflow_id_running_workflows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_running_workflow_steps')),
    sa.UniqueConstraint('instance_id', name=op.f('uq_running_workflow_steps_instance_id')),
    sa.UniqueConstraint('running_workflow_id', 'name', 'replica', name=op.f('uq_running_workflow_steps_running_workflow_id_name_replica'))
    )
    with op.batch_alter_table('running_workflow_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_running_workflow_steps_running_workflow_id'), ['running_workflow_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('running_workflow_steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_running_workflow_steps_running_workflow_id'))

    op.drop_table('running_workflow_steps')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workflows_source_id'))
        batch_op.drop_index(batch_op.f('ix_workflows_scope_id'))
        batch_op.drop_index(batch_op.f('ix_workflows_creator'))
        batch_op.drop_index(batch_op.f('ix_workflows_created'))

    op.drop_table('workflows')
    with op.batch_alter_table('running_workflows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_running_workflows_workflow_id'))
        batch_op.drop_index(batch_op.f('ix_running_workflows_running_user'))
        batch_op.drop_index(batch_op.f('ix_running_workflows_project_id'))

    op.drop_table('running_workflows')
