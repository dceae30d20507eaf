"""ticket report indexes: covering indexes for the reports' counts, backlog, weekly series and SLA figures

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 14:00:00.000000
"""
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_report_counts', ['kind', 'category', 'priority', 'status'], unique=False)
        batch_op.create_index('ix_ticket_status_created', ['status', 'created_at'], unique=False)
        batch_op.create_index('ix_ticket_created', ['created_at', 'kind', 'priority'], unique=False)
        batch_op.create_index('ix_ticket_sla', ['sla_policy', 'response_breach_at', 'resolution_breach_at',
                                                'first_response_at', 'resolved_at', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_sla')
        batch_op.drop_index('ix_ticket_created')
        batch_op.drop_index('ix_ticket_status_created')
        batch_op.drop_index('ix_ticket_report_counts')
