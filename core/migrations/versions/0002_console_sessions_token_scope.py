"""console sessions kept server-side; API token scope

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 07:55:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['contact.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_index(op.f('ix_console_session_user_id'), 'console_session', ['user_id'], unique=False)
    with op.batch_alter_table('contact') as batch_op:
        batch_op.add_column(sa.Column('api_token_scope', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact') as batch_op:
        batch_op.drop_column('api_token_scope')
    op.drop_index(op.f('ix_console_session_user_id'), table_name='console_session')
    op.drop_table('console_session')
