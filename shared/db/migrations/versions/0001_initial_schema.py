"""initial schema

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa
import shared.db.base


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_organisations',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_organisations')),
    sa.UniqueConstraint('name', name=op.f('uq_ledger_organisations_name'))
    )
    op.create_table('projects',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('name_key', sa.String(length=80), nullable=True),
    sa.Column('creator', sa.String(length=80), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('private', sa.Boolean(), nullable=False),
    sa.Column('product_id', sa.String(length=64), nullable=False),
    sa.Column('product_flavour', sa.String(length=32), nullable=True),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('organisation_id', sa.String(length=64), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('deleted', shared.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('unit_id', 'name_key', name=op.f('uq_projects_unit_id_name_key'))
    )
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_projects_deleted'), ['deleted'], unique=False)

    op.create_table('tasks',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('purpose_id', sa.String(length=64), nullable=False),
    sa.Column('purpose_version', sa.Integer(), nullable=True),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=True),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('removal', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('processing_stage', sa.String(length=16), nullable=True),
    sa.Column('image', sa.String(length=256), nullable=True),
    sa.Column('instance_specification', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks'))
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_done'), ['done'], unique=False)
        batch_op.create_index(batch_op.f('ix_tasks_owner'), ['owner'], unique=False)
        batch_op.create_index(batch_op.f('ix_tasks_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tasks_purpose_id'), ['purpose_id'], unique=False)

    op.create_table('users',
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('f_uid', sa.Integer(), nullable=False),
    sa.Column('first_seen', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('private', sa.Boolean(), nullable=False),
    sa.Column('become_admin', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('username', name=op.f('pk_users')),
    sa.UniqueConstraint('f_uid', name=op.f('uq_users_f_uid'))
    )
    op.create_table('ledger_units',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('organisation_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('personal', sa.Boolean(), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['ledger_organisations.id'], name=op.f('fk_ledger_units_organisation_id_ledger_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_units'))
    )
    op.create_table('project_members',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_members_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'username', 'role', name=op.f('pk_project_members'))
    )
    with op.batch_alter_table('project_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_members_username'), ['username'], unique=False)

    op.create_table('project_tokens',
    sa.Column('token', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_tokens_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_project_tokens'))
    )
    with op.batch_alter_table('project_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_tokens_project_id'), ['project_id'], unique=False)

    op.create_table('task_events',
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('ordinal', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('time', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_task_events_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'ordinal', name=op.f('pk_task_events'))
    )
    op.create_table('task_states',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('time', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_task_states_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_states'))
    )
    with op.batch_alter_table('task_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_states_task_id'), ['task_id'], unique=False)

    op.create_table('ledger_products',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=48), nullable=False),
    sa.Column('flavour', sa.String(length=16), nullable=True),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('created', shared.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['ledger_units.id'], name=op.f('fk_ledger_products_unit_id_ledger_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_products'))
    )
    with op.batch_alter_table('ledger_products', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_products_unit_id'), ['unit_id'], unique=False)

    op.create_table('ledger_unit_members',
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['ledger_units.id'], name=op.f('fk_ledger_unit_members_unit_id_ledger_units'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('unit_id', 'username', name=op.f('pk_ledger_unit_members'))
    )
    with op.batch_alter_table('ledger_unit_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_unit_members_username'), ['username'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ledger_unit_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_unit_members_username'))

    op.drop_table('ledger_unit_members')
    with op.batch_alter_table('ledger_products', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_products_unit_id'))

    op.drop_table('ledger_products')
    with op.batch_alter_table('task_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_task_states_task_id'))

    op.drop_table('task_states')
    op.drop_table('task_events')
    with op.batch_alter_table('project_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_tokens_project_id'))

    op.drop_table('project_tokens')
    with op.batch_alter_table('project_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_members_username'))

    op.drop_table('project_members')
    op.drop_table('ledger_units')
    op.drop_table('users')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_purpose_id'))
        batch_op.drop_index(batch_op.f('ix_tasks_project_id'))
        batch_op.drop_index(batch_op.f('ix_tasks_owner'))
        batch_op.drop_index(batch_op.f('ix_tasks_done'))

    op.drop_table('tasks')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_projects_deleted'))

    op.drop_table('projects')
    op.drop_table('ledger_organisations')
