"""sftp_backup_storage: the SSH login of SFTP backup storages (extends backup_storage rows)

The sftp plugin's first revision. Databases made before SFTP was a plugin have the table from
the core's revision 0004 (the same definition): it is adopted, not created again.

Revision ID: sftp_0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'sftp_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('sftp_backup_storage'):
        return  # made by core revision 0004: adopted as it is
    op.create_table('sftp_backup_storage',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('password', sa.String(length=255), nullable=True),
    sa.Column('sshPort', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['uuid'], ['backup_storage.uuid'], name=op.f('fk_sftp_backup_storage_uuid_backup_storage'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_sftp_backup_storage'))
    )
    with op.batch_alter_table('sftp_backup_storage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sftp_backup_storage_hostname'), ['hostname'], unique=False)


def downgrade() -> None:
    op.drop_table('sftp_backup_storage')
