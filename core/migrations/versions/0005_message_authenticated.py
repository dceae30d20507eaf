"""message.authenticated: whether a mail from a staff address proved it came from them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.add_column(sa.Column('authenticated', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.drop_column('authenticated')
