"""mailbox delta link: where a Microsoft Graph mailbox's next delta round starts

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 13:40:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox_cursor') as batch_op:
        batch_op.add_column(sa.Column('delta_link', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mailbox_cursor') as batch_op:
        batch_op.drop_column('delta_link')
