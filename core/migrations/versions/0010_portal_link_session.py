"""portal_link and portal_session: requester portal sign-in links and sessions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 08:46:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('portal_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('nonce_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('portal_link', schema=None) as batch_op:
        batch_op.create_index('ix_portal_link_address', ['address', 'created_at'], unique=False)
        batch_op.create_index('ix_portal_link_client', ['client', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_link_created_at'), ['created_at'], unique=False)

    op.create_table('portal_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_session_contact_id'), ['contact_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_session_contact_id'))

    op.drop_table('portal_session')
    with op.batch_alter_table('portal_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_link_created_at'))
        batch_op.drop_index('ix_portal_link_client')
        batch_op.drop_index('ix_portal_link_address')

    op.drop_table('portal_link')
