"""kvm_host, sftp_backup_storage and local_storage_host_ref (KVM hosts, SFTP BS, local storage)

kvm_host and sftp_backup_storage extend host and backup_storage rows (same uuid, deleted with
them); local_storage_host_ref holds each host's capacity on a LocalStorage primary storage.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kvm_host',
    sa.Column('uuid', sa.String(length=32), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('password', sa.String(length=255), nullable=True),
    sa.Column('sshPort', sa.Integer(), nullable=False),
    sa.Column('osDistribution', sa.String(length=64), nullable=True),
    sa.Column('osRelease', sa.String(length=64), nullable=True),
    sa.Column('osVersion', sa.String(length=64), nullable=True),
    sa.Column('agentVersion', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['uuid'], ['host.uuid'], name=op.f('fk_kvm_host_uuid_host'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_kvm_host'))
    )
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

    op.create_table('local_storage_host_ref',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('primaryStorageUuid', sa.String(length=32), nullable=False),
    sa.Column('hostUuid', sa.String(length=32), nullable=False),
    sa.Column('totalCapacity', sa.BigInteger(), nullable=False),
    sa.Column('availableCapacity', sa.BigInteger(), nullable=False),
    sa.Column('totalPhysicalCapacity', sa.BigInteger(), nullable=False),
    sa.Column('availablePhysicalCapacity', sa.BigInteger(), nullable=False),
    sa.Column('createDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.Column('lastOpDate', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['hostUuid'], ['host.uuid'], name=op.f('fk_local_storage_host_ref_hostUuid_host'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['primaryStorageUuid'], ['primary_storage.uuid'],
                            name=op.f('fk_local_storage_host_ref_primaryStorageUuid_primary_storage'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_local_storage_host_ref')),
    sa.UniqueConstraint('primaryStorageUuid', 'hostUuid',
                        name=op.f('uq_local_storage_host_ref_primaryStorageUuid_hostUuid'))
    )
    with op.batch_alter_table('local_storage_host_ref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_local_storage_host_ref_hostUuid'), ['hostUuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_local_storage_host_ref_primaryStorageUuid'), ['primaryStorageUuid'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('local_storage_host_ref')
    op.drop_table('sftp_backup_storage')
    op.drop_table('kvm_host')
