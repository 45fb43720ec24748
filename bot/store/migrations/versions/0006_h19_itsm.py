"""itsm: links between tickets and records in Jira Service Management / ServiceNow, seen remote events, poll cursors

Revision ID: 0006_h19_itsm
Revises: 0005_shared_state
Create Date: 2026-12-04 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_h19_itsm'
down_revision = '0005_shared_state'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('itsm_links',
    sa.Column('ticket_ref', sa.String(length=32), nullable=False),
    sa.Column('system', sa.String(length=16), nullable=False),
    sa.Column('remote_id', sa.String(length=64), nullable=False),
    sa.Column('remote_key', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=512), nullable=False),
    sa.Column('remote_status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('ticket_ref', name=op.f('pk_itsm_links'))
    )
    op.create_index(op.f('ix_itsm_links_remote_id'), 'itsm_links', ['remote_id'], unique=False)
    op.create_table('itsm_seen',
    sa.Column('system', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('system', 'key', name=op.f('pk_itsm_seen'))
    )
    op.create_index(op.f('ix_itsm_seen_at'), 'itsm_seen', ['at'], unique=False)
    op.create_table('itsm_cursors',
    sa.Column('system', sa.String(length=16), nullable=False),
    sa.Column('polled_to', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('system', name=op.f('pk_itsm_cursors'))
    )


def downgrade() -> None:
    op.drop_table('itsm_cursors')
    op.drop_index(op.f('ix_itsm_seen_at'), table_name='itsm_seen')
    op.drop_table('itsm_seen')
    op.drop_index(op.f('ix_itsm_links_remote_id'), table_name='itsm_links')
    op.drop_table('itsm_links')
