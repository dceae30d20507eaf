"""inbound: transient-failure retries and a content fingerprint

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 08:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound') as batch_op:
        batch_op.add_column(sa.Column('retries', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbound') as batch_op:
        batch_op.drop_column('fingerprint')
        batch_op.drop_column('retry_at')
        batch_op.drop_column('retries')
