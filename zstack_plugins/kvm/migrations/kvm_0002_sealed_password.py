"""kvm_host.password sealed with the MN's key (mn/secretbox.py), no longer clear text

Upgrade widens the column (a sealed value is longer than its password) and seals the clear-text
passwords; downgrade opens them and narrows it back. Both need the MN's key file when there are
passwords (mn/db/sealed_columns.py says how a migration gets it).

Revision ID: kvm_0002
Revises: kvm_0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from mn.db.sealed_columns import open_, seal

revision = 'kvm_0002'
down_revision = 'kvm_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    seal('kvm_host', 'password', 2048)


def downgrade() -> None:
    open_('kvm_host', 'password', 255)
