"""teams: conversation references and sent activities

Revision ID: 0003_teams_refs
Revises: 0002_tickets
Create Date: 2026-11-23 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_teams_refs'
# Re-chain onto the newest revision when merging (other issues add their own migrations).
down_revision = '0002_tickets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('teams_conversations',
    sa.Column('conversation_id', sa.String(length=512), nullable=False),
    sa.Column('service_url', sa.String(length=512), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=True),
    sa.Column('conversation_type', sa.String(length=32), nullable=True),
    sa.Column('bot_id', sa.String(length=256), nullable=True),
    sa.Column('user_id', sa.String(length=256), nullable=True),
    sa.Column('aad_object_id', sa.String(length=64), nullable=True),
    sa.Column('team_id', sa.String(length=256), nullable=True),
    sa.Column('name', sa.String(length=256), nullable=True),
    sa.Column('installed', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=256), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('conversation_id', name=op.f('pk_teams_conversations'))
    )
    with op.batch_alter_table('teams_conversations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teams_conversations_aad_object_id'), ['aad_object_id'], unique=False)

    op.create_table('teams_activities',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('idempotency_key', sa.String(length=512), nullable=True),
    sa.Column('conversation_id', sa.String(length=512), nullable=False),
    sa.Column('activity_id', sa.String(length=256), nullable=False),
    sa.Column('card', sa.JSON(), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams_activities')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_teams_activities_idempotency_key'))
    )
    with op.batch_alter_table('teams_activities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teams_activities_activity_id'), ['activity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_teams_activities_conversation_id'), ['conversation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('teams_activities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_teams_activities_conversation_id'))
        batch_op.drop_index(batch_op.f('ix_teams_activities_activity_id'))
    op.drop_table('teams_activities')
    with op.batch_alter_table('teams_conversations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_teams_conversations_aad_object_id'))
    op.drop_table('teams_conversations')
