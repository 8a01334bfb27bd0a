"""local_storage_host_ref: each host's capacity on a LocalStorage primary storage

The local_storage plugin's first revision. Databases made before local storage was a plugin have the table from
the core's revision 0004 (the same definition): it is adopted, not created again.

Revision ID: local_storage_0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'local_storage_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('local_storage_host_ref'):
        return  # made by core revision 0004: adopted as it is
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
