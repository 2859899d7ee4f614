"""outbox: when a message's current run of failed attempts began

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

A message that keeps failing is reported to reviewers once it has failed for a while; the
first failure of the run is the only time that says how long.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('failing_since')
