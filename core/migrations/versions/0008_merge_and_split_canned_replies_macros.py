"""ticket.merged_into_id, ticket_merge (what a merge moved, for undo), macro (canned replies)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 08:27:16.383958
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('macro',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('new', 'open', 'pending', 'awaiting_approval', 'in_progress', 'resolved', 'closed', name='ticketstatus', native_enum=False, length=32), nullable=True),
    sa.Column('priority', sa.String(length=2), nullable=True),
    sa.Column('category', sa.String(length=80), nullable=True),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assignee_id'], ['contact.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('ticket_merge',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('moved', sa.JSON(), nullable=False),
    sa.Column('undone_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('undone_by', sa.String(length=320), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['ticket.id'], ),
    sa.ForeignKeyConstraint(['target_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ticket_merge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_merge_source_id'), ['source_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_merge_target_id'), ['target_id'], unique=False)

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_ticket_merged_into', 'ticket', ['merged_into_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_constraint('fk_ticket_merged_into', type_='foreignkey')
        batch_op.drop_column('merged_into_id')

    with op.batch_alter_table('ticket_merge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_merge_target_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_merge_source_id'))

    op.drop_table('ticket_merge')
    op.drop_table('macro')
