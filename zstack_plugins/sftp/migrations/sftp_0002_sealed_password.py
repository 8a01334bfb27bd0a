"""sftp_backup_storage.password sealed with the MN's key (mn/secretbox.py), no longer clear text

Upgrade widens the column (a sealed value is longer than its password) and seals the clear-text
passwords; downgrade opens them and narrows it back. Both need the MN's key file when there are
passwords (mn/db/sealed_columns.py says how a migration gets it).

Revision ID: sftp_0002
Revises: sftp_0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from mn.db.sealed_columns import open_, seal

revision = 'sftp_0002'
down_revision = 'sftp_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    seal('sftp_backup_storage', 'password', 2048)


def downgrade() -> None:
    open_('sftp_backup_storage', 'password', 255)
