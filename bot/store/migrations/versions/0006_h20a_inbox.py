"""inbox: acknowledged platform deliveries, committed before the ack and handled exactly once

Revision ID: 0006_h20a_inbox
Revises: 0006_h19_itsm (main had it first)
Create Date: 2026-12-04 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_h20a_inbox'
down_revision = '0006_h19_itsm'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_by', sa.String(length=128), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox')),
    sa.UniqueConstraint('key', name=op.f('uq_inbox_key'))
    )
    op.create_index('ix_inbox_due', 'inbox', ['status', 'locked_until'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_inbox_due', table_name='inbox')
    op.drop_table('inbox')
