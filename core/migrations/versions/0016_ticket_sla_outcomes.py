"""ticket SLA outcomes: each clock's breach instant and the policy they were worked out under

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 13:20:00.000000

The outcomes depend on the configured SLA policy, which a migration does not know: the columns start
empty and core.slastate.refresh fills them at start-up (reports run the clocks for any ticket until then).
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('response_breach_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolution_breach_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sla_policy', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_column('sla_policy')
        batch_op.drop_column('resolution_breach_at')
        batch_op.drop_column('response_breach_at')
