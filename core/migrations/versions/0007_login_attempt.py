"""login_attempt: console login throttling counted in the database, shared by every console process

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_login_attempt_client_account', 'login_attempt', ['client', 'account'], unique=False)
    op.create_index(op.f('ix_login_attempt_at'), 'login_attempt', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_login_attempt_at'), table_name='login_attempt')
    op.drop_index('ix_login_attempt_client_account', table_name='login_attempt')
    op.drop_table('login_attempt')
