"""log positions: kew keeps the launcher's position in an instance's log (a string) instead of
a byte offset, so a Kubernetes launcher can resume from a line's time

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_logs = sa.table('instance_logs', sa.column('offset', sa.BigInteger()), sa.column('position', sa.String(128)))


def upgrade() -> None:
    with op.batch_alter_table('instance_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('position', sa.String(length=128), nullable=False, server_default=''))
    # A byte offset stays a valid position: both launchers read a bare number as one.
    op.execute(_logs.update().where(_logs.c.offset > 0).values(position=sa.cast(_logs.c.offset, sa.String(128))))
    with op.batch_alter_table('instance_logs', schema=None) as batch_op:
        batch_op.drop_column('offset')


def downgrade() -> None:
    with op.batch_alter_table('instance_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('offset', sa.BigInteger(), nullable=False, server_default='0'))
    # Only byte offsets go back; a position with a time has none (that log is read again).
    op.execute(_logs.update().where(_logs.c.position != '', ~_logs.c.position.contains(' '))
               .values(offset=sa.cast(_logs.c.position, sa.BigInteger())))
    with op.batch_alter_table('instance_logs', schema=None) as batch_op:
        batch_op.drop_column('position')
