"""shared_state: verification codes, grants, pending identity checks and rate limits for every replica

Revision ID: 0005_shared_state
Revises: 0004_outages
Create Date: 2026-11-23 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_shared_state'
down_revision = '0004_outages'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shared_state',
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('expires', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_shared_state'))
    )
    op.create_index(op.f('ix_shared_state_expires'), 'shared_state', ['expires'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_shared_state_expires'), table_name='shared_state')
    op.drop_table('shared_state')
