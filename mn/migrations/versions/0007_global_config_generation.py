"""global_config_generation: one row counting global-config changes, read by every MN process

UpdateGlobalConfig and ResetGlobalConfig increment it in the transaction that changes the values;
each MN process reads it (a primary-key read) before an API call and a background task run, and
reloads its cached values when it moved, so a change made through one process is seen at once by
every process of every MN on the database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "global_config_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "generation": 0}])


def downgrade() -> None:
    op.drop_table("global_config_generation")
