"""workflow launches: a step keeps the pod it is to start until the pod has started (so a host that
died in between has it started again), and a run can be deleted while it still stops

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
import shared.db.base


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('running_workflow_steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pod_to_start', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('start_by', shared.db.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('running_workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleting', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('running_workflows', schema=None) as batch_op:
        batch_op.drop_column('deleting')
    with op.batch_alter_table('running_workflow_steps', schema=None) as batch_op:
        batch_op.drop_column('start_by')
        batch_op.drop_column('pod_to_start')
