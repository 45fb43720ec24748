"""inbox: when the person was told their message failed for good (`told_at`)

A help desk may re-queue failed rows (`helpdesk inbox retry`). If such a row fails again, the person
must not be told "something went wrong" a second time for the same message: the channel says sorry
only when it is the first to set `told_at` on the row.

Revision ID: 0008_hinbox_inbox_told
Revises: 0007_h16d_event_report_fields
Create Date: 2026-12-05 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_hinbox_inbox_told'
down_revision = '0007_h16d_event_report_fields'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('inbox', sa.Column('told_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_column('told_at')
