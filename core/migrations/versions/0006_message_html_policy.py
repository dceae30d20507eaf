"""message.html_policy and html_note: HTML sanitised once at intake (under which policy), or why it is not shown

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 11:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.add_column(sa.Column('html_policy', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('html_note', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.drop_column('html_note')
        batch_op.drop_column('html_policy')
