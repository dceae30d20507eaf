"""contact language: the language a person's mail from the desk is written in

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 13:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact') as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact') as batch_op:
        batch_op.drop_column('language')
