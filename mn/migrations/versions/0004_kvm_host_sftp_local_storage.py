"""kvm_host, sftp_backup_storage, local_storage_host_ref: moved to the kvm, sftp and local_storage plugins

This revision created them before those families were plugins; it does nothing now, so a new
database gets each table only with its plugin (kvm_0001, sftp_0001, local_storage_0001). A database
that has them from this revision keeps them: each plugin's first revision adopts its table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
