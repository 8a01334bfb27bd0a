"""vip and eip tables: moved to the eip plugin (zstack_plugins/eip/migrations, eip_0001)

This revision created them before EIP was a plugin; it does nothing now, so a new database gets
them only with the plugin. A database that has them from this revision keeps them: the plugin's
first revision adopts them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
