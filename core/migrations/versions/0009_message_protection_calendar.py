"""message.protection (signed / encrypted mail) and message.calendar (the invitation's events)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.add_column(sa.Column('protection', sa.Enum('signed', 'encrypted', name='protection', native_enum=False, length=32), nullable=True))
        batch_op.add_column(sa.Column('calendar', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.drop_column('calendar')
        batch_op.drop_column('protection')
